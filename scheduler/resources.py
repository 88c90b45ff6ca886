"""Resource arithmetic over Mesos offers: parse, fit, take, and emit the Resource JSON of a task.

An offer arrives as a Mesos v1 JSON dict (pymesos gives an addict.Dict). `parse_offer` turns it
into an immutable `OfferView`; `take` returns a new view with the task's share removed plus the
Resource JSON list the TaskInfo must carry. Nothing here mutates its inputs.

Invariants:
- scalars are compared and subtracted like Mesos does (fixed point, 3 decimals, rounded as the
  master rounds them): a need fits when `need <= have + EPSILON`, and every value and result is
  rounded to 3 decimals, so repeated subtraction never drifts below zero or leaves 1e-17 crumbs;
- port ranges are inclusive `(begin, end)` pairs, sorted, disjoint and merged; taking ports
  splits ranges and never hands out a port twice;
- resources are kept in *pools*, one per (role, reservation metadata); what a task takes from a
  pool is emitted with exactly that pool's `role` / `allocation_info` / `reservation(s)` fields,
  so the master finds it in the offer. Reserved pools (role != "*") are used before `*`;
- only pools whose role is in the caller's `roles` count; others are ignored (never taken);
- resources we cannot hand out safely (revocable, shared, persistent volumes, MOUNT/PATH disks)
  are skipped at parse time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scheduler.spec import AppSpec

EPSILON = 0.0005  # half of Mesos' fixed-point resolution (0.001)
SCALAR_NAMES = ("cpus", "mem", "disk")
# The fields of a Mesos Resource that say whose it is; copied verbatim onto what a task takes.
_ROLE_FIELDS = ("role", "allocation_info", "reservation", "reservations")

Range = tuple[int, int]


def fixed(x: float) -> float:
    """Round to Mesos' fixed-point resolution the way Mesos does (`llround(x * 1000) / 1000`:
    halves away from zero), so an offer's 0.1875 cpus is the master's 0.188 too."""
    m = float(x) * 1000.0
    n = math.floor(m + 0.5) if m >= 0 else -math.floor(-m + 0.5)
    return n / 1000.0 + 0.0  # + 0.0 turns -0.0 into 0.0


class Insufficient(ValueError):
    """`take` / `take_ports` were asked for more than there is; `reason` names the shortfall."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------------------------------------
# port ranges


def normalize_ranges(ranges: Iterable[Sequence[int]]) -> tuple[Range, ...]:
    """Sort, drop empty ranges and merge overlapping or adjacent ones."""
    out: list[list[int]] = []
    for b, e in sorted((int(r[0]), int(r[1])) for r in ranges):
        if e < b:
            continue
        if out and b <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([b, e])
    return tuple((b, e) for b, e in out)


def ranges_count(ranges: Sequence[Range]) -> int:
    return sum(e - b + 1 for b, e in ranges)


def ranges_contain(ranges: Sequence[Range], port: int) -> bool:
    return any(b <= port <= e for b, e in ranges)


def remove_port(ranges: Sequence[Range], port: int) -> tuple[Range, ...]:
    """`ranges` without `port` (splitting the range that holds it)."""
    out: list[Range] = []
    for b, e in ranges:
        if b <= port <= e:
            if b < port:
                out.append((b, port - 1))
            if port < e:
                out.append((port + 1, e))
        else:
            out.append((b, e))
    return tuple(out)


def ports_to_ranges(ports: Iterable[int]) -> tuple[Range, ...]:
    return normalize_ranges((p, p) for p in ports)


def lowest_ports(ranges: Sequence[Range], n: int,
                 exclude: frozenset[int] = frozenset()) -> list[int]:
    """The `n` lowest ports of `ranges` not in `exclude` (fewer if there are not enough)."""
    out: list[int] = []
    for b, e in ranges:
        p = b
        while p <= e and len(out) < n:
            if p not in exclude:
                out.append(p)
            p += 1
        if len(out) >= n:
            break
    return out


