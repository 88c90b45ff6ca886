"""A small ordered router whose fields may span several path segments.

Marathon app ids are paths (`/v2/apps/jpm/timeseries`) followed by sub-resources
(`/v2/apps/jpm/timeseries/tasks/<taskId>`). Falcon's compiled router cannot put a multi-segment
field before a suffix, so this router matches templates in the order they were added: a field
written `{appId*}` spans one or more segments, `{taskId}` exactly one. Specific templates are
added before general ones, so, as in Marathon, an app whose last id segment is `tasks`,
`restart` or `delay` cannot be addressed by the sub-resource URLs' prefix.

It keeps the route table (`routes`), from which the OpenAPI document is generated, and hands
Falcon the template so metrics count by route, never by raw path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from falcon.routing import map_http_methods, set_default_responders

_FIELD_RE = re.compile(r"\{(\w+)(\*?)\}")


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@dataclass
class Route:
    template: str
    resource: object
    method_map: dict[str, Any]
    regex: re.Pattern[str]
    fields: list[tuple[str, bool]]   # (template name, spans segments)

    def methods(self) -> list[str]:
        """Methods the resource implements (not Falcon's default 405/OPTIONS responders)."""
        return [m for m in ("GET", "POST", "PUT", "PATCH", "DELETE")
                if hasattr(self.resource, "on_" + m.lower())]


class OrderedRouter:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add_route(self, uri_template: str, resource: object, **kwargs: Any) -> None:
        method_map = map_http_methods(resource, suffix=kwargs.get("suffix"))
        set_default_responders(method_map)
        pattern = ""
        fields: list[tuple[str, bool]] = []
        pos = 0
        for m in _FIELD_RE.finditer(uri_template):
            pattern += re.escape(uri_template[pos:m.start()])
            name, multi = m.group(1), bool(m.group(2))
            pattern += f"(?P<{snake(name)}>{'.+' if multi else '[^/]+'})"
            fields.append((name, multi))
            pos = m.end()
        pattern += re.escape(uri_template[pos:])
        self.routes.append(Route(uri_template, resource, method_map,
                                 re.compile(pattern), fields))

    def find(self, uri: str, req: Any = None) -> tuple[object, dict, dict, str] | None:
        for route in self.routes:
            m = route.regex.fullmatch(uri)
            if m:
                return route.resource, route.method_map, m.groupdict(), route.template
        return None
