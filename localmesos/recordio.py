"""RecordIO framing as the Mesos v1 streaming APIs use it: `<decimal length>\\n<JSON bytes>`.

Invariants: the length counts bytes of the UTF-8 JSON that follows (no trailing newline); the
decoder keeps partial records across `feed` calls, so any chunking of the stream decodes alike.
"""

from __future__ import annotations

import json
from typing import Any


def encode(event: dict[str, Any]) -> bytes:
    """One record: the JSON (compact, keys sorted, as Mesos sends it) prefixed by its byte length."""
    data = json.dumps(event, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return b"%d\n" % len(data) + data


class Decoder:
    """Incremental decoder: `feed(bytes)` returns the records completed so far."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buf += data
        out = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                break
            length = int(self._buf[:nl])
            if len(self._buf) < nl + 1 + length:
                break
            out.append(json.loads(self._buf[nl + 1:nl + 1 + length].decode("utf-8")))
            self._buf = self._buf[nl + 1 + length:]
        return out
