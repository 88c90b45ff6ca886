"""Resource arithmetic for localmesos: scalars and ranges, as plain immutable values.

Invariants:
- Scalars are kept as integer thousandths (Mesos keeps three decimals of fixed point), so
  repeated add/subtract never drifts: 4 - 0.1 - 0.1 is exactly 3.8.
- Ranges are kept merged and sorted, inclusive on both ends (`[31000-31999]`).
- A `Resources` value is never mutated; every operation returns a new one.
- Parsing accepts the agent flag form (`cpus:4;mem:4096;ports:[31000-31999]`) and the v1 JSON
  form (a list of `Resource` objects); bad input raises `ValueError` with a readable message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

Range = tuple[int, int]

# The scalars /state always shows, even at zero (Mesos shows gpus too).
STATE_SCALARS = ("cpus", "disk", "gpus", "mem")


def _merge(ranges: list[Range]) -> tuple[Range, ...]:
    out: list[list[int]] = []
    for b, e in sorted(ranges):
        if out and b <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([b, e])
    return tuple((b, e) for b, e in out)


def _subtract(have: tuple[Range, ...], take: tuple[Range, ...]) -> tuple[Range, ...]:
    out: list[Range] = []
    for b, e in have:
        pieces = [(b, e)]
        for tb, te in take:
            nxt = []
            for pb, pe in pieces:
                if te < pb or tb > pe:
                    nxt.append((pb, pe))
                    continue
                if tb > pb:
                    nxt.append((pb, tb - 1))
                if te < pe:
                    nxt.append((te + 1, pe))
            pieces = nxt
        out.extend(pieces)
    return _merge(out)


def _contains_ranges(have: tuple[Range, ...], want: tuple[Range, ...]) -> bool:
    return all(any(hb <= b and e <= he for hb, he in have) for b, e in want)


def format_scalar(milli: int) -> str:
    """Mesos's way of printing a scalar: no trailing zeros, at most three decimals."""
    text = f"{milli / 1000:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def format_ranges(ranges: tuple[Range, ...]) -> str:
    return "[" + ", ".join(f"{b}-{e}" for b, e in ranges) + "]"


@dataclass(frozen=True)
class Resources:
    """Unreserved resources: named scalars (thousandths) and named ranges."""

    scalars: dict[str, int] = field(default_factory=dict)
    ranges: dict[str, tuple[Range, ...]] = field(default_factory=dict)

    def __add__(self, other: Resources) -> Resources:
        scalars = dict(self.scalars)
        for k, v in other.scalars.items():
            scalars[k] = scalars.get(k, 0) + v
        ranges = dict(self.ranges)
        for k, v in other.ranges.items():
            ranges[k] = _merge(list(ranges.get(k, ())) + list(v))
        return Resources(_nonzero(scalars), {k: v for k, v in ranges.items() if v})

    def __sub__(self, other: Resources) -> Resources:
        scalars = dict(self.scalars)
        for k, v in other.scalars.items():
            scalars[k] = max(0, scalars.get(k, 0) - v)
        ranges = dict(self.ranges)
        for k, v in other.ranges.items():
            if k in ranges:
                ranges[k] = _subtract(ranges[k], v)
        return Resources(_nonzero(scalars), {k: v for k, v in ranges.items() if v})

    def contains(self, other: Resources) -> bool:
        """True when `other` fits entirely inside these resources."""
        for k, v in other.scalars.items():
            if v > self.scalars.get(k, 0):
                return False
        return all(_contains_ranges(self.ranges.get(k, ()), v) for k, v in other.ranges.items())

    def empty(self) -> bool:
        return not self.scalars and not self.ranges

    def allocatable(self) -> bool:
        """Mesos's default min_allocatable_resources: cpus:0.01 or mem:32."""
        return self.scalars.get("cpus", 0) >= 10 or self.scalars.get("mem", 0) >= 32000

    def scalar(self, name: str) -> float:
        return self.scalars.get(name, 0) / 1000

    def to_state(self) -> dict[str, Any]:
        """The /state form: `{"cpus": 2.0, "disk": 0.0, "gpus": 0.0, "mem": 32.0, "ports": "[..]"}`."""
        out: dict[str, Any] = {k: 0.0 for k in STATE_SCALARS}
        for k, v in self.scalars.items():
            out[k] = v / 1000
        for k, v in self.ranges.items():
            out[k] = format_ranges(v)
        return dict(sorted(out.items()))

    def to_proto(self, allocation_role: str | None = None, with_role: bool = False,
                 ranges_first: bool = False) -> list[dict[str, Any]]:
        """The v1 JSON form. Offers list ranges first and carry `role`, as the recordings show."""
        items: list[dict[str, Any]] = []
        for k, v in self.scalars.items():
            items.append({"name": k, "type": "SCALAR", "scalar": {"value": v / 1000}})
        rng = [{"name": k, "type": "RANGES",
                "ranges": {"range": [{"begin": b, "end": e} for b, e in v]}}
               for k, v in self.ranges.items()]
        items = rng + items if ranges_first else items + rng
        for item in items:
            if allocation_role is not None:
                item["allocation_info"] = {"role": allocation_role}
            if with_role:
                item["role"] = "*"
        return items


