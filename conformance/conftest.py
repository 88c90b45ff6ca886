"""Fixtures of the conformance lane, and its side-by-side table.

Every scenario takes `accessd` (accessd's scheduler and API on a cluster), which takes `cluster`,
a session fixture parametrised `mesos` / `localmesos`: pytest runs the whole scenario list on one
cluster, tears it down, then runs it on the other. The real Mesos needs `$ACCESSD_REAL_MESOS`
(set by `tools/conformance.sh`); without it its half is skipped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.accessd_run import Accessd
from conformance.clusters import Cluster, LocalMesosCluster, RealMesos
from conformance.known_differences import known
from conformance.proctable import kill_all
from localmesos.portblocks import PortBlocks
from tests.fixtures_zk import start_zookeeper

CLUSTERS = ("mesos", "localmesos")
LOG_DIR = Path(__file__).resolve().parent.parent / ".cache" / "conformance-logs"
LABELS = {"mesos": "real Mesos 1.12", "localmesos": "localmesos"}


def scenario_name(item: pytest.Item) -> str:
    params = {k: v for k, v in getattr(item, "callspec", None).params.items()
              if k != "cluster"} if hasattr(item, "callspec") else {}
    name = getattr(item, "originalname", item.name)
    return f"{name}[{'-'.join(str(v) for v in params.values())}]" if params else name


def cluster_of(item: pytest.Item) -> str:
    return item.callspec.params.get("cluster", "?") if hasattr(item, "callspec") else "?"


# -- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def zookeeper(tmp_path_factory):
    zk = start_zookeeper(tmp_path_factory.mktemp("zk"))
    yield zk
    zk.stop()


@pytest.fixture(scope="session")
def port_blocks() -> Iterator[PortBlocks]:
    blocks = PortBlocks()
    yield blocks
    blocks.release()


@pytest.fixture(scope="session", params=CLUSTERS)
def cluster(request, zookeeper, port_blocks, tmp_path_factory) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp(f"cluster-{request.param}")
    if request.param == "mesos":
        home = os.environ.get("ACCESSD_REAL_MESOS")
        if not home:
            pytest.skip("no real Mesos ($ACCESSD_REAL_MESOS unset: run `make conformance`)")
        started = time.monotonic()
        made: Cluster = RealMesos(Path(home), work, zookeeper.url("/mesos-real"), port_blocks)
    else:
        started = time.monotonic()
        made = LocalMesosCluster(work, zookeeper.url("/mesos-local"))
    print(f"\n{made.label}: master and agent up in {time.monotonic() - started:.1f}s")
    try:
        yield made
    finally:
        made.stop()
        left = kill_all(str(work))
        if left:
            print(f"\n{made.label}: killed {len(left)} processes left after its stop: "
                  + "; ".join(f"{pid} {cmd[:80]}" for pid, cmd in left.items()))


@pytest.fixture(scope="session")
def accessd(cluster, tmp_path_factory) -> Iterator[Accessd]:
    run = Accessd(cluster, tmp_path_factory.mktemp(f"accessd-{cluster.name}"))
    try:
        yield run
    finally:
        run.stop()
        cluster.teardown_framework(run.framework_id)


@pytest.fixture(autouse=True)
def scheduler_running(request) -> Iterator[None]:
    """Each scenario starts with a running scheduler: one that died in an earlier scenario (its
    failure is reported there) is started again, and the table notes it, so failures do not
    cascade."""
    if "accessd" in request.fixturenames:
        run: Accessd = request.getfixturevalue("accessd")
        if run.sched is None or run.sched.popen.poll() is not None:
            code = None if run.sched is None else run.sched.popen.returncode
            run.start_scheduler()
            request.node.user_properties.append(
                ("note", f"the scheduler had exited (code {code}) in an earlier scenario; "
                         "started again first"))
    yield


# -- known differences and the table ----------------------------------------------------------------

def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        reason = known(scenario_name(item), cluster_of(item))
        if reason:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=False))


_results: dict[tuple[str, str], tuple[str, float, str]] = {}
_notes: list[str] = []  # what scenarios measured (record_property("note", ...))
_order: list[str] = []
_lane_started = time.monotonic()


def crash_message(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash else str(report.longrepr)
    return (text.splitlines() or [""])[0][:300]


SETUP_ROW = "(start/stop: ZooKeeper, cluster, accessd)"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    key = getattr(report, "_conformance_key", None)
    if key is None:
        return
    scenario, cluster = key
    if report.when != "call" and report.passed:
        # fixture set-up and tear-down (the cluster's start and stop) go to their own row
        outcome, duration, why = _results.get((SETUP_ROW, cluster), ("passed", 0.0, ""))
        _results[(SETUP_ROW, cluster)] = (outcome, duration + report.duration, why)
        return
    if scenario not in _order:
        _order.append(scenario)
    for name, value in report.user_properties:
        if name == "note":
            _notes.append(f"  {scenario} on {LABELS.get(cluster, cluster)}: {value}")
    if hasattr(report, "wasxfail"):
        outcome = "XPASS" if report.passed else "xfail"
        why = report.wasxfail
        if not report.passed:  # what failed this time, beside the listed reason
            why += f" | this run: {crash_message(report)}"
    elif report.skipped:
        outcome, why = "skipped", str(report.longrepr[-1]) if report.longrepr else ""
    elif report.failed:
        outcome = "FAILED" if report.when == "call" else f"ERROR({report.when})"
        why = crash_message(report)
    else:
        outcome, why = "passed", ""
    _results[key] = (outcome, report.duration, why)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    report._conformance_key = (scenario_name(item), cluster_of(item))
    run = item.funcargs.get("accessd")
    if call.when == "call" and call.excinfo is not None and run is not None:
        # What the processes said, for a failure on a cluster one cannot step into afterwards:
        # shown with a failure, and kept for listed (xfail) ones in .cache/conformance-logs/.
        sched_log = "\n".join(run.scheduler_logs().splitlines()[-120:])
        report.sections.append(("scheduler log (last 120 lines)", sched_log))
        report.sections.append((f"{run.cluster.label} log", run.cluster.log()))
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        name = f"{scenario_name(item)}-{cluster_of(item)}.log".replace("/", "_")
        (LOG_DIR / name).write_text(f"{call.excinfo.exconly()}\n\n--- scheduler\n{sched_log}\n"
                                    f"\n--- {run.cluster.label}\n{run.cluster.log()}\n"
                                    f"{executor_logs(run.cluster.work)}")


EXECUTOR_LOG_LINES = 60
EXECUTOR_LOGS_KEPT = 12


def executor_logs(work: Path) -> str:
    """The end of each executor's sandbox stderr under the cluster's work dir, newest first
    (accessd's executor logs its reconnects there: what the agent's log cannot say, such as why
    an executor did not re-subscribe in time after an agent restart)."""
    files = sorted({p.resolve() for p in work.glob("**/executors/*/runs/*/stderr")},
                   key=_mtime, reverse=True)  # (a real agent's runs/latest links a run)
    parts = []
    for path in files[:EXECUTOR_LOGS_KEPT]:
        try:
            lines = path.read_text(errors="replace").splitlines()[-EXECUTOR_LOG_LINES:]
        except OSError:
            continue
        where = path.relative_to(work.resolve())
        parts.append(f"\n--- executor stderr {where}\n" + "\n".join(lines))
    return "".join(parts)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def format_table() -> str:
    width = max([len(s) for s in _order] + [len(SETUP_ROW)])
    head = f"{'scenario':<{width}}  " + "  ".join(f"{LABELS[c]:<22}" for c in CLUSTERS)
    lines = [head, "-" * len(head)]
    totals = dict.fromkeys(CLUSTERS, 0.0)
    notes: list[str] = []
    for scenario in [*_order, SETUP_ROW]:
        cells = []
        for c in CLUSTERS:
            if (scenario, c) not in _results:
                cells.append(f"{'-':<22}")
                continue
            outcome, duration, why = _results[(scenario, c)]
            totals[c] += duration
            cells.append(f"{duration:6.1f}s {outcome:<14}")
            if outcome != "passed":
                notes.append(f"  {scenario} on {LABELS[c]}: {outcome}: {why}")
        lines.append(f"{scenario:<{width}}  " + "  ".join(cells))
    lines.append("-" * len(head))
    lines.append(f"{'total':<{width}}  "
                 + "  ".join(f"{totals[c]:6.1f}s {'':<14}" for c in CLUSTERS))
    if notes:
        lines += ["", "differences and failures, by name:", *notes]
    if _notes:
        lines += ["", "measured:", *_notes]
    lines.append(f"\nlane (pytest) wall time: {time.monotonic() - _lane_started:.1f}s")
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter) -> None:
    if not _results:
        return
    table = format_table()
    terminalreporter.section("conformance: real Mesos 1.12 and localmesos side by side")
    terminalreporter.write_line(table)
    out = os.environ.get("ACCESSD_CONFORMANCE_TABLE")
    if out:
        Path(out).write_text(table + "\n")
