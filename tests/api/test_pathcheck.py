"""api.pathcheck's fast paths decide as the per-character rule does (issue 15: a scale PUT
checks its URL id first)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.errors import ApiError
from api.pathcheck import check_url_id, has_control_characters


@given(st.text())
def test_control_characters_as_the_unicode_category_says(text: str) -> None:
    assert has_control_characters(text) == any(unicodedata.category(c) == "Cc" for c in text)


@pytest.mark.parametrize("raw,message", [
    ("a/\x00b", "Invalid app id 'a/\\x00b' in the URL: control characters are not allowed"),
    ("a/\u0085", "Invalid app id 'a/\\x85' in the URL: control characters are not allowed"),
    ("a/../b", "Invalid app id 'a/../b' in the URL: '.' and '..' segments are not allowed; "
               "name it by its absolute id"),
    ("./b", "Invalid app id './b' in the URL: '.' and '..' segments are not allowed; "
            "name it by its absolute id"),
])
def test_refused_ids_and_their_messages(raw: str, message: str) -> None:
    with pytest.raises(ApiError) as info:
        check_url_id(raw)
    assert info.value.status_code == 400 and info.value.message == message


@pytest.mark.parametrize("raw", ["bench/app1", "a.b/c..d", "é/\u2028", "a/ b", "..a/b."])
def test_plain_ids_pass(raw: str) -> None:
    check_url_id(raw)


def test_path_app_id_answers_the_same_every_time() -> None:
    """path_app_id remembers ids that name an app, never a refusal: a refused id is refused
    again, with its own status."""
    from api.apps import path_app_id

    for _ in range(2):
        assert path_app_id("bench/app1/") == "/bench/app1"
        for raw, status in (("a/../b", 400), ("a/\x00", 400), ("Upper/Case", 404)):
            with pytest.raises(ApiError) as info:
                path_app_id(raw)
            assert info.value.status_code == status