def _nonzero(scalars: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in scalars.items() if v > 0}


def _milli(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"scalar value must be a number, got {value!r}")
    if value < 0:
        raise ValueError(f"scalar value must not be negative, got {value!r}")
    return round(value * 1000)


_RANGE_TEXT = re.compile(r"^\[\s*(\d+\s*-\s*\d+(\s*,\s*\d+\s*-\s*\d+)*)\s*\]$")


def parse_spec(text: str) -> Resources:
    """Parse the agent flag form `cpus:4;mem:4096;disk:10000;ports:[31000-31999]`."""
    scalars: dict[str, int] = {}
    ranges: dict[str, tuple[Range, ...]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, value = part.partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise ValueError(f"bad resource {part!r}: expected name:value")
        m = _RANGE_TEXT.match(value)
        if m:
            pairs = []
            for r in m.group(1).split(","):
                b, e = (int(x) for x in r.split("-"))
                if b > e:
                    raise ValueError(f"bad range {r.strip()!r} in {part!r}")
                pairs.append((b, e))
            ranges[name] = _merge(pairs)
            continue
        try:
            scalars[name] = scalars.get(name, 0) + _milli(float(value))
        except ValueError:
            raise ValueError(f"bad resource {part!r}: value is neither a number nor [a-b]") from None
    return Resources(_nonzero(scalars), ranges)


def from_proto(items: Any) -> Resources:
    """Parse a v1 JSON resource list (as in TaskInfo.resources). Unknown types are errors."""
    if items is None:
        return Resources()
    if not isinstance(items, list):
        raise ValueError("resources must be a list")
    total = Resources()
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValueError(f"bad resource {item!r}")
        kind = item.get("type", "SCALAR")
        if kind == "SCALAR":
            value = (item.get("scalar") or {}).get("value")
            total = total + Resources({item["name"]: _milli(value)}, {})
        elif kind == "RANGES":
            pairs = []
            for r in (item.get("ranges") or {}).get("range") or []:
                b, e = r.get("begin"), r.get("end")
                if not isinstance(b, int) or not isinstance(e, int) or b > e:
                    raise ValueError(f"bad range {r!r} in resource {item['name']}")
                pairs.append((b, e))
            total = total + Resources({}, {item["name"]: _merge(pairs)})
        else:
            raise ValueError(f"unsupported resource type {kind!r} for {item['name']}")
    return total


def format_proto(items: list[dict[str, Any]]) -> str:
    """Mesos's text form of a resource list, e.g. `cpus(allocated: *):2; ports(allocated: *):[31000-32000]`."""
    parts = []
    for item in items:
        name = item.get("name", "?")
        alloc = (item.get("allocation_info") or {}).get("role")
        label = f"{name}(allocated: {alloc})" if alloc else name
        if item.get("type", "SCALAR") == "RANGES":
            pairs = tuple((r.get("begin"), r.get("end"))
                          for r in (item.get("ranges") or {}).get("range") or [])
            parts.append(f"{label}:{format_ranges(pairs)}")
        else:
            value = (item.get("scalar") or {}).get("value", 0)
            try:
                parts.append(f"{label}:{format_scalar(round(float(value) * 1000))}")
            except (TypeError, ValueError):
                parts.append(f"{label}:{value}")
    return "; ".join(parts)


def shift_ranges(res: Resources, name: str, offset: int) -> Resources:
    """The same resources with the ranges called `name` moved by `offset` (per-agent ports)."""
    if name not in res.ranges or offset == 0:
        return res
    ranges = dict(res.ranges)
    ranges[name] = tuple((b + offset, e + offset) for b, e in ranges[name])
    return Resources(dict(res.scalars), ranges)


def span(res: Resources, name: str) -> int:
    """Width of the smallest block holding all of `name`'s ranges (0 when absent)."""
    rs = res.ranges.get(name)
    if not rs:
        return 0
    return rs[-1][1] - rs[0][0] + 1
