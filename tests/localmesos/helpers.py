"""Test helpers for localmesos: a recording pymesos scheduler, task builders, a raw v1 client.

`Recorder` is a real `pymesos.Scheduler`: the driver it is given is pymesos's own
`MesosSchedulerDriver`, talking HTTP to a real localmesos process. Every callback is recorded
with its arrival time; `wait_for` blocks on a condition with a deadline (never a bare sleep).
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from pymesos import MesosSchedulerDriver, Scheduler

from localmesos import recordio
from tests.data import MESOS_1_12

PROTOCOL = MESOS_1_12


def recorded(name: str) -> Any:
    return json.loads((PROTOCOL / name).read_text())


def key_paths(obj: Any, prefix: str = "") -> set[str]:
    """Every key path in a JSON value (`update.status.uuid`), lists collapsed to `[]`."""
    out: set[str] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{prefix}.{k}" if prefix else k
            out.add(p)
            out |= key_paths(v, p)
    elif isinstance(obj, list):
        for v in obj:
            out |= key_paths(v, prefix + "[]")
    return out


class Recorder(Scheduler):
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.events: list[tuple[str, Any, float]] = []
        self.offers: dict[str, dict[str, Any]] = {}
        self.framework_id: str | None = None
        self.on_offers: Callable[[Any, list[dict[str, Any]]], None] | None = None

    def _add(self, kind: str, payload: Any) -> None:
        with self.cond:
            self.events.append((kind, payload, time.monotonic()))
            self.cond.notify_all()

    def registered(self, driver: Any, framework_id: Any, master_info: Any) -> None:
        self.framework_id = framework_id["value"]
        self._add("registered", framework_id["value"])

    def reregistered(self, driver: Any, master_info: Any) -> None:
        self._add("reregistered", master_info)

    def disconnected(self, driver: Any) -> None:
        self._add("disconnected", None)

    def resourceOffers(self, driver: Any, offers: list[dict[str, Any]]) -> None:  # noqa: N802
        with self.cond:
            for o in offers:
                self.offers[o["id"]["value"]] = o
        for o in offers:
            self._add("offer", o)
        if self.on_offers is not None:
            self.on_offers(driver, offers)

    def offerRescinded(self, driver: Any, offer_id: Any) -> None:  # noqa: N802
        with self.cond:
            self.offers.pop(offer_id["value"], None)
        self._add("rescind", offer_id["value"])

    def statusUpdate(self, driver: Any, status: dict[str, Any]) -> None:  # noqa: N802
        self._add("status", status)

    def frameworkMessage(self, driver: Any, executor_id: Any, agent_id: Any, data: Any) -> None:  # noqa: N802
        self._add("message", {"executor_id": executor_id, "agent_id": agent_id, "data": data})

    def slaveLost(self, driver: Any, agent_id: Any) -> None:  # noqa: N802
        self._add("agent_lost", agent_id["value"])

    def executorLost(self, driver: Any, executor_id: Any, agent_id: Any, status: Any) -> None:  # noqa: N802
        self._add("executor_lost", {"executor_id": executor_id["value"], "status": status})

    def error(self, driver: Any, message: str) -> None:
        self._add("error", message)

    # ---- queries ---------------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 15.0,
                 what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                result = predicate()
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                         f"events: {self.summary()}")
                self.cond.wait(min(left, 0.2))

    def summary(self) -> list[Any]:
        out = []
        for kind, p, _ in self.events[-40:]:
            if kind == "status":
                out.append((kind, p["task_id"]["value"], p["state"], p.get("reason")))
            elif kind == "offer":
                out.append((kind, p["hostname"], p["id"]["value"]))
            else:
                out.append((kind, p if not isinstance(p, dict) else "..."))
        return out

    def of(self, kind: str) -> list[Any]:
        return [p for k, p, _ in self.events if k == kind]

    def statuses(self, task_id: str, retries: bool = False) -> list[dict[str, Any]]:
        """The task's updates in arrival order. The agent re-sends an update until it is
        acknowledged (every second in these tests), so a slow acknowledgement delivers the same
        update (same uuid) twice: such re-deliveries are left out unless `retries`."""
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for s in self.of("status"):
            if s["task_id"]["value"] != task_id:
                continue
            uuid = s.get("uuid")  # none on master-generated and reconciliation updates
            if uuid is not None and not retries:
                if uuid in seen:
                    continue
                seen.add(uuid)
            out.append(s)
        return out

    def states(self, task_id: str) -> list[str]:
        return [s["state"] for s in self.statuses(task_id)]

    def wait_state(self, task_id: str, state: str, timeout: float = 15.0) -> dict[str, Any]:
        def found() -> Any:
            for s in self.statuses(task_id):
                if s["state"] == state:
                    return s
            return None
        return self.wait_for(found, timeout, f"{task_id} {state}")

    def take_offer(self, hostname: str | None = None, timeout: float = 15.0) -> dict[str, Any]:
        """Wait for an outstanding offer (optionally from one agent) and claim it."""
        def pick() -> Any:
            for oid, o in list(self.offers.items()):
                if hostname is None or o["hostname"] == hostname:
                    return self.offers.pop(oid)
            return None
        return self.wait_for(pick, timeout, f"an offer from {hostname or 'any agent'}")

    def mark(self) -> int:
        with self.cond:
            return len(self.events)

    def since(self, mark: int, kind: str) -> list[Any]:
        with self.cond:
            return [p for k, p, _ in self.events[mark:] if k == kind]


# Every driver start_driver made, so the conftest can stop any a failing test left running.
STARTED: list[MesosSchedulerDriver] = []


def start_driver(master: str, recorder: Recorder, **info: Any) -> MesosSchedulerDriver:
    """Start pymesos's driver for `recorder` (also set as `recorder.driver`); wait for SUBSCRIBED."""
    framework = {"user": "root", "name": "localmesos-test", "failover_timeout": 60.0,
                 "hostname": "127.0.0.1"}
    framework.update(info)
    driver = MesosSchedulerDriver(recorder, framework, master, use_addict=False)
    recorder.driver = driver  # type: ignore[attr-defined]
    STARTED.append(driver)
    driver.start()
    recorder.wait_for(lambda: recorder.of("registered") or recorder.of("reregistered"),
                      what="SUBSCRIBED")
    return driver


