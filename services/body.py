"""Request bodies of the access services: a size limit checked before reading, a nesting limit,
and JSON or a clear 400 (Falcon's `{"title", "description"}` error shape, as the rest of the
services answer).

The size limit is enforced from `Content-Length` (413 without reading a byte) and, for a chunked
body, by reading at most one byte past it. The nesting walk is iterative; the same rule as the
control API's `api.body` (the services do not import the control API).
"""

from __future__ import annotations

import json
from typing import Any

import falcon

MAX_BODY = 4 * 1024 * 1024   # a full predict batch (10 000 inputs) fits with room to spare
MAX_DEPTH = 16               # the predict bodies nest 3 levels deep


def _depth_exceeds(doc: Any, limit: int) -> bool:
    if not isinstance(doc, dict | list):
        return False
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def read_json(req: falcon.Request, limit: int = MAX_BODY, depth: int = MAX_DEPTH) -> Any:
    """The parsed JSON body, or 413 (too large) / 400 (not JSON, too deep)."""
    too_large = falcon.HTTPPayloadTooLarge(
        title="Request body too large", description=f"the limit is {limit} bytes")
    length = req.content_length
    if length is not None and length > limit:
        raise too_large
    stream = req.stream if length is None and req.env.get("wsgi.input_terminated") \
        else req.bounded_stream
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise too_large
    try:
        doc = json.loads(data)
    except RecursionError:
        doc = None
        too_deep = True
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise falcon.HTTPBadRequest(title="Invalid body",
                                    description=f"not a JSON document: {exc}") from None
    else:
        too_deep = _depth_exceeds(doc, depth)
    if too_deep:
        raise falcon.HTTPBadRequest(title="Invalid body",
                                    description=f"JSON nested deeper than {depth} levels")
    return doc
