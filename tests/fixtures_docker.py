"""Docker for the container tests: is a dockerd there (tools/docker-deps.sh starts one), and the
images they run (`accessd image build`, cached; built once per session at most).

Without Docker every test that asks for `docker` is skipped with the exact reason: the one
tools/docker-deps.sh wrote, or the failing `docker info`'s own words. Never a false pass."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from accessd import image as images
from tests.support import REPO

STATUS_FILE = REPO / ".cache" / "docker-status"


def docker(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([images.docker_bin(), *args], capture_output=True, text=True,
                          timeout=timeout)


def unavailable_reason() -> str | None:
    try:
        info = docker("info", timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        info = None
        why = f"docker client: {exc}"
    else:
        lines = [ln for ln in info.stderr.strip().splitlines() if ln.strip()]
        why = lines[0] if lines else "no answer"
    if info is not None and info.returncode == 0:
        return None
    if STATUS_FILE.exists() and STATUS_FILE.read_text().startswith("unavailable:"):
        return "Docker " + STATUS_FILE.read_text().strip() + f" ({why})"
    return f"Docker unavailable: {why} (tools/docker-deps.sh starts dockerd)"


@pytest.fixture(scope="session")
def docker_ready() -> None:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def busybox_image(docker_ready: None) -> str:
    try:
        return images.build(["busybox"])["busybox"]
    except images.BuildError as exc:
        pytest.skip(f"cannot build the busybox image: {exc}")


@pytest.fixture(scope="session")
def python_image(docker_ready: None) -> str:
    """Minutes the first time on a machine (debootstrap), then cached: seconds. `make test` has
    ~40 s for these tests, so a cold base is built only when asked (ACCESSD_BUILD_IMAGES=1);
    `make conformance` (after `make test` in .ci/run) always builds it and runs the Python
    service scenario on localmesos too."""
    if not images.python_base_ready() and not os.environ.get("ACCESSD_BUILD_IMAGES"):
        pytest.skip("the Python base image is not built on this machine (accessd image build "
                    "python: ~6 min cold; set ACCESSD_BUILD_IMAGES=1 to build it here)")
    try:
        return images.build(["python"])["python"]
    except images.BuildError as exc:
        pytest.skip(f"cannot build the Python image: {exc}")


def containers(label: str) -> list[dict]:
    """`docker ps -a` for containers carrying `label` (`key=value`), any state."""
    out = docker("ps", "-a", "--no-trunc", "--filter", f"label={label}", "--format",
                 "{{json .}}").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture
def no_leftover_containers() -> Iterator[list[str]]:
    """Work dirs a test registers: none of their containers may remain after it."""
    dirs: list[str] = []
    yield dirs
    left = [c for d in dirs for c in containers(f"localmesos.work_dir={d}")]
    for c in left:
        docker("rm", "-f", c["ID"])
    assert not left, f"containers left behind: {[c['Names'] for c in left]}"