def stop_driver(driver: MesosSchedulerDriver, failover: bool = False) -> None:
    driver.stop(failover=failover)
    driver.join()


def scalar(name: str, v: float) -> dict[str, Any]:
    return {"name": name, "type": "SCALAR", "scalar": {"value": v}}


def ports(*pairs: tuple[int, int]) -> dict[str, Any]:
    return {"name": "ports", "type": "RANGES",
            "ranges": {"range": [{"begin": b, "end": e} for b, e in pairs]}}


def command_task(task_id: str, offer: dict[str, Any], cmd: str, cpus: float = 0.1,
                 mem: float = 32, extra_resources: list[dict[str, Any]] | None = None,
                 **fields: Any) -> dict[str, Any]:
    task = {"task_id": {"value": task_id}, "agent_id": offer["agent_id"], "name": task_id,
            "command": {"shell": True, "value": cmd},
            "resources": [scalar("cpus", cpus), scalar("mem", mem)] + (extra_resources or [])}
    task.update(fields)
    return task


def offer_scalar(offer: dict[str, Any], name: str) -> float:
    return sum(r["scalar"]["value"] for r in offer["resources"] if r["name"] == name)


def offer_ranges(offer: dict[str, Any], name: str = "ports") -> list[tuple[int, int]]:
    return [(r["begin"], r["end"]) for res in offer["resources"] if res["name"] == name
            for r in res["ranges"]["range"]]


