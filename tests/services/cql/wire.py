"""CQL native protocol wire format (doc/native_protocol_v4.spec, v5.spec): opcodes, error codes,
the notation of spec section 3 (`Reader`, `w_*`), value types (section 6) and v5 segments."""

from __future__ import annotations

import socket
import struct
import uuid
import zlib
from dataclasses import dataclass
from typing import Any

# -- opcodes, result kinds, error codes (spec sections 2.4, 4.2.5, 9) ---------------------------
ERROR, STARTUP, READY, AUTHENTICATE, OPTIONS, SUPPORTED = 0x00, 0x01, 0x02, 0x03, 0x05, 0x06
QUERY, RESULT, PREPARE, EXECUTE, REGISTER, EVENT, BATCH = 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D
AUTH_CHALLENGE, AUTH_RESPONSE, AUTH_SUCCESS = 0x0E, 0x0F, 0x10
OPCODE_NAMES = {STARTUP: "STARTUP", OPTIONS: "OPTIONS", QUERY: "QUERY", PREPARE: "PREPARE",
                EXECUTE: "EXECUTE", REGISTER: "REGISTER", BATCH: "BATCH",
                AUTH_RESPONSE: "AUTH_RESPONSE"}
KIND_VOID, KIND_ROWS, KIND_SET_KEYSPACE, KIND_PREPARED, KIND_SCHEMA_CHANGE = 1, 2, 3, 4, 5
SERVER_ERROR, PROTOCOL_ERROR, BAD_CREDENTIALS = 0x0000, 0x000A, 0x0100
UNAVAILABLE, OVERLOADED, WRITE_TIMEOUT, READ_TIMEOUT = 0x1000, 0x1001, 0x1100, 0x1200
SYNTAX_ERROR, INVALID, CONFIG_ERROR, ALREADY_EXISTS, UNPREPARED = \
    0x2000, 0x2200, 0x2300, 0x2400, 0x2500
CONSISTENCY_NAMES = {0: "ANY", 1: "ONE", 2: "TWO", 3: "THREE", 4: "QUORUM", 5: "ALL",
                     6: "LOCAL_QUORUM", 7: "EACH_QUORUM", 8: "SERIAL", 9: "LOCAL_SERIAL",
                     10: "LOCAL_ONE"}
CONSISTENCY_CODES = {v: k for k, v in CONSISTENCY_NAMES.items()}


class CqlError(Exception):
    """An ERROR frame to send: `code`, message and the code's extra body."""

    def __init__(self, code: int, message: str, extra: bytes = b"") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


def invalid(msg: str) -> CqlError:
    return CqlError(INVALID, msg)


