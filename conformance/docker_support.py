"""Docker in the conformance lane: the real agent's flags when Docker is there, and the label
every Docker scenario puts on its containers so the lane can find what a run left behind on
either cluster (a real agent names containers `mesos-<container id>` and labels nothing)."""

from __future__ import annotations

from tests.fixtures_docker import unavailable_reason


def real_agent_flags() -> list[str]:
    """`--containerizers=docker,mesos` when a dockerd answers (tools/docker-deps.sh), else none.
    `--docker_kill_orphans=false`: a real agent would otherwise remove, at start, every
    `mesos-*` container it does not know, which includes localmesos's of other runs."""
    if unavailable_reason() is not None:
        return []
    return ["--containerizers=docker,mesos", "--docker=/usr/bin/docker",
            "--docker_kill_orphans=false"]