def take_ports(ranges: Sequence[Range],
               wanted: Sequence[int]) -> tuple[list[int], tuple[Range, ...]]:
    """Take ports from `ranges`: each entry of `wanted` is a specific port, or 0 for any free
    one (the lowest, after the specific ones are set aside). Returns (the ports in `wanted`
    order, the ranges left). Raises Insufficient naming the first shortfall."""
    left = normalize_ranges(ranges)
    for p in wanted:
        if p and not ranges_contain(left, p):
            raise Insufficient(f"port {p} not offered")
        if p:
            left = remove_port(left, p)
    n_any = sum(1 for p in wanted if not p)
    anys = lowest_ports(left, n_any)
    if len(anys) < n_any:
        raise Insufficient("no free ports")
    for p in anys:
        left = remove_port(left, p)
    it = iter(anys)
    return [p if p else next(it) for p in wanted], left


# ---------------------------------------------------------------------------------------------
# views


@dataclass(frozen=True)
class Pool:
    """The resources of one offer that share one role and reservation (treat as read-only)."""

    role: str
    meta: Mapping[str, Any]  # the Resource fields in _ROLE_FIELDS, copied onto what is taken
    scalars: Mapping[str, float]
    ports: tuple[Range, ...] = ()


@dataclass(frozen=True)
class OfferView:
    """An offer's usable resources. `scalars` and `ports` total every pool (all roles)."""

    id: str
    agent_id: str
    hostname: str
    attributes: Mapping[str, str]
    pools: tuple[Pool, ...]
    scalars: Mapping[str, float] = field(default_factory=dict)
    ports: tuple[Range, ...] = ()
    _avail: dict = field(default_factory=dict, compare=False, repr=False)  # roles -> Available

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(sorted({p.role for p in self.pools}))

    def available(self, roles: frozenset[str] | None = None) -> Available:
        """What a task whose resources may come from `roles` (None: any role) can use."""
        got = self._avail.get(roles)
        if got is None:
            scal: dict[str, float] = {}
            port_ranges: list[Range] = []
            for p in self.pools:
                if roles is None or p.role in roles:
                    for k, v in p.scalars.items():
                        scal[k] = fixed(scal.get(k, 0.0) + v)
                    port_ranges.extend(p.ports)
            got = Available(scal, normalize_ranges(port_ranges))
            self._avail[roles] = got
        return got


@dataclass(frozen=True)
class Available:
    scalars: Mapping[str, float]
    ports: tuple[Range, ...]

    def get(self, name: str) -> float:
        return self.scalars.get(name, 0.0)


def make_view(offer_id: str, agent_id: str, hostname: str, attributes: Mapping[str, str],
              pools: Iterable[Pool]) -> OfferView:
    """Build a view whose totals agree with its pools. Reserved pools sort first, `*` last."""
    ordered = tuple(sorted(pools, key=lambda p: (p.role == "*", p.role, _meta_key(p.meta))))
    totals = OfferView(offer_id, agent_id, hostname, dict(attributes), ordered).available(None)
    return OfferView(offer_id, agent_id, hostname, dict(attributes), ordered,
                     dict(totals.scalars), totals.ports)


def _meta_key(meta: Mapping[str, Any]) -> str:
    # Fast path for the common unreserved shape {role, allocation_info: {role}}: parsing offers
    # is a visible share of placement time and json.dumps is the slow part of it.
    if len(meta) <= 2 and "reservation" not in meta and "reservations" not in meta:
        alloc = meta.get("allocation_info")
        if alloc is None or (len(alloc) == 1 and isinstance(alloc.get("role"), str)):
            return f"{meta.get('role')}\0{alloc and alloc['role']}"
    return json.dumps(meta, sort_keys=True, default=str)


def attribute_value(attr: Mapping[str, Any]) -> str | None:
    """A Mesos attribute as the string Marathon compares constraints against."""
    kind = attr.get("type")
    if kind == "TEXT":
        return str((attr.get("text") or {}).get("value", ""))
    if kind == "SCALAR":
        return str(float((attr.get("scalar") or {}).get("value", 0.0)))
    if kind == "RANGES":
        rs = (attr.get("ranges") or {}).get("range") or []
        return "[" + ",".join(f"{r.get('begin')}-{r.get('end')}" for r in rs) + "]"
    if kind == "SET":
        items = (attr.get("set") or {}).get("item") or []
        return "{" + ",".join(str(i) for i in items) + "}"
    return None


def resource_role(res: Mapping[str, Any]) -> str:
    """The role a Resource belongs to, in either reservation format (refined or pre-refinement)."""
    reservations = res.get("reservations")
    if reservations:
        return str(reservations[-1].get("role", "*"))
    return str(res.get("role") or "*")


