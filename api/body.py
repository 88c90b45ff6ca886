"""Reading request bodies: a size limit enforced before reading, and JSON or a clear 400.

A body announced larger than the limit (`Content-Length`) is refused with 413 without reading a
byte of it; a body without a length (chunked) is read up to the limit plus one byte, so a 10 MB
upload never sits in memory.
"""

from __future__ import annotations

import json
from typing import Any

import falcon

from api.errors import ApiError, bad_request

DEFAULT_MAX_BODY = 1024 * 1024


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"Request entity too large: the limit is {limit} bytes",
                    [{"path": "/", "errors": [f"body exceeds {limit} bytes"]}])


def read_json(req: falcon.Request, limit: int, *, required: bool = True) -> Any:
    """The request's JSON body (any JSON value; the caller checks its type)."""
    ctype = (req.content_type or "").split(";", 1)[0].strip().lower()
    if ctype and ctype != "application/json" and not ctype.endswith("+json"):
        raise bad_request(f"Unsupported Content-Type {ctype!r}: send application/json")
    length = req.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    if length is None and req.env.get("wsgi.input_terminated"):
        # Chunked upload: the server (gunicorn) ends the stream at the body's end, and reading
        # limit + 1 bytes tells "too large" without holding more than that.
        data = req.stream.read(limit + 1)
    else:
        data = req.bounded_stream.read(limit + 1)
    if len(data) > limit:
        raise _too_large(limit)
    if not data.strip():
        if not required:
            return None
        raise bad_request("Request body is empty: a JSON document is required")
    try:
        return json.loads(data)
    except UnicodeDecodeError:
        raise bad_request("Invalid JSON: the body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise bad_request(f"Invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
                          ) from None


def read_object(req: falcon.Request, limit: int) -> dict[str, Any]:
    doc = read_json(req, limit)
    if not isinstance(doc, dict):
        raise bad_request(f"Expected a JSON object, got {type(doc).__name__}")
    return doc