# -- wire helpers --------------------------------------------------------------------------------
class Reader:
    """Reads the notation of spec section 3 from a frame body; short reads are protocol errors."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise CqlError(PROTOCOL_ERROR, "truncated frame body")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def byte(self) -> int:
        return self.take(1)[0]

    def short(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def int(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def long(self) -> int:
        return struct.unpack(">q", self.take(8))[0]

    def string(self) -> str:
        return self.take(self.short()).decode()

    def long_string(self) -> str:
        return self.take(self.int()).decode()

    def short_bytes(self) -> bytes:
        return self.take(self.short())

    def bytes(self) -> bytes | None:
        n = self.int()
        return None if n < 0 else self.take(n)

    def value(self) -> bytes | None | object:
        n = self.int()
        if n == -2:
            return UNSET
        return None if n < 0 else self.take(n)

    def string_map(self) -> dict[str, str]:
        return {self.string(): self.string() for _ in range(self.short())}


UNSET = object()  # the "unset" value (length -2) of protocol v4
NO_REPLY = (-1, b"")  # a reply that is never sent (the "no_answer" fault)


def w_short(n: int) -> bytes:
    return struct.pack(">H", n)


def w_int(n: int) -> bytes:
    return struct.pack(">i", n)


def w_string(s: str) -> bytes:
    b = s.encode()
    return w_short(len(b)) + b


def w_long_string(s: str) -> bytes:
    b = s.encode()
    return w_int(len(b)) + b


def w_bytes(b: bytes | None) -> bytes:
    return w_int(-1) if b is None else w_int(len(b)) + b


def w_short_bytes(b: bytes) -> bytes:
    return w_short(len(b)) + b


# -- types (spec section 6) ----------------------------------------------------------------------
@dataclass(frozen=True)
class CqlType:
    """A CQL type: its option id for metadata and how values are encoded (server side)."""

    name: str
    option_id: int
    params: tuple[CqlType, ...] = ()

    def option(self) -> bytes:
        return w_short(self.option_id) + b"".join(p.option() for p in self.params)

    def encode(self, v: Any) -> bytes:
        n = self.name
        if n in ("text", "varchar", "ascii"):
            return v.encode()
        if n == "blob":
            return bytes(v)
        if n == "int":
            return struct.pack(">i", v)
        if n in ("bigint", "timestamp", "counter"):
            return struct.pack(">q", v)
        if n == "double":
            return struct.pack(">d", v)
        if n == "boolean":
            return b"\x01" if v else b"\x00"
        if n == "uuid":
            return v.bytes
        if n == "inet":
            return socket.inet_pton(socket.AF_INET6 if ":" in v else socket.AF_INET, v)
        if n in ("set", "list"):
            items = [self.params[0].encode(x) for x in v]
            return w_int(len(items)) + b"".join(w_int(len(b)) + b for b in items)
        if n == "map":
            kt, vt = self.params
            return w_int(len(v)) + b"".join(w_bytes(kt.encode(k)) + w_bytes(vt.encode(x))
                                            for k, x in v.items())
        raise CqlError(SERVER_ERROR, f"test server cannot encode {n}")

    def decode(self, b: bytes) -> Any:
        n = self.name
        try:
            if n in ("text", "varchar", "ascii"):
                return b.decode()
            if n == "blob":
                return bytes(b)
            if n == "int":
                return struct.unpack(">i", b)[0]
            if n in ("bigint", "timestamp", "counter"):
                return struct.unpack(">q", b)[0]
            if n == "double":
                return struct.unpack(">d", b)[0]
            if n == "boolean":
                return b != b"\x00"
            if n == "uuid":
                return uuid.UUID(bytes=b)
            if n == "inet":
                return socket.inet_ntop(socket.AF_INET6 if len(b) == 16 else socket.AF_INET, b)
            if n in ("set", "list"):
                r = Reader(b)
                return [self.params[0].decode(r.take(r.int())) for _ in range(r.int())]
            if n == "map":
                r = Reader(b)
                kt, vt = self.params
                return {kt.decode(r.take(r.int())): vt.decode(r.take(r.int()))
                        for _ in range(r.int())}
        except (struct.error, UnicodeDecodeError, ValueError) as exc:
            raise invalid(f"invalid {n} value {b!r}: {exc}") from exc
        raise CqlError(SERVER_ERROR, f"test server cannot decode {n}")

    def __str__(self) -> str:
        return self.name + (f"<{', '.join(map(str, self.params))}>" if self.params else "")


_SIMPLE_TYPES = {"ascii": 0x0001, "bigint": 0x0002, "blob": 0x0003, "boolean": 0x0004,
                 "counter": 0x0005,
                 "double": 0x0007, "int": 0x0009, "text": 0x000D, "varchar": 0x000D,
                 "timestamp": 0x000B, "uuid": 0x000C, "inet": 0x0010}
_COLLECTIONS = {"list": 0x0020, "map": 0x0021, "set": 0x0022}
INT = CqlType("int", 0x0009)


def make_type(name: str, params: tuple[CqlType, ...] = ()) -> CqlType:
    name = name.lower()
    if name in _SIMPLE_TYPES and not params:
        return CqlType(name, _SIMPLE_TYPES[name])
    if name in _COLLECTIONS and len(params) == (2 if name == "map" else 1):
        return CqlType(name, _COLLECTIONS[name], params)
    raise CqlError(SYNTAX_ERROR, f"type {name} is not supported by the test server")


def w_inet(address: str, port: int) -> bytes:
    """[inet]: a one-byte address size, the address, an [int] port (events)."""
    raw = socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
    return bytes([len(raw)]) + raw + w_int(port)


def frame(version: int, stream: int, opcode: int, body: bytes) -> bytes:
    """A response frame: the direction bit set in the version byte, no flags."""
    return struct.pack(">BBhBi", 0x80 | version, 0, stream, opcode, len(body)) + body


# -- protocol v5 segments (v5 spec section 2): after READY/AUTHENTICATE, frames travel inside
# checksummed segments: a 3-byte little-endian header (17-bit payload length, a self-contained
# flag), its CRC24, the payload (<= 128 KiB - 1), and the payload's CRC32.
MAX_SEGMENT_PAYLOAD = 128 * 1024 - 1
_CRC24_INIT, _CRC24_POLY = 0x875060, 0x1974F0B
_CRC32_INIT = zlib.crc32(b"\xfa\x2d\x55\xca")


def crc24(value: int, nbytes: int) -> int:
    crc = _CRC24_INIT
    for _ in range(nbytes):
        crc ^= (value & 0xFF) << 16
        value >>= 8
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= _CRC24_POLY
    return crc


def encode_segments(data: bytes) -> bytes:
    """`data` (whole frames) as uncompressed segments; one self-contained segment if it fits."""
    parts = [data[i:i + MAX_SEGMENT_PAYLOAD] for i in range(0, len(data), MAX_SEGMENT_PAYLOAD)]
    out = bytearray()
    for part in parts:
        header = len(part) | ((1 << 17) if len(parts) == 1 else 0)
        out += header.to_bytes(3, "little") + crc24(header, 3).to_bytes(3, "little")
        out += part + zlib.crc32(part, _CRC32_INIT).to_bytes(4, "little")
    return bytes(out)


def decode_segment_header(raw: bytes) -> int:
    """The payload length of a segment whose 6 header bytes are `raw`; checks the CRC24."""
    header = int.from_bytes(raw[:3], "little")
    if crc24(header, 3) != int.from_bytes(raw[3:6], "little"):
        raise CqlError(PROTOCOL_ERROR, "segment header CRC mismatch")
    return header & MAX_SEGMENT_PAYLOAD


def check_segment_payload(payload: bytes, crc: bytes) -> bytes:
    if zlib.crc32(payload, _CRC32_INIT) != int.from_bytes(crc, "little"):
        raise CqlError(PROTOCOL_ERROR, "segment payload CRC mismatch")
    return payload
