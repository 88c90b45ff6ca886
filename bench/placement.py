"""Placement benchmark: 10,000 tasks of 100 apps on a simulated 1,000-agent cluster.

Run: `.venv/bin/python bench/placement.py` (`make bench`). Seeded and deterministic in everything
but the timings.

The cluster: 1,000 agents (8 cpus, 32 GiB mem, 1,000 ports each) in 20 racks of 50 agents, the
racks in 4 zones. The demand: 100 apps of mixed sizes and constraints (none, UNIQUE hostname,
GROUP_BY rack, MAX_PER rack, CLUSTER rack, LIKE zone), 10,000 tasks in all, sized so that the
demand slightly exceeds the cluster's cpus: the scheduler must eventually leave tasks unplaced.

The simulation runs offer rounds the way the scheduler does: apps arrive ten per round; each round
offers the current free resources of every agent with something left, asks `place()` for all
waiting demand (older demand first), and applies its launches. It stops when all apps have
arrived and a round places nothing more.

Reported:
- placements per second: tasks placed / CPU seconds spent in `place()` (offer parsing
  included); the wall-clock figure and the load average are printed beside it;
- decisions per offer: the (task, offer) verdicts `place()` made, per offer it was given;
- utilisation at the first unplaceable task: the fraction of the cluster's cpus and mem in use at
  the end of the first round that left a task unplaced; the binding one (the higher) is reported;
- the first-fit-decreasing bound: the same 10,000 tasks, without constraints or ports, sorted
  (by dominant share, sum of shares, cpus, mem: the best of the four) and put first-fit on the
  same agents; its binding utilisation once every task that fits somewhere is placed. With two
  resources FFD is a good packing, not a proof of optimality: an online scheduler that spreads
  can end above it (the final utilisation is printed too).

The last line is `RESULT placements_per_s=<n> utilisation=<x> ffd_bound=<y>`.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scheduler.placement import LaunchRequest, place  # noqa: E402
from scheduler.resources import normalize_ranges, remove_port, sum_resources  # noqa: E402
from scheduler.spec import parse_app  # noqa: E402

AGENT_CPUS = 8.0
AGENT_MEM = 32 * 1024.0
AGENT_DISK = 100_000.0
AGENT_PORTS = (31000, 31999)  # 1,000 ports
RACKS = 20
ZONES = 4
KIND_MIX = ["none"] * 40 + ["unique"] * 12 + ["group_by"] * 16 + ["max_per"] * 12 + \
    ["cluster"] * 8 + ["like"] * 12


@dataclass
class Agent:
    id: str
    hostname: str
    rack: str
    zone: str
    cpus: float
    mem: float
    disk: float
    ports: tuple[tuple[int, int], ...]

    def offer(self, n: int) -> dict:
        return {
            "id": {"value": f"{self.id}-O{n}"}, "agent_id": {"value": self.id},
            "hostname": self.hostname, "allocation_info": {"role": "*"},
            "attributes": [{"name": "rack", "type": "TEXT", "text": {"value": self.rack}},
                           {"name": "zone", "type": "TEXT", "text": {"value": self.zone}}],
            "resources": [
                _scalar("cpus", self.cpus), _scalar("mem", self.mem), _scalar("disk", self.disk),
                {"name": "ports", "type": "RANGES", "role": "*", "allocation_info": {"role": "*"},
                 "ranges": {"range": [{"begin": b, "end": e} for b, e in self.ports]}},
            ],
        }


def _scalar(name: str, value: float) -> dict:
    return {"name": name, "type": "SCALAR", "scalar": {"value": round(value, 3)}, "role": "*",
            "allocation_info": {"role": "*"}}


def make_cluster(n: int) -> list[Agent]:
    per_rack = max(1, n // RACKS)
    agents = []
    for i in range(n):
        rack = min(i // per_rack, RACKS - 1)
        agents.append(Agent(f"S{i:04d}", f"agent{i:04d}.sim", f"r{rack:02d}",
                            f"z{rack * ZONES // RACKS}", AGENT_CPUS, AGENT_MEM, AGENT_DISK,
                            (AGENT_PORTS,)))
    return agents


def make_apps(rng: random.Random, n_apps: int, n_tasks: int, n_agents: int,
              cpu_load: float, mem_load: float) -> list[dict]:
    """Marathon app JSONs whose instances sum to `n_tasks`, demanding about `cpu_load` of the
    cluster's cpus and `mem_load` of its mem."""
    kinds = [KIND_MIX[i % len(KIND_MIX)] for i in range(n_apps)]
    rng.shuffle(kinds)
    weights = [rng.lognormvariate(0, 1.0) for _ in range(n_apps)]
    caps = {"unique": n_agents // 2, "cluster": 20}  # keep constraint-bound apps satisfiable
    counts = [0] * n_apps
    left, free = n_tasks, list(range(n_apps))
    while free:  # share the tasks out by weight, honouring caps
        total_w = sum(weights[i] for i in free)
        capped = [i for i in free if kinds[i] in caps and
                  round(left * weights[i] / total_w) > caps[kinds[i]]]
        if not capped:
            shares = [max(1, round(left * weights[i] / total_w)) for i in free]
            shares[-1] += left - sum(shares)
            for i, s in zip(free, shares, strict=True):
                counts[i] = s
            break
        for i in capped:
            counts[i] = caps[kinds[i]]
            left -= counts[i]
            free.remove(i)
    cpus = [rng.choice([0.25, 0.5, 0.5, 1.0, 1.0, 1.5, 2.0, 3.0]) for _ in range(n_apps)]
    mem_per_cpu = [rng.choice([0.5, 0.75, 1.0, 1.25, 1.5]) for _ in range(n_apps)]
    for i in range(n_apps):
        if kinds[i] == "cluster":
            cpus[i] = min(cpus[i], 1.0)
    # scale sizes so total demand hits the requested load
    cap_cpu, cap_mem = n_agents * AGENT_CPUS, n_agents * AGENT_MEM
    f_cpu = cpu_load * cap_cpu / sum(c * n for c, n in zip(cpus, counts, strict=True))
    mems = [c * 4096 * m for c, m in zip(cpus, mem_per_cpu, strict=True)]
    f_mem = mem_load * cap_mem / sum(m * n for m, n in zip(mems, counts, strict=True))
    apps = []
    for i in range(n_apps):
        c = max(0.05, round(cpus[i] * f_cpu / 0.05) * 0.05)
        m = max(32.0, round(mems[i] * f_mem / 32) * 32.0)
        constraints: list[list[str]] = []
        if kinds[i] == "unique":
            constraints = [["hostname", "UNIQUE"]]
        elif kinds[i] == "group_by":
            constraints = [["rack", "GROUP_BY", str(RACKS)]]
        elif kinds[i] == "max_per":
            constraints = [["rack", "MAX_PER", str(math.ceil(counts[i] / RACKS * 1.5) + 1)]]
        elif kinds[i] == "cluster":
            constraints = [["rack", "CLUSTER"]]
        elif kinds[i] == "like":
            constraints = [["zone", "LIKE", "z[01]"]]
        apps.append({"id": f"/bench/app{i:03d}", "cmd": "sleep 3600", "cpus": round(c, 2),
                     "mem": m, "instances": counts[i],
                     "portDefinitions": [{"port": 0}] * rng.choice([0, 1, 1, 2]),
                     "constraints": constraints})
    return apps


FFD_ORDERS = {
    # two resources have no single "size": try the usual orderings and keep the best packing
    "dominant share": lambda x: (-max(x[0] / AGENT_CPUS, x[1] / AGENT_MEM), -x[0], -x[1]),
    "sum of shares": lambda x: (-(x[0] / AGENT_CPUS + x[1] / AGENT_MEM), -x[0], -x[1]),
    "cpus": lambda x: (-x[0], -x[1]),
    "mem": lambda x: (-x[1], -x[0]),
}


def ffd(apps: list[dict], n_agents: int) -> dict:
    """First-fit decreasing over the same demand, no constraints, no ports (numpy first-fit).
    Runs each ordering of FFD_ORDERS and returns the one that ends with the highest binding
    utilisation."""
    import numpy as np

    items = [(a["cpus"], a["mem"]) for a in apps for _ in range(a["instances"])]
    best = None
    eps = 0.0005
    for name, order in FFD_ORDERS.items():
        free_c = np.full(n_agents, AGENT_CPUS)
        free_m = np.full(n_agents, AGENT_MEM)
        placed = 0
        for c, m in sorted(items, key=order):
            fit = np.flatnonzero((free_c >= c - eps) & (free_m >= m - eps))
            if fit.size == 0:
                continue
            j = fit[0]
            free_c[j] -= c
            free_m[j] -= m
            placed += 1
        got = {"order": name, "placed": placed, "items": len(items),
               "final": _util(free_c.sum(), free_m.sum(), n_agents)}
        if best is None or got["final"]["value"] > best["final"]["value"]:
            best = got
    return best


def _util(free_cpus: float, free_mem: float, n_agents: int) -> dict:
    cpu = 1 - free_cpus / (n_agents * AGENT_CPUS)
    mem = 1 - free_mem / (n_agents * AGENT_MEM)
    return {"cpus": cpu, "mem": mem, "binding": "cpus" if cpu >= mem else "mem",
            "value": max(cpu, mem)}


def simulate(apps: list[dict], agents: list[Agent], *, apps_per_round: int, strategy: str,
             quiet: bool = False) -> dict:
    specs = [parse_app(a) for a in apps]
    by_id = {a.id: a for a in agents}
    attrs = {a.id: {"rack": a.rack, "zone": a.zone} for a in agents}
    running: list[dict] = []
    waiting: dict[str, int] = {}
    spec_of = {s.id: s for s in specs}
    place_s = place_cpu_s = 0.0
    placed = offers_total = evaluations = used_offers = 0
    first_unplaced = None
    rnd = 0
    arrived = 0
    while True:
        rnd += 1
        for s in specs[arrived:arrived + apps_per_round]:
            waiting[s.id] = s.instances
        arrived = min(len(specs), arrived + apps_per_round)
        offers = [a.offer(rnd) for a in agents if a.cpus > 0.0005 and a.mem > 0.0005]
        requests = [LaunchRequest(spec_of[app_id], n) for app_id, n in waiting.items() if n]
        t0, c0 = time.perf_counter(), time.process_time()
        result = place(offers, requests, running, strategy=strategy)
        dt = time.perf_counter() - t0
        place_s += dt
        place_cpu_s += time.process_time() - c0
        offers_total += len(offers)
        evaluations += result.evaluations
        used_offers += len({x.offer_id for x in result.launches})
        for x in result.launches:
            agent = by_id[x.agent_id]
            scal, ports = sum_resources(x.resources)
            agent.cpus = round(agent.cpus - scal.get("cpus", 0.0), 3)
            agent.mem = round(agent.mem - scal.get("mem", 0.0), 3)
            agent.disk = round(agent.disk - scal.get("disk", 0.0), 3)
            for p in ports:
                agent.ports = remove_port(agent.ports, p)
            agent.ports = normalize_ranges(agent.ports)
            running.append({"appId": x.app_id, "host": x.hostname, "agentId": x.agent_id,
                            "attributes": attrs[x.agent_id], "resources": scal})
            waiting[x.app_id] -= 1
        placed += len(result.launches)
        util = _util(sum(a.cpus for a in agents), sum(a.mem for a in agents), len(agents))
        if result.unplaced and first_unplaced is None:
            reasons = Counter()
            for u in result.unplaced.values():
                reasons[u.reason] += u.count
            first_unplaced = dict(util, round=rnd, placed=placed, reasons=dict(reasons))
        if not quiet:
            print(f"round {rnd:2d}: offers={len(offers):4d} launches={len(result.launches):5d} "
                  f"unplaced={sum(u.count for u in result.unplaced.values()):5d} "
                  f"place()={dt * 1000:7.1f} ms  cpus={util['cpus']:.3f} mem={util['mem']:.3f}",
                  flush=True)
        if arrived >= len(specs) and not result.launches:
            break
    final = _util(sum(a.cpus for a in agents), sum(a.mem for a in agents), len(agents))
    unplaced_reasons = Counter()
    for app_id, n in waiting.items():
        if n:
            unplaced_reasons[app_id] = n
    return {"placed": placed, "place_s": place_s, "place_cpu_s": place_cpu_s, "rounds": rnd,
            "offers": offers_total,
            "evaluations": evaluations, "used_offers": used_offers,
            "first_unplaced": first_unplaced, "final": final,
            "left": sum(waiting.values())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--apps", type=int, default=100)
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--apps-per-round", type=int, default=10)
    ap.add_argument("--cpu-load", type=float, default=1.03,
                    help="total cpu demand as a fraction of the cluster's cpus")
    ap.add_argument("--mem-load", type=float, default=0.95)
    ap.add_argument("--strategy", choices=["spread", "pack"], default="spread")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--no-compare", action="store_true",
                    help="skip the second run with the other strategy")
    args = ap.parse_args(argv)

    rng = random.Random(args.seed)
    apps = make_apps(rng, args.apps, args.tasks, args.agents, args.cpu_load, args.mem_load)
    kinds = Counter((a["constraints"][0][1] if a["constraints"] else "none") for a in apps)
    demand_c = sum(a["cpus"] * a["instances"] for a in apps) / (args.agents * AGENT_CPUS)
    demand_m = sum(a["mem"] * a["instances"] for a in apps) / (args.agents * AGENT_MEM)
    print(f"cluster: {args.agents} agents x {AGENT_CPUS:g} cpus, {AGENT_MEM / 1024:g} GiB, "
          f"1000 ports; {RACKS} racks, {ZONES} zones")
    print(f"demand: {args.apps} apps, {sum(a['instances'] for a in apps)} tasks, "
          f"{demand_c:.3f} of cpus, {demand_m:.3f} of mem; constraints {dict(sorted(kinds.items()))}")
    print(f"strategy: {args.strategy}, {args.apps_per_round} apps arrive per round, seed {args.seed}")

    t0 = time.perf_counter()
    bound = ffd(apps, args.agents)
    print(f"ffd ({bound['order']} order, best of {len(FFD_ORDERS)}): placed "
          f"{bound['placed']}/{bound['items']} in {time.perf_counter() - t0:.2f} s, "
          f"final cpus={bound['final']['cpus']:.3f} mem={bound['final']['mem']:.3f} "
          f"(binding {bound['final']['binding']} {bound['final']['value']:.3f})", flush=True)

    t0 = time.perf_counter()
    sim = simulate(apps, make_cluster(args.agents), apps_per_round=args.apps_per_round,
                   strategy=args.strategy, quiet=args.quiet)
    wall = time.perf_counter() - t0
    # CPU seconds of this (single-threaded) process: on a shared machine wall time mostly
    # measures the neighbours; both are printed, RESULT carries the CPU-time figure.
    pps = sim["placed"] / sim["place_cpu_s"] if sim["place_cpu_s"] else 0.0
    pps_wall = sim["placed"] / sim["place_s"] if sim["place_s"] else 0.0
    fu = sim["first_unplaced"]
    print(f"placed {sim['placed']} tasks ({sim['left']} left waiting) in {sim['rounds']} rounds; "
          f"place() {sim['place_s']:.2f} s wall, {sim['place_cpu_s']:.2f} s cpu, "
          f"of {wall:.2f} s simulated")
    print(f"placements/s: {pps:.0f} per cpu-second ({pps_wall:.0f} per wall second, "
          f"{os.getloadavg()[0]:.1f} load average); "
          f"decisions per offer: {sim['evaluations'] / sim['offers']:.1f}; "
          f"tasks per used offer: {sim['placed'] / max(1, sim['used_offers']):.2f}")
    if fu is None:
        util, binding = sim["final"]["value"], sim["final"]["binding"]
        print("no task was ever unplaceable; utilisation at the end: "
              f"cpus={sim['final']['cpus']:.3f} mem={sim['final']['mem']:.3f}")
    else:
        util, binding = fu["value"], fu["binding"]
        print(f"first unplaceable task in round {fu['round']} after {fu['placed']} placements "
              f"({fu['reasons']}): cpus={fu['cpus']:.3f} mem={fu['mem']:.3f} "
              f"(binding {binding})")
    print(f"final utilisation: cpus={sim['final']['cpus']:.3f} mem={sim['final']['mem']:.3f}; "
          f"ffd bound {bound['final']['binding']} {bound['final']['value']:.3f}")
    if not args.no_compare:
        other = "pack" if args.strategy == "spread" else "spread"
        alt = simulate(apps, make_cluster(args.agents), apps_per_round=args.apps_per_round,
                       strategy=other, quiet=True)
        afu = alt["first_unplaced"] or alt["final"]
        print(f"for comparison, strategy {other}: first unplaceable at {afu['binding']} "
              f"{afu['value']:.3f}, final cpus={alt['final']['cpus']:.3f} "
              f"mem={alt['final']['mem']:.3f}, "
              f"{alt['placed'] / max(alt['place_cpu_s'], 1e-9):.0f} placements per cpu-second")
    print(f"RESULT placements_per_s={pps:.0f} utilisation={util:.3f} "
          f"ffd_bound={bound['final']['value']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