def free_offer_port(offer: dict[str, Any]) -> int:
    """A port of the offer that nothing on this machine listens on (other tests share ranges)."""
    for b, e in offer_ranges(offer):
        for port in range(b, e + 1):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise AssertionError("no free port in the offer")


class RawClient:
    """The v1 scheduler API without pymesos: calls over http.client, the event stream raw."""

    def __init__(self, master: str) -> None:
        host, port = master.split(":")
        self.host, self.port = host, int(port)
        self.stream_id: str | None = None
        self.framework_id: str | None = None
        self.events: list[tuple[dict[str, Any], int, float]] = []
        self.cond = threading.Condition()
        self.headers: dict[str, str] = {}
        self.status = 0
        self._sock: socket.socket | None = None

    def call(self, body: Any, headers: dict[str, str] | None = None,
             raw: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        h = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.stream_id:
            h["Mesos-Stream-Id"] = self.stream_id
        h.update(headers or {})
        h = {k: v for k, v in h.items() if v is not None}
        conn.request("POST", "/api/v1/scheduler",
                     body=raw if raw is not None else json.dumps(body).encode(), headers=h)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, dict(resp.getheaders()), data

    def subscribe(self, info: dict[str, Any] | None = None) -> None:
        framework = {"user": "root", "name": "raw", "failover_timeout": 60.0}
        framework.update(info or {})
        call: dict[str, Any] = {"type": "SUBSCRIBE", "subscribe": {"framework_info": framework}}
        if "id" in framework:
            call["framework_id"] = framework["id"]
        body = json.dumps(call).encode()
        sock = socket.create_connection((self.host, self.port), timeout=10)
        sock.sendall(b"POST /api/v1/scheduler HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nAccept: application/json\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self._sock = sock
        self.t0 = time.monotonic()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        sub = self.wait_event("SUBSCRIBED")
        self.framework_id = sub["subscribed"]["framework_id"]["value"]

    def _read(self) -> None:
        assert self._sock is not None
        f = self._sock.makefile("rb")
        status_line = f.readline()
        self.status = int(status_line.split()[1])
        while True:
            line = f.readline().decode().strip()
            if not line:
                break
            k, _, v = line.partition(":")
            self.headers[k.strip()] = v.strip()
        self.stream_id = self.headers.get("Mesos-Stream-Id")
        dec = recordio.Decoder()
        try:
            while True:
                size = int(f.readline().strip() or b"0", 16)
                if size == 0:
                    break
                chunk = f.read(size)
                f.readline()
                for ev in dec.feed(chunk):
                    with self.cond:
                        length = len(json.dumps(ev, separators=(",", ":")))
                        self.events.append((ev, length, time.monotonic() - self.t0))
                        self.cond.notify_all()
        except (OSError, ValueError):
            pass
        with self.cond:
            self.events.append(({"type": "__closed__"}, 0, time.monotonic() - self.t0))
            self.cond.notify_all()

    def wait_event(self, kind: str, pred: Callable[[dict[str, Any]], bool] = lambda e: True,
                   timeout: float = 10.0, start: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for ev, _, _ in self.events[start:]:
                    if ev.get("type") == kind and pred(ev):
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {kind} event within {timeout}s: "
                                         f"{[e.get('type') for e, _, _ in self.events]}")
                self.cond.wait(min(left, 0.2))

    def sched_call(self, kind: str, payload: dict[str, Any] | None = None,
                   **headers: str) -> tuple[int, dict[str, str], bytes]:
        body: dict[str, Any] = {"type": kind, "framework_id": {"value": self.framework_id}}
        if payload is not None:
            body[kind.lower()] = payload
        return self.call(body, headers or None)

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
            self._sock = None


def reconcile(driver: MesosSchedulerDriver, items: list[dict[str, Any]]) -> None:
    """RECONCILE with `agent_id`s kept (pymesos's `reconcileTasks` sends only task ids)."""
    driver._send({"type": "RECONCILE", "framework_id": {"value": driver.framework_id},
                  "reconcile": {"tasks": items}})
