"""Which `docker` client to run: the one lookup both localmesos's docker containerizer and
`accessd image` use. Only the environment variable that overrides it differs by caller
(`LOCALMESOS_DOCKER` here, `ACCESSD_DOCKER` for `accessd image`), so it is a parameter.

It lives in localmesos because localmesos may import only the standard library; accessd may
import localmesos, not the other way round.
"""

from __future__ import annotations

import os
import shutil

DEBIAN_DOCKER = "/usr/bin/docker"


def docker_bin(env_var: str = "LOCALMESOS_DOCKER") -> str:
    """`$env_var` when set; else Debian's client (its classic builder needs no buildx); else the
    first `docker` on PATH; else the bare name (the run then fails with the OS's own error)."""
    explicit = os.environ.get(env_var)
    if explicit:
        return explicit
    if os.path.exists(DEBIAN_DOCKER):
        return DEBIAN_DOCKER
    return shutil.which("docker") or "docker"
