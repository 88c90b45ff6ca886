"""Validation machinery: typed field readers that collect every problem in an `Errors` under its
JSON-pointer path instead of raising at the first one."""

from __future__ import annotations

import difflib
import math
from typing import Any

from scheduler.spec.model import FrozenMap, num


def ptr(*parts: Any) -> str:
    """A JSON pointer from path parts (RFC 6901 escaping, so env keys with '/' stay readable)."""
    if not parts:
        return "/"
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


class Errors:
    def __init__(self) -> None:
        self._by_path: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        msgs = self._by_path.setdefault(path, [])
        if message not in msgs:
            msgs.append(message)

    def __bool__(self) -> bool:
        return bool(self._by_path)

    def details(self) -> list[dict[str, Any]]:
        return [{"path": p, "errors": list(m)} for p, m in self._by_path.items()]


MISSING = object()


def object_items(v: Any, field: str, errs: Errors) -> list[tuple[tuple[Any, ...], dict]] | None:
    """The objects of the array field `field` with their paths; None (and an error) when `v` is
    not an array, and an error for each item that is not an object."""
    if not isinstance(v, list):
        errs.add(ptr(field), f"must be an array, got {type_name(v)}")
        return None
    items = []
    for i, item in enumerate(v):
        if isinstance(item, dict):
            items.append(((field, i), item))
        else:
            errs.add(ptr(field, i), f"must be an object, got {type_name(item)}")
    return items


def type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__



def check_unknown(obj: dict, known: frozenset[str] | set[str], path: tuple, errs: Errors,
                   ignored: frozenset[str] = frozenset(),
                   unsupported: frozenset[str] = frozenset()) -> None:
    for key in obj:
        if key in known or key in ignored:
            continue
        if key in unsupported:
            errs.add(ptr(*path, key), f"the Marathon field '{key}' is not supported by accessd")
            continue
        msg = f"unknown field '{key}'"
        close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.6)
        if close:
            msg += f"; did you mean '{close[0]}'?"
        errs.add(ptr(*path, key), msg)


def number(v: Any, path: tuple, errs: Errors, default: float, *, gt: float | None = None,
            ge: float | None = None, le: float | None = None) -> float:
    """A finite JSON number (not a boolean), within bounds; returns `default` on error."""
    if v is MISSING or v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int | float):
        errs.add(ptr(*path), f"must be a number, got {type_name(v)}")
        return default
    if not math.isfinite(v):
        errs.add(ptr(*path), "must be a finite number")
        return default
    ok = True
    if gt is not None and not v > gt:
        errs.add(ptr(*path), f"must be > {num(float(gt))}")
        ok = False
    if ge is not None and not v >= ge:
        errs.add(ptr(*path), f"must be >= {num(float(ge))}")
        ok = False
    if le is not None and not v <= le:
        errs.add(ptr(*path), f"must be <= {num(float(le))}")
        ok = False
    return float(v) if ok else default


def seconds(v: Any, path: tuple, errs: Errors, default: float, **bounds: float) -> float:
    """Like `number`, but a whole number stays an int (these are Marathon integers)."""
    x = number(v, path, errs, default, **bounds)
    return num(x) if isinstance(x, float) else x


def integer(v: Any, path: tuple, errs: Errors, default: int, *, ge: int | None = None,
             le: int | None = None) -> int:
    """A JSON integer (an integral float like 2.0 is accepted, booleans are not)."""
    if v is MISSING or v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int | float):
        errs.add(ptr(*path), f"must be an integer, got {type_name(v)}")
        return default
    if isinstance(v, float) and not (math.isfinite(v) and v.is_integer()):
        errs.add(ptr(*path), "must be an integer")
        return default
    iv = int(v)
    if ge is not None and iv < ge:
        errs.add(ptr(*path), f"must be >= {ge}")
        return default
    if le is not None and iv > le:
        errs.add(ptr(*path), f"must be <= {le}")
        return default
    return iv


def boolean(v: Any, path: tuple, errs: Errors, default: bool) -> bool:
    if v is MISSING or v is None:
        return default
    if not isinstance(v, bool):
        errs.add(ptr(*path), f"must be a boolean, got {type_name(v)}")
        return default
    return v


def string(v: Any, path: tuple, errs: Errors, default: str | None, *,
            choices: tuple[str, ...] | None = None, nonempty: bool = False) -> str | None:
    if v is MISSING or v is None:
        return default
    if not isinstance(v, str):
        errs.add(ptr(*path), f"must be a string, got {type_name(v)}")
        return default
    if choices is not None and v not in choices:
        errs.add(ptr(*path), f"must be one of {', '.join(repr(c) for c in choices)}")
        return default
    if nonempty and not v:
        errs.add(ptr(*path), "must not be empty")
        return default
    return v


def str_map(v: Any, path: tuple, errs: Errors) -> FrozenMap:
    """A JSON object of string values (env values that are numbers or secrets are rejected)."""
    if v is MISSING or v is None:
        return FrozenMap()
    if not isinstance(v, dict):
        errs.add(ptr(*path), f"must be an object of strings, got {type_name(v)}")
        return FrozenMap()
    out: dict[str, str] = {}
    for k, val in v.items():
        if not isinstance(k, str) or not k:
            errs.add(ptr(*path, k), "keys must be non-empty strings")
        elif not isinstance(val, str):
            errs.add(ptr(*path, k), f"must be a string, got {type_name(val)}")
        else:
            out[k] = val
    return FrozenMap(out)
