"""App ids (Marathon's path rules) and the task ids derived from them."""

from __future__ import annotations

import re
import uuid
from typing import Any

from scheduler.spec.fields import MISSING, Errors, ptr, type_name
from scheduler.spec.model import SpecError

# One path segment of an app id (Marathon's rule): dot-separated labels of lowercase letters,
# digits and inner hyphens.
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_SEGMENT_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")  # used with fullmatch


def normalize_app_id(raw: Any) -> str:
    """The absolute, canonical form of an app id (relative ids are taken relative to `/`).

    Raises SpecError (path `/id`) if the id is not a string of valid path segments.
    """
    errs = Errors()
    out = normalize_id(raw, errs)
    if errs or out is None:
        raise SpecError("Object is not valid", errs.details())
    return out


def normalize_id(raw: Any, errs: Errors) -> str | None:
    path = ptr("id")
    if raw is MISSING or raw is None:
        errs.add(path, "is required")
        return None
    if not isinstance(raw, str):
        errs.add(path, f"must be a string, got {type_name(raw)}")
        return None
    text = raw[1:] if raw.startswith("/") else raw
    if text.endswith("/"):
        text = text[:-1]  # "/a/b/" names the same app as "/a/b"
    parts: list[str] = []
    for seg in text.split("/") if text else []:
        if seg == ".":
            continue
        if seg == "..":
            if not parts:
                errs.add(path, f"'{raw}' leaves the root group")
                return None
            parts.pop()
            continue
        if not _SEGMENT_RE.fullmatch(seg):
            errs.add(path, f"'{raw}' is not a valid id: path segments may contain only lowercase "
                           "letters, digits, hyphens and dots, and must start and end with a "
                           "letter or digit")
            return None
        parts.append(seg)
    if not parts:
        errs.add(path, f"'{raw}' is not a valid app id: the root group '/' cannot be an app")
        return None
    return "/" + "/".join(parts)


def app_id_to_task_prefix(app_id: str) -> str:
    """`/jpm/timeseries` -> `jpm_timeseries` (ids never contain `_`, so this is reversible)."""
    return app_id.strip("/").replace("/", "_")


def new_task_id(app_id: str) -> str:
    """`jpm_timeseries.<uuid4 hex>`."""
    return f"{app_id_to_task_prefix(app_id)}.{uuid.uuid4().hex}"


def task_id_to_app_id(task_id: str) -> str:
    """Inverse of `new_task_id`'s prefix: `jpm_timeseries.ab12..` -> `/jpm/timeseries`."""
    prefix = task_id.rsplit(".", 1)[0] if "." in task_id else task_id
    return "/" + prefix.replace("_", "/")
