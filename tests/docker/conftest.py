"""Docker tests: the fixtures of tests/fixtures_docker.py (skipped with the reason without
Docker)."""

from tests.fixtures_docker import (  # noqa: F401
    busybox_image,
    docker_ready,
    no_leftover_containers,
    python_image,
)
