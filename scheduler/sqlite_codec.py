"""How the SQLite state store encodes its documents: compact JSON text.

orjson, several times faster than json both ways (decoding is most of the cost of listing
10,000 tasks; a scale PUT encodes five documents); UTF-8 rather than \\u escapes. What orjson
refuses (integers past 64 bits, non-string keys) goes through json."""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["dumps", "loads"]


def dumps(doc: Any) -> str:
    try:
        return orjson.dumps(doc).decode()
    except TypeError:
        return json.dumps(doc, separators=(",", ":"))


loads = orjson.loads