def _skippable(res: Mapping[str, Any]) -> bool:
    if res.get("revocable") is not None or res.get("shared") is not None:
        return True
    disk = res.get("disk")
    return bool(disk) and (disk.get("persistence") is not None or disk.get("source") is not None)


def parse_offer(offer: Mapping[str, Any]) -> OfferView:
    """A Mesos v1 Offer JSON dict -> OfferView (pools of every role; callers filter by role)."""
    attrs: dict[str, str] = {}
    for a in offer.get("attributes") or []:
        v = attribute_value(a)
        if v is not None and a.get("name"):
            attrs[str(a["name"])] = v
    grouped: dict[str, dict[str, Any]] = {}
    for res in offer.get("resources") or []:
        if _skippable(res):
            continue
        name, kind = res.get("name"), res.get("type")
        # plain JSON copies (offers may be addict.Dicts), for a stable key and clean output
        meta = {k: _clone(res[k]) for k in _ROLE_FIELDS if res.get(k) is not None}
        key = resource_role(res) + "\0" + _meta_key(meta)
        g = grouped.setdefault(key, {"role": resource_role(res), "meta": meta,
                                     "scalars": {}, "ports": []})
        if kind == "SCALAR":
            v = float((res.get("scalar") or {}).get("value", 0.0))
            g["scalars"][name] = fixed(g["scalars"].get(name, 0.0) + v)
        elif kind == "RANGES" and name == "ports":
            g["ports"].extend((r.get("begin"), r.get("end"))
                              for r in (res.get("ranges") or {}).get("range") or [])
    pools = [Pool(g["role"], g["meta"], g["scalars"], normalize_ranges(g["ports"]))
             for g in grouped.values()]
    return make_view(str((offer.get("id") or {}).get("value", "")),
                     str((offer.get("agent_id") or {}).get("value", "")),
                     str(offer.get("hostname", "")), attrs, pools)


# ---------------------------------------------------------------------------------------------
# demand, fit and take


@dataclass(frozen=True)
class Demand:
    """What one task needs. `ports`: one entry per port; 0 = any free port, else that port."""

    scalars: Mapping[str, float]
    ports: tuple[int, ...] = ()

    @property
    def any_ports(self) -> int:
        return sum(1 for p in self.ports if p == 0)

    @property
    def fixed_ports(self) -> tuple[int, ...]:
        return tuple(p for p in self.ports if p != 0)


def demand_of(app: AppSpec) -> Demand:
    """An AppSpec's per-task demand. Marathon semantics: without `requirePorts` the declared
    port numbers are service ports and each gets any free host port; with it, the host ports
    are the declared ones (0 still means any)."""
    scal = {"cpus": float(app.cpus), "mem": float(app.mem)}
    if app.disk:
        scal["disk"] = float(app.disk)
    if app.gpus:
        scal["gpus"] = float(app.gpus)
    if app.require_ports:
        ports = tuple(int(p.port) for p in app.port_definitions)
    else:
        ports = tuple(0 for _ in app.port_definitions)
    return Demand(scal, ports)


def shortfall(avail: Available, demand: Demand) -> str | None:
    """None when `demand` fits `avail`, else the named reason (first resource that is short)."""
    for name in SCALAR_NAMES:
        need = demand.scalars.get(name, 0.0)
        if need > 0 and need > avail.get(name) + EPSILON:
            return f"insufficient {name}"
    for name in sorted(demand.scalars):
        if name not in SCALAR_NAMES and demand.scalars[name] > avail.get(name) + EPSILON:
            return f"insufficient {name}"
    if demand.ports:
        fixed_ports = demand.fixed_ports
        for p in fixed_ports:
            if not ranges_contain(avail.ports, p):
                return f"port {p} not offered"
        free = ranges_count(avail.ports) - len(set(fixed_ports))
        if demand.any_ports > free:
            return "no free ports"
    return None


def fits(view: OfferView, demand: Demand, roles: frozenset[str] | None = None) -> str | None:
    """None when a task with `demand` fits in `view` using pools of `roles`, else the reason."""
    return shortfall(view.available(roles), demand)


