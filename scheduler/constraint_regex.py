"""The regular expressions of `LIKE` / `UNLIKE` constraints, matched in linear time.

A constraint's value is run against every offer's attribute on every placement round, so a
pattern with catastrophic backtracking (`(a+)+$` against a long attribute) would stall the whole
scheduler if Python's backtracking `re` ran it. Patterns are compiled by RE2 (`google-re2`),
whose automaton matches in time linear in the input whatever the pattern: no timeout to tune,
and the same verdict on a loaded machine as on an idle one. RE2 has no backreferences,
lookaround or possessive quantifiers (the constructs that need backtracking); a value using
them is refused when the definition is validated, with the reason, instead of being accepted
and then stalling or silently never matching.

Semantics are Marathon's: the attribute must match the whole pattern (Java's `matches()`).
"""

from __future__ import annotations

from functools import lru_cache

import re2

# RE2's default budget (8 MiB per compiled program) is far above what any sane constraint
# needs; a pattern beyond this many characters is refused before compiling.
MAX_PATTERN_LENGTH = 1000

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is reported to the caller, not to stderr


class ConstraintRegexError(ValueError):
    """The pattern cannot be used as a constraint value; the message says why."""


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> re2._Regexp:
    """The compiled pattern, or ConstraintRegexError with the reason."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ConstraintRegexError(f"longer than {MAX_PATTERN_LENGTH} characters")
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        arg = exc.args[0] if exc.args else ""
        detail = (arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)) \
            or "invalid pattern"
        raise ConstraintRegexError(
            f"{detail} (backreferences, lookaround and possessive quantifiers are not "
            "supported: constraints are matched by RE2, in time linear in the attribute)"
        ) from None


def check_pattern(pattern: str) -> str | None:
    """None when `pattern` is usable as a LIKE/UNLIKE value, else the reason it is not."""
    try:
        compile_pattern(pattern)
    except ConstraintRegexError as exc:
        return str(exc)
    return None


@lru_cache(maxsize=8192)
def full_match(pattern: str, value: str) -> bool | None:
    """Whether the whole of `value` matches `pattern`; None for a pattern that cannot be used
    (validation refuses those before they are stored; a stored one meets neither LIKE nor
    UNLIKE)."""
    try:
        compiled = compile_pattern(pattern)
    except ConstraintRegexError:
        return None
    return compiled.fullmatch(value) is not None
