"""Ids taken from a URL path: refuse traversal and control characters before anything reads or
writes under them.

Falcon decodes `%2e%2e` to `..` and `%00` to NUL before routing, so `/v2/apps/a/%2e%2e/b` reaches
a resource as the id `a/../b`, which the id rules (`scheduler.spec.ids`) would resolve to `/b`:
a `PUT` there would create or change an app the URL does not name. A URL must name its app
plainly, so `.` and `..` segments and control characters are a 400 (Marathon's error shape), not
resolved and not looked up. Ids in request bodies keep Marathon's relative-id rules.
"""

from __future__ import annotations

import unicodedata

from api.errors import ApiError


def has_control_characters(text: str) -> bool:
    """Whether `text` holds a control character (C0, DEL, C1), NUL included."""
    # A printable string has none (control characters are never printable): one C call for
    # the usual id instead of a category lookup per character.
    return not text.isprintable() and any(unicodedata.category(c) == "Cc" for c in text)


def check_url_id(raw: str, what: str = "app id", where: str = "the URL") -> None:
    """Raise a 400 if the id `raw` has `.`/`..` segments or control characters."""
    if has_control_characters(raw):
        raise ApiError(400, f"Invalid {what} '{_shown(raw)}' in {where}: control characters "
                            "are not allowed", [{"path": "/id", "errors": ["control characters"]}])
    if "." in raw and any(seg in (".", "..") for seg in raw.split("/")):
        raise ApiError(400, f"Invalid {what} '{_shown(raw)}' in {where}: '.' and '..' segments are "
                            "not allowed; name it by its absolute id",
                       [{"path": "/id", "errors": ["relative path segments"]}])


def _shown(raw: str) -> str:
    return raw.encode("unicode_escape").decode("ascii")