@dataclass(frozen=True)
class Taken:
    view: OfferView            # what is left of the offer
    resources: list[dict]      # Mesos Resource JSON for the TaskInfo
    ports: list[int]           # host ports in demand order (PORT0, PORT1, ...)


def _clone(v: Any) -> Any:
    """Copy plain JSON (much cheaper than copy.deepcopy, which matters in the bench)."""
    if isinstance(v, Mapping):
        return {k: _clone(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clone(x) for x in v]
    return v


def _scalar_json(name: str, value: float, meta: Mapping[str, Any]) -> dict:
    return {"name": name, "type": "SCALAR", "scalar": {"value": fixed(value)}, **_clone(meta)}


def _ports_json(ports: Iterable[int], meta: Mapping[str, Any]) -> dict:
    return {"name": "ports", "type": "RANGES",
            "ranges": {"range": [{"begin": b, "end": e} for b, e in ports_to_ranges(ports)]},
            **_clone(meta)}


def take(view: OfferView, demand: Demand, roles: frozenset[str] | None = None) -> Taken:
    """Remove one task's `demand` from `view`. Raises Insufficient if it does not fit.

    Scalars come from reserved pools first, then `*`; any-ports are the lowest free ones (after
    the fixed ports are set aside), so the result is deterministic.
    """
    reason = fits(view, demand, roles)
    if reason is not None:
        raise Insufficient(reason)
    usable = [i for i, p in enumerate(view.pools) if roles is None or p.role in roles]
    new_scalars = [dict(p.scalars) for p in view.pools]
    new_ports = [p.ports for p in view.pools]
    taken: list[tuple[int, str, float]] = []  # (pool, name, amount) in pool order
    for name in sorted(demand.scalars, key=_scalar_order):
        left = fixed(demand.scalars[name])
        for i in usable:
            if left <= EPSILON:
                break
            have = new_scalars[i].get(name, 0.0)
            if have <= EPSILON:
                continue
            amount = min(have, left)
            if have - left <= EPSILON:  # take the crumb too: never leave < resolution behind
                amount = have
            new_scalars[i][name] = fixed(have - amount)
            left = fixed(left - amount)
            taken.append((i, name, amount))
    # Ports: fixed ones from whichever pool holds them, then the lowest free ones.
    port_pool: dict[int, int] = {}
    for p in demand.fixed_ports:
        for i in usable:
            if ranges_contain(new_ports[i], p):
                new_ports[i] = remove_port(new_ports[i], p)
                port_pool[p] = i
                break
    chosen: list[int] = []
    need_any = demand.any_ports
    for i in usable:
        if need_any <= 0:
            break
        got = lowest_ports(new_ports[i], need_any)
        for p in got:
            new_ports[i] = remove_port(new_ports[i], p)
            port_pool[p] = i
        chosen.extend(got)
        need_any -= len(got)
    any_iter = iter(chosen)
    ports = [p if p != 0 else next(any_iter) for p in demand.ports]

    resources: list[dict] = [_scalar_json(name, amount, view.pools[i].meta)
                             for i, name, amount in taken]
    for i in usable:
        mine = sorted(p for p, pool in port_pool.items() if pool == i)
        if mine:
            resources.append(_ports_json(mine, view.pools[i].meta))
    pools = [Pool(p.role, p.meta, new_scalars[i], new_ports[i]) for i, p in enumerate(view.pools)]
    left_view = make_view(view.id, view.agent_id, view.hostname, view.attributes, pools)
    return Taken(left_view, resources, ports)


def _scalar_order(name: str) -> tuple[int, str]:
    return (SCALAR_NAMES.index(name) if name in SCALAR_NAMES else len(SCALAR_NAMES), name)


def sum_resources(resources: Iterable[Mapping[str, Any]]) -> tuple[dict[str, float], list[int]]:
    """Totals of a Resource JSON list: (scalars by name, sorted list of ports)."""
    scal: dict[str, float] = {}
    ports: list[int] = []
    for r in resources:
        if r.get("type") == "SCALAR":
            scal[r["name"]] = fixed(scal.get(r["name"], 0.0) + r["scalar"]["value"])
        elif r.get("type") == "RANGES" and r.get("name") == "ports":
            for rr in r["ranges"]["range"]:
                ports.extend(range(rr["begin"], rr["end"] + 1))
    return scal, sorted(ports)
