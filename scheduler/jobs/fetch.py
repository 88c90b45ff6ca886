"""A job's downloads: Chronos's `fetch` (objects: `uri`, `executable`, `cache`, `extract`,
`outputFile`) and its older `uris` (strings: extracted, not executable). Pure.

Chronos keeps one of the two and shows both in its answers (each derived from the other), so a
job sent back as it was listed carries both: they are accepted together when they name the
same URIs in the same order, and refused when they disagree. Each item becomes a Mesos
`CommandInfo.URI` (`value`, `executable`, `extract`, `cache`, `output_file`), which the agent's
fetcher downloads into the sandbox before the command starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FIELDS = ("uri", "executable", "cache", "extract", "outputFile")


@dataclass(frozen=True)
class FetchItem:
    uri: str
    executable: bool = False
    cache: bool = False
    extract: bool = True
    output_file: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"uri": self.uri, "executable": self.executable,
                               "cache": self.cache, "extract": self.extract}
        if self.output_file:
            out["outputFile"] = self.output_file
        return out

    def to_mesos(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.uri, "executable": self.executable,
                               "extract": self.extract, "cache": self.cache}
        if self.output_file:
            out["output_file"] = self.output_file
        return out


def parse_fetch(raw: Any, uris: tuple[str, ...], add_error) -> tuple[FetchItem, ...]:
    """The job's fetch items from `fetch` (None: absent) and `uris`; problems go to
    `add_error(path, message)`."""
    if raw is None or raw == []:
        return tuple(FetchItem(u) for u in uris)
    if not isinstance(raw, list):
        add_error("/fetch", "must be a list of {uri, executable, cache, extract, outputFile}")
        return ()
    items: list[FetchItem] = []
    for i, item in enumerate(raw):
        path = f"/fetch/{i}"
        if not isinstance(item, dict):
            add_error(path, "must be an object with a 'uri'")
            continue
        unknown = sorted(set(item) - set(FIELDS))
        if unknown:
            add_error(path, f"unknown field(s) {', '.join(unknown)} (known: {', '.join(FIELDS)})")
        uri = item.get("uri")
        if not isinstance(uri, str) or not uri.strip():
            add_error(f"{path}/uri", "required: a non-empty string")
            continue
        flags = {}
        for key, default in (("executable", False), ("cache", False), ("extract", True)):
            value = item.get(key, default)
            if not isinstance(value, bool):
                add_error(f"{path}/{key}", "must be true or false")
                value = default
            flags[key] = value
        output = item.get("outputFile")
        if output is not None and (not isinstance(output, str) or output.startswith("/")
                                   or ".." in output.split("/")):
            add_error(f"{path}/outputFile", "must be a file name relative to the sandbox")
            output = None
        items.append(FetchItem(uri, output_file=output or None, **flags))
    if uris and tuple(f.uri for f in items) != uris:
        add_error("/uris", "'uris' and 'fetch' name different URIs: give one of them")
    return tuple(items)
