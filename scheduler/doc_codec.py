"""How the state stores encode their documents: compact JSON (text for SQLite, bytes for
ZooKeeper), one encoding for both.

orjson, several times faster than json both ways (decoding is most of the cost of listing
10,000 tasks; a scale PUT encodes five documents); UTF-8 rather than \\u escapes. What orjson
refuses to write (integers past 64 bits, non-string keys) json writes, after one space, which
JSON allows: orjson would read such an integer back as a float, so a document that starts
with a space is read with json, which keeps it exact. The test costs one comparison."""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["dumps", "dumps_bytes", "loads"]


def _json(doc: Any) -> str:
    return " " + json.dumps(doc, separators=(",", ":"))


def dumps(doc: Any) -> str:
    try:
        return orjson.dumps(doc).decode()
    except TypeError:
        return _json(doc)


def dumps_bytes(doc: Any) -> bytes:
    try:
        return orjson.dumps(doc)
    except TypeError:
        return _json(doc).encode()


def loads(data: str | bytes) -> Any:
    if data[:1] in (" ", b" "):
        return json.loads(data)
    return orjson.loads(data)
