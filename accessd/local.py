"""`accessd local` (what `make run` calls): the whole access layer on one machine.

Starts, in order, each as its own process group with its log under `<data-dir>/logs/`:
localmesos (3 agents over 2 racks) → the scheduler → the control API (gunicorn); makes sample JPM
quotes and trains the model when absent; deploys `examples/apps/*.json` through the API; shows
progress until every instance is running and healthy; prints a short summary whose first line is
`ready api=http://127.0.0.1:<port>`. Ctrl-C or SIGTERM stops everything in reverse order within a
few seconds and leaves no process behind. All state lives in `--data-dir`, so a second run reuses
the data, the model and the app definitions.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

log = logging.getLogger("accessd.local")

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "apps"
SYMBOL = "JPM"


class StepFailed(Exception):
    """A start-up step failed; the message says which and why."""


@dataclass
class Component:
    """A child process in its own process group, its output written to a log file."""

    name: str
    args: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen | None = None
    _lines: list[str] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        # The example apps run `gunicorn` from PATH: make it this virtualenv's, whatever the
        # caller's PATH (`make run` calls .venv/bin/accessd without activating the venv).
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        self.popen = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            start_new_session=True, cwd=REPO,
        )
        threading.Thread(target=self._pump, name=f"log-{self.name}", daemon=True).start()

    def _pump(self) -> None:
        assert self.popen is not None and self.popen.stdout is not None
        with open(self.log_path, "a", encoding="utf-8") as out:
            for line in self.popen.stdout:
                out.write(line)
                out.flush()
                with self._cond:
                    self._lines.append(line.rstrip("\n"))
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_for_line(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self._lines[seen:]:
                    if line.startswith(prefix):
                        return line
                seen = len(self._lines)
                if not self.alive():
                    raise StepFailed(f"{self.name} exited with status {self.popen.returncode} "
                                     f"before it was ready; see {self.log_path}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StepFailed(f"{self.name} was not ready within {timeout:.0f}s; "
                                     f"see {self.log_path}")
                self._cond.wait(min(left, 0.5))

    def stop(self, grace: float) -> None:
        """SIGTERM the group, SIGKILL what is left after `grace` seconds."""
        if self.popen is None:
            return
        pgid = self.popen.pid
        _killpg(pgid, signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0fs; killing it", self.name, grace)
        _killpg(pgid, signal.SIGKILL)  # children it may have left in its group
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def check_port_free(port: int, what: str) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise StepFailed(f"port {port} ({what}) is taken: {exc.strerror}") from None


def accessd_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "accessd.cli", *args]


def run_step(title: str, args: list[str], log_path: Path, timeout: float) -> None:
    """Run a one-off command (data, model) to completion, its output in `log_path`."""
    progress(f"{title} ...")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as out:
        try:
            done = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                                  cwd=REPO, start_new_session=True)
        except subprocess.TimeoutExpired:
            raise StepFailed(f"{title} took longer than {timeout:.0f}s; see {log_path}") from None
    if done.returncode != 0:
        raise StepFailed(f"{title} failed with status {done.returncode}; see {log_path}")


def progress(message: str) -> None:
    print(f"[accessd local] {message}", file=sys.stderr, flush=True)


def app_definitions(store_url: str, models_dir: Path) -> list[dict[str, Any]]:
    """The example apps, with the store and model locations of this data directory filled in."""
    apps = []
    for path in sorted(EXAMPLES.glob("*.json")):
        app = json.loads(path.read_text())
        env = dict(app.get("env") or {})
        env["ACCESSD_STORE"] = store_url
        env["ACCESSD_MODELS_DIR"] = str(models_dir)
        app["env"] = env
        apps.append(app)
    return apps


class LocalRun:
    """One `accessd local` run: components started in order, stopped in reverse."""

    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.data_dir = Path(opts.data_dir).resolve()
        self.logs = self.data_dir / "logs"
        self.store_url = f"sqlite:///{self.data_dir / 'quotes.db'}"
        self.models_dir = self.data_dir / "models"
        self.api_url = f"http://127.0.0.1:{opts.api_port}"
        self.components: list[Component] = []
        self.http = requests.Session()

    # -- start-up ------------------------------------------------------------------------------
    def start(self) -> None:
        opts = self.opts
        self.data_dir.mkdir(parents=True, exist_ok=True)
        check_port_free(opts.master_port, "--master-port, the local Mesos master")
        check_port_free(opts.api_port, "--api-port, the control API")

        mesos = self._spawn("localmesos", accessd_cmd(
            "localmesos", "--port", str(opts.master_port), "--agents", str(opts.agents),
            "--work-dir", str(self.data_dir / "mesos")))
        progress(f"starting localmesos with {opts.agents} agents on 127.0.0.1:{opts.master_port}")
        mesos.wait_for_line("ready master=", timeout=60)
        master = f"127.0.0.1:{opts.master_port}"

        state = str(self.data_dir / "state.db")
        if opts.ha:  # three ZooKeeper servers, two schedulers, the API on the zk:// store
            from accessd.local_ha import start_ensemble

            state = start_ensemble(self)
        for n in range(2 if opts.ha else 1):
            name = f"scheduler-{n + 1}" if opts.ha else "scheduler"
            progress(f"starting {name.replace('-', ' ')}")
            self._spawn(name, accessd_cmd("scheduler", "--master", master, "--state", state,
                                          *(["--advertise", name] if opts.ha else [])))

        progress(f"starting the control API on {self.api_url}")
        from accessd.local_lb import service_port_min  # the balancer's ports (accessd.local_lb)

        self._spawn("api", accessd_cmd(
            "api", "--bind", f"127.0.0.1:{opts.api_port}", "--workers", "2",
            "--state", state, "--master", master,
            "--local-port-min", str(service_port_min())))
        self._wait(lambda: self._get("/ping").status_code == 200, 60, "the control API")
        from accessd.local_lb import stable_urls, start_balancer, wait_routed

        self.lb = start_balancer(self)  # one stable address per service (accessd.local_lb)

        self.prepare_data()
        self.deploy()
        self.wait_healthy(opts.timeout)
        self.stable = stable_urls(self.apps, self.lb)
        wait_routed(self.stable, 60)
        if opts.jobs_every > 0:  # the pipeline loop: ingest -> retrain -> new model versions
            from accessd.local_jobs import add_pipeline_jobs

            try:
                for line in add_pipeline_jobs(self.http, self.api_url, self.store_url,
                                              self.models_dir, opts.jobs_every):
                    progress(line)
            except RuntimeError as exc:
                raise StepFailed(str(exc)) from None

    def _spawn(self, name: str, args: list[str]) -> Component:
        comp = Component(name, args, self.logs / f"{name}.log")
        self.components.append(comp)
        comp.start()
        return comp

    def prepare_data(self) -> None:
        marker = self.data_dir / f"{SYMBOL}.synth-done"
        if not marker.exists():
            run_step(f"creating sample {SYMBOL} quotes", accessd_cmd(
                "data", "synth", "--symbol", SYMBOL, "--store", self.store_url,
                "--days", str(self.opts.days), "--seed", "1"), self.logs / "data.log", 600)
            marker.touch()
        else:
            progress(f"reusing the {SYMBOL} quotes in {self.data_dir}")
        if not (self.models_dir / SYMBOL / "current").exists():
            run_step(f"training the {SYMBOL} model", accessd_cmd(
                "model", "train", "--symbol", SYMBOL, "--store", self.store_url,
                "--models-dir", str(self.models_dir)), self.logs / "model.log", 600)
        else:
            progress(f"reusing the {SYMBOL} model in {self.models_dir}")

    def deploy(self) -> None:
        apps = app_definitions(self.store_url, self.models_dir)
        if self.opts.containers:  # the same services in the Python image (local_containers)
            from accessd import local_containers

            try:
                tag = local_containers.prepare(progress)
            except RuntimeError as exc:
                raise StepFailed(str(exc)) from None
            apps = local_containers.app_definitions(self.store_url, self.models_dir,
                                                    self.data_dir, tag)
        for app in apps:
            app_id = app["id"]
            # The filled-in definition, for `accessd deploy .accessd/apps/NAME.json` (README).
            saved = self.data_dir / "apps" / f"{app_id.rsplit('/', 1)[-1]}.json"
            saved.parent.mkdir(exist_ok=True)
            saved.write_text(json.dumps(app, indent=2) + "\n", encoding="utf-8")
            existing = self._get(f"/v2/apps{app_id}")
            if existing.status_code == 200:
                progress(f"{app_id} is already defined; keeping it")
                continue
            resp = self.http.post(f"{self.api_url}/v2/apps", json=app, timeout=10)
            if resp.status_code not in (200, 201):
                raise StepFailed(f"deploying {app_id} failed: HTTP {resp.status_code} {resp.text}")
            progress(f"deployed {app_id}")

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            self._check_components()
            apps = self._get("/v2/apps?embed=apps.tasks").json().get("apps", [])
            wanted = sum(a["instances"] for a in apps)
            healthy = sum(_healthy_count(a) for a in apps)
            line = f"{healthy} of {wanted} instances running and healthy " + _bar(healthy, wanted)
            if line != last:
                progress(line)
                last = line
            if apps and healthy >= wanted:
                self.apps = apps
                return
            if time.monotonic() > deadline:
                waiting = [f"{a['id']} ({_healthy_count(a)} of {a['instances']})" for a in apps
                           if _healthy_count(a) < a["instances"]]
                raise StepFailed(f"not all instances were healthy within {timeout:.0f}s: "
                                 + ", ".join(waiting) + f"; logs in {self.logs}")
            time.sleep(0.5)  # polling interval of the progress display, not a synchronisation

    def _check_components(self) -> None:
        for comp in self.components:
            if not comp.alive():
                raise StepFailed(f"{comp.name} exited with status {comp.popen.returncode}; "
                                 f"see {comp.log_path}")

    def _get(self, path: str) -> requests.Response:
        return self.http.get(f"{self.api_url}{path}", timeout=10)

    def _wait(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_components()
            try:
                if predicate():
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise StepFailed(f"{what} did not come up within {timeout:.0f}s")
            time.sleep(0.2)

    # -- summary and shutdown ------------------------------------------------------------------
    def summary(self) -> str:
        lines = [f"ready api={self.api_url}", f"status page: {self.api_url}/",
                 f"pipeline at a glance: {self.api_url}/#/pipeline"]
        endpoints: dict[str, str] = {}
        for app in self.apps:
            addrs = []
            for task in app.get("tasks", []):
                ip = (task.get("ipAddresses") or [{}])[0].get("ipAddress") or task.get("host")
                addrs.extend(f"{ip}:{port}" for port in task.get("ports", [])[:1])
            stable = getattr(self, "stable", {}).get(app["id"])
            tasks = ", ".join(sorted(addrs)) or "-"
            lines.append(f"  {app['id']}: {stable}/ (tasks: {tasks})" if stable
                         else f"  {app['id']}: {tasks}")
            if stable or addrs:
                endpoints[app["id"].rsplit("/", 1)[-1]] = (stable.removeprefix("http://")
                                                           if stable else sorted(addrs)[0])
        ts = endpoints.get("timeseries", "HOST:PORT")
        pred = endpoints.get("prediction", "HOST:PORT")
        # Each line after "try" must work as printed in a fresh shell (tests/test_docs_commands.py
        # runs them). `accessd` lives in the virtualenv: activating it is what users of Python
        # tools expect, and the other lines then read as they would on an installed system.
        if getattr(self, "lb", None):
            lines.append(f"load balancer: stats {self.lb.stats}, metrics {self.lb.metrics}")
        activate = Path(sys.prefix) / "bin" / "activate"
        in_venv = sys.prefix != sys.base_prefix and activate.is_file()
        lines += [
            "try, in another shell" + (" (the first line puts accessd on the PATH):"
                                       if in_venv else ":"),
            *([f"  source {activate}"] if in_venv else []),
            f"  curl 'http://{ts}/timeseries/{SYMBOL}?from=2026-01-02T14:30:00Z"
            "&to=2026-01-02T15:00:00Z'",
            f"  curl http://{pred}/predict/{SYMBOL}",
            f"  accessd scale /jpm/timeseries 5 --api {self.api_url} --wait",
            f"  accessd logs /jpm/prediction --tail 5 --api {self.api_url}",
            f"  accessd client compare --symbol {SYMBOL} --timeseries http://{ts} "
            f"--predict http://{pred} --out {SYMBOL.lower()}-compare.png",
        ]
        if self.opts.ha:
            lines += [f"  accessd leader --api {self.api_url}            # who leads",
                      f"  accessd leader abdicate --api {self.api_url}   # fail over"]
        return "\n".join(lines)

    def stop(self) -> None:
        for comp in reversed(self.components):
            if comp.popen is not None:
                progress(f"stopping {comp.name}")
                comp.stop(grace=8 if comp.name == "localmesos" else 5)
        self.components.clear()


def _healthy_count(app: dict[str, Any]) -> int:
    if app.get("healthChecks"):
        return int(app.get("tasksHealthy", 0))
    return int(app.get("tasksRunning", 0))


def _bar(done: int, total: int, width: int = 20) -> str:
    filled = width if total == 0 else int(width * min(done, total) / total)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="accessd local", description=__doc__.split("\n\n")[0])
    p.add_argument("--api-port", type=int, default=8080)
    p.add_argument("--master-port", type=int, default=5050)
    p.add_argument("--agents", type=int, default=3)
    p.add_argument("--data-dir", default="./.accessd")
    p.add_argument("--days", type=int, default=20, help="days of sample quotes to create")
    p.add_argument("--timeout", type=float, default=180, help="seconds to wait for all healthy")
    p.add_argument("--ha", action="store_true",
                   help="a 3-server ZooKeeper ensemble, two schedulers (one leads), the API on "
                        "the ZooKeeper store (try `accessd leader abdicate`)")
    p.add_argument("--jobs-every", type=int, default=30, metavar="SECONDS",
                   help="add the pipeline jobs (ingest this often, then retrain); 0: add none "
                        "(jobs already in the state file keep running)")
    p.add_argument("--containers", action="store_true",
                   help="run the access services as Docker containers of the Python image "
                        "(examples/apps/containers/; builds the image first)")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    opts = parse_args(argv)
    run = LocalRun(opts)
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop_requested.set()
        raise KeyboardInterrupt

    # Ctrl-C is how `make run` is stopped: a stop asked for, ending cleanly with 0 (make would
    # report any other code as an error), like SIGTERM.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started = time.monotonic()
    try:
        run.start()
        progress(f"all healthy after {time.monotonic() - started:.1f}s")
        print(run.summary(), flush=True)
        while not stop_requested.is_set():
            run._check_components()
            stop_requested.wait(1.0)
        return 0
    except KeyboardInterrupt:
        progress("stop requested" if stop_requested.is_set() else "interrupted")
        return 0
    except StepFailed as exc:
        progress(f"error: {exc}")
        return 1
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):  # an impatient second signal must not
            signal.signal(signum, signal.SIG_IGN)          # cut the stop short
        run.stop()
        progress("stopped")
