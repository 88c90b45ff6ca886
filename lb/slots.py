"""From what HAProxy runs now to the desired `Model`, pure: runtime-API commands, or a reload.

Each backend has a fixed number of server slots (`s1`…`sN`). A member keeps its slot for as
long as it is a member, so HAProxy's per-server state (in-flight requests, a drain) follows the
task. Membership changes are runtime-API commands on slots (`set server B/sK addr … port …`,
`state ready|drain|maint`); only a change of the *layout* — a frontend or backend added or
removed, a mode, balance, vhost or port changed, more members than slots — needs a reload, and
then the new configuration already holds the whole assignment.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lb.model import DRAIN, READY, Model, Service

MAINT = "maint"
MIN_SLOTS = 8


@dataclass(frozen=True)
class Slot:
    task_id: str | None = None
    host: str = "127.0.0.1"
    port: int = 1
    state: str = MAINT  # READY | DRAIN | MAINT


@dataclass(frozen=True)
class Applied:
    """What HAProxy runs: each service's definition (members not used) and its slots."""

    services: tuple[Service, ...] = ()
    slots: tuple[tuple[Slot, ...], ...] = ()
    http_port: int | None = None

    def pairs(self) -> list[tuple[Service, tuple[Slot, ...]]]:
        return list(zip(self.services, self.slots, strict=True))

    def layout(self) -> tuple:
        return (self.http_port, tuple((replace(s, members=()), len(sl))
                                      for s, sl in self.pairs()))

    def slots_of(self, name: str) -> tuple[Slot, ...]:
        for service, slots in self.pairs():
            if service.name == name:
                return slots
        return ()


@dataclass(frozen=True)
class Step:
    applied: Applied
    reload: bool
    commands: tuple[str, ...]  # runtime API, only meaningful without a reload


def slot_count(members: int, current: int = 0) -> int:
    n = max(MIN_SLOTS, current)
    while n < members:
        n *= 2
    return n


def _assign(service: Service, current: tuple[Slot, ...]) -> tuple[tuple[Slot, ...], list[str]]:
    """New slots for `service` (grown when needed) and the commands that turn `current` into
    them (commands for slots beyond `current` are useless: they mean a reload)."""
    want = {m.task_id: m for m in service.members}
    slots = list(current) + [Slot()] * (slot_count(len(want), len(current)) - len(current))
    placed: set[str] = set()
    for i, slot in enumerate(slots):  # members keep their slot; the others' slots free up
        member = want.get(slot.task_id) if slot.task_id else None
        if member is None:
            slots[i] = Slot()
        else:
            slots[i] = Slot(member.task_id, member.host, member.port, member.state)
            placed.add(member.task_id)
    free = (i for i, s in enumerate(slots) if s.task_id is None)
    for member in service.members:
        if member.task_id not in placed:
            slots[next(free)] = Slot(member.task_id, member.host, member.port, member.state)
    commands: list[str] = []
    for i, (old, new) in enumerate(zip(current, slots, strict=False)):
        server = f"{service.name}/s{i + 1}"
        if new.state != MAINT and (old.host, old.port) != (new.host, new.port):
            if old.state != MAINT:
                commands.append(f"set server {server} state maint")
            commands.append(f"set server {server} addr {new.host} port {new.port}")
            commands.append(f"set server {server} state {new.state}")
        elif new.state != old.state:
            commands.append(f"set server {server} state {new.state}")
    return tuple(slots), commands


def step(current: Applied | None, desired: Model, http_port: int | None) -> Step:
    """The commands (or the reload) that make HAProxy serve `desired`."""
    cur = current or Applied(http_port=http_port)
    services, all_slots, commands = [], [], []
    for service in desired.services:
        before = cur.slots_of(service.name)
        slots, cmds = _assign(service, before)
        services.append(service)
        all_slots.append(slots)
        commands += cmds
    vhost_port = http_port if any(s.vhosts for s in desired.services) else None
    applied = Applied(tuple(services), tuple(all_slots), vhost_port)
    reload = current is None or applied.layout() != current.layout()
    return Step(applied, reload, () if reload else tuple(commands))


def draining(applied: Applied) -> dict[str, list[str]]:
    """Task id → the servers (`backend/sK`) where it drains."""
    out: dict[str, list[str]] = {}
    for service, slots in applied.pairs():
        for i, slot in enumerate(slots):
            if slot.state == DRAIN and slot.task_id:
                out.setdefault(slot.task_id, []).append(f"{service.name}/s{i + 1}")
    return out


def drained(leaving: set[str], applied: Applied | None, busy: set[str]) -> list[str]:
    """Which leaving tasks this balancer lets go: those it does not route to at all (another
    group's, not healthy yet, …) and those whose servers have nothing in flight (`busy`: the
    `backend/sK` servers with a current or queued request)."""
    routed = draining(applied) if applied else {}
    return sorted(t for t in leaving if not busy.intersection(routed.get(t, ())))


__all__ = ["drained", "Applied", "Slot", "Step", "step", "draining", "slot_count", "MAINT", "READY",
           "DRAIN"]
