"""Docker apps (issue 22): image build times, and a container's ACCEPT -> RUNNING next to a
plain command task's, on localmesos with accessd's scheduler.

    .venv/bin/python bench/docker.py [--tasks N] [--cold]

- build: `accessd image build` for busybox from scratch (`docker rmi` first) and cached; for the
  Python image the project layer rebuilt (what a code change costs) and cached. `--cold` also
  rebuilds the Python base (debootstrap: minutes; its cached tarball is deleted).
- launch: N tasks of a `//cmd` app and N of a busybox Docker app (same command), one after the
  other on a 3-agent localmesos; per task, `startedAt - stagedAt` from the task documents (the
  scheduler stamps stagedAt when it ACCEPTs, startedAt on TASK_RUNNING). Median and max.

Without Docker it prints the reason and `RESULT docker=unavailable`.
Last line: `RESULT busybox_cold_s=… busybox_cached_s=… python_layer_s=… python_cached_s=…
cmd_accept_to_running_ms=… docker_accept_to_running_ms=… docker_vs_cmd=…`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scale import Stack, wait_for  # noqa: E402

from accessd import image  # noqa: E402
from scheduler.spec import parse_time  # noqa: E402


def timed_build(kind: str) -> float:
    started = time.monotonic()
    image.build([kind])
    return time.monotonic() - started


def rmi(tag: str) -> None:
    subprocess.run([image.docker_bin(), "rmi", "-f", tag], capture_output=True)


def accept_to_running(stack: Stack, app: dict, n: int) -> list[float]:
    resp = stack.call("POST", "/v2/apps", app)
    assert resp.status_code == 201, resp.text

    def running():
        a = stack.app(app["id"])
        tasks = [t for t in (a or {}).get("tasks") or [] if t.get("startedAt")]
        return tasks if len(tasks) == n else None
    tasks = wait_for(f"{n} running tasks of {app['id']}", running, 120)
    stack.call("DELETE", f"/v2/apps{app['id']}?force=true")
    return [parse_time(t["startedAt"]) - parse_time(t["stagedAt"]) for t in tasks]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=6)
    p.add_argument("--cold", action="store_true", help="also rebuild the Python base")
    args = p.parse_args()
    subprocess.run(["bash", str(REPO / "tools" / "docker-deps.sh")], check=False)
    if subprocess.run([image.docker_bin(), "info"], capture_output=True).returncode != 0:
        print("docker: no dockerd answers (see .cache/docker-status)")
        print("RESULT docker=unavailable")
        return 0

    rmi(image.busybox_tag())
    busybox_cold = timed_build("busybox")
    busybox_cached = timed_build("busybox")
    if args.cold:
        base = image.python_base_tag()
        rmi(image.python_tag())
        rmi(base)
        (image.DEFAULT_CACHE / f"python-base-{base.rsplit(':', 1)[1]}.tar").unlink(missing_ok=True)
        print(f"python image cold (debootstrap): {timed_build('python'):.1f} s", flush=True)
    rmi(image.python_tag())
    python_layer = timed_build("python")
    python_cached = timed_build("python")
    print(f"busybox: cold {busybox_cold:.2f} s, cached {busybox_cached:.2f} s; python: project "
          f"layer {python_layer:.2f} s, cached {python_cached:.2f} s", flush=True)

    cmd = "trap 'exit 0' TERM; while :; do sleep 0.2; done"
    common = {"cmd": cmd, "cpus": 0.05, "mem": 32, "instances": args.tasks,
              "portDefinitions": [], "taskKillGracePeriodSeconds": 1}
    with tempfile.TemporaryDirectory(prefix="bench-docker-") as tmp:
        stack = Stack(Path(tmp), agents=3)
        try:
            plain = accept_to_running(stack, {"id": "/bench/plain", "executor": "//cmd",
                                              **common}, args.tasks)
            docker = accept_to_running(stack, {"id": "/bench/docker", **common, "container": {
                "type": "DOCKER", "docker": {"image": image.busybox_tag()}}}, args.tasks)
        finally:
            stack.stop()
    cmd_ms = statistics.median(plain) * 1000
    docker_ms = statistics.median(docker) * 1000
    print(f"ACCEPT -> RUNNING, {args.tasks} tasks each: //cmd median {cmd_ms:.0f} ms "
          f"(max {max(plain) * 1000:.0f}); docker median {docker_ms:.0f} ms "
          f"(max {max(docker) * 1000:.0f})")
    print(f"RESULT busybox_cold_s={busybox_cold:.2f} busybox_cached_s={busybox_cached:.2f} "
          f"python_layer_s={python_layer:.2f} python_cached_s={python_cached:.2f} "
          f"cmd_accept_to_running_ms={cmd_ms:.0f} docker_accept_to_running_ms={docker_ms:.0f} "
          f"docker_vs_cmd={docker_ms / max(cmd_ms, 1e-9):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
