"""One condition wait (`tests.support.wait_until`) for tests and benches; each bench keeps its own
edge: bench/chaos_stack raises TimeoutError (bench/chaos.py catches it), bench/scale ends the run
with SystemExit, tests get AssertionError. Benches do not retry a check that raises."""

from __future__ import annotations

import itertools

import pytest

from bench import chaos_stack, scale
from tests.support import wait_until


def _falsy_then(value: object, falsy: int = 2):
    calls = itertools.count()
    return lambda: value if next(calls) >= falsy else None


def test_wait_until_returns_the_first_truthy_value() -> None:
    assert wait_until(_falsy_then("ok"), 5, 0.001) == "ok"
    for wait in (chaos_stack.wait_for, scale.wait_for):
        assert wait("ok", _falsy_then("ok"), 5, 0.001) == "ok"


@pytest.mark.parametrize(("wait", "raised"), [
    (lambda what, check: wait_until(check, 0.05, 0.01, what), AssertionError),
    (lambda what, check: chaos_stack.wait_for(what, check, 0.05, 0.01), TimeoutError),
    (lambda what, check: scale.wait_for(what, check, 0.05, 0.01), SystemExit),
])
def test_each_caller_keeps_its_timeout_error(wait, raised) -> None:
    with pytest.raises(raised, match="waiting for the moon; last: False"):
        wait("the moon", lambda: False)


def test_tests_retry_a_failing_check_benches_do_not() -> None:
    def not_yet():
        raise ConnectionError("refused")

    with pytest.raises(AssertionError, match="last: ConnectionError"):
        wait_until(not_yet, 0.05, 0.01)
    for wait in (chaos_stack.wait_for, scale.wait_for):
        with pytest.raises(ConnectionError):
            wait("the API", not_yet, 5, 0.01)
