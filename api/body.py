"""Reading request bodies: a size limit enforced before reading, and JSON or a clear 400.

A body announced larger than the limit (`Content-Length`) is refused with 413 without reading a
byte of it; a body without a length (chunked) is read up to the limit plus one byte, so a 10 MB
upload never sits in memory. A document nested deeper than `MAX_DEPTH` is refused with 400 (an
app definition is a handful of levels deep; thousands of nested arrays only exist to make the
parser recurse), and nothing of it reaches a resource, so nothing is stored.
"""

from __future__ import annotations

import json
from typing import Any

import falcon

from api.errors import ApiError, bad_request

DEFAULT_MAX_BODY = 1024 * 1024
MAX_DEPTH = 64  # nesting levels of arrays and objects in one body


def depth_exceeds(doc: Any, limit: int) -> bool:
    """Whether `doc` (parsed JSON) nests arrays/objects more than `limit` levels deep; iterative,
    so a deep document cannot exhaust the stack here either."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, dict | list))
    return False


def _too_deep(limit: int) -> ApiError:
    return bad_request(f"Invalid JSON: nested deeper than {limit} levels")


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
        doc = json.loads(data)
    except RecursionError:  # nested past the interpreter's limit: certainly too deep
        raise _too_deep(MAX_DEPTH) from None
    except UnicodeDecodeError:
        raise bad_request("Invalid JSON: the body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise bad_request(f"Invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
                          ) from None
    if depth_exceeds(doc, MAX_DEPTH):
        raise _too_deep(MAX_DEPTH)
    return doc


def read_object(req: falcon.Request, limit: int) -> dict[str, Any]:
    doc = read_json(req, limit)
    if not isinstance(doc, dict):
        raise bad_request(f"Expected a JSON object, got {type(doc).__name__}")
    return doc
