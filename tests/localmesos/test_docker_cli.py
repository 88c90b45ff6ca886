"""The docker client lookup is one function (`localmesos.docker_cli.docker_bin`), and each caller
keeps its own override: `LOCALMESOS_DOCKER` for the docker containerizer, `ACCESSD_DOCKER` for
`accessd image`. localmesos stays importable on its own: it imports only the standard library.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from accessd import image
from localmesos import docker_cli, docker_containerizer

LOCALMESOS = Path(docker_cli.__file__).resolve().parent


def test_each_caller_honours_its_own_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALMESOS_DOCKER", "/opt/lm/docker")
    monkeypatch.setenv("ACCESSD_DOCKER", "/opt/accessd/docker")
    assert docker_containerizer.docker_bin() == "/opt/lm/docker"
    assert image.docker_bin() == "/opt/accessd/docker"


def test_without_override_both_find_the_same_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCALMESOS_DOCKER", raising=False)
    monkeypatch.delenv("ACCESSD_DOCKER", raising=False)
    found = docker_containerizer.docker_bin()
    assert found == image.docker_bin()
    assert found in (docker_cli.DEBIAN_DOCKER, "docker") or Path(found).name == "docker"


def test_there_is_one_lookup() -> None:
    """The containerizer uses the shared function itself; `accessd image` only names its var."""
    assert docker_containerizer.docker_bin is docker_cli.docker_bin
    assert "os.environ" not in Path(image.__file__).read_text().split("def docker_bin")[1] \
        .split("\ndef ")[0]


def _imported(tree: ast.Module, *, in_functions: bool) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(alias.name, node) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append((node.module, node))
    lazy = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
            for n in ast.walk(f)}
    return [name for name, node in names if (id(node) in lazy) == in_functions]


def test_localmesos_imports_only_the_standard_library() -> None:
    """At module level: stdlib and localmesos only. Inside functions kazoo is also allowed: the
    `--zk` announcement imports it lazily (localmesos/README.md)."""
    for path in sorted(LOCALMESOS.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for lazy, allowed in ((False, set()), (True, {"kazoo"})):
            for name in _imported(tree, in_functions=lazy):
                top = name.split(".")[0]
                assert top in {"localmesos", "__future__", *allowed} \
                    or top in sys.stdlib_module_names, f"{path.name} imports {name}"
