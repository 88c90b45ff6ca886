"""The agent's fetcher and user switch: what a Mesos agent does between accepting a launch and
starting the command of a task or executor.

- `CommandInfo.uris` are downloaded into the sandbox before the command starts (as Mesos's
  fetcher does): `http(s)://`, `file://` and absolute paths; `extract` unpacks the archive types
  Mesos's fetcher knows (tar, tar.gz/tgz, tar.bz2/tbz2, tar.xz/txz, gz, zip) into the sandbox and
  keeps the downloaded file; `executable` makes the file executable; `output_file` names it
  (relative to the sandbox). `cache` is accepted and fetches anew each time (Mesos's cache is an
  optimisation whose result is the same file). Any failure fails the launch, as in Mesos:
  "Failed to fetch all URIs for container ...".
- `CommandInfo.user` runs the command as that user: the sandbox and the fetched files are given
  to the user and the command is started through `localmesos.runas` (setgid/setuid, then exec).
  A user that does not exist on the agent, or a different user while the agent is not root, fails
  the launch, as a Mesos agent does.

`spawn(...)` is the agent's one call: it returns a Future like `Spawner.spawn` does, resolved
with the process, or failed with `LaunchError` (the agent reports that as a failed launch).
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import pwd
import shutil
import stat
import sys
import tarfile
import threading
import urllib.request
import zipfile
from concurrent.futures import Future
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

FETCH_TIMEOUT = 60.0  # seconds per URI: a fetch is bounded, as every network call here
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


class LaunchError(Exception):
    """A launch that cannot start; the message is what the agent reports."""


def _basename(uri: str) -> str:
    path = urlsplit(uri).path if "://" in uri else uri
    name = os.path.basename(unquote(path).rstrip("/"))
    if not name or name in (".", ".."):
        raise LaunchError(f"cannot name a file after URI '{uri}'")
    return name


def _inside(directory: str, relative: str) -> Path:
    root = Path(directory).resolve()
    target = (root / relative).resolve()
    if root != target and root not in target.parents:
        raise LaunchError(f"output_file '{relative}' leaves the sandbox")
    return target


def _download(uri: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if uri.startswith("/"):
        shutil.copyfile(uri, target)
        return
    scheme = urlsplit(uri).scheme
    if scheme not in ("http", "https", "file"):
        raise LaunchError(f"unsupported URI scheme '{scheme}' in '{uri}'")
    with urllib.request.urlopen(uri, timeout=FETCH_TIMEOUT) as resp, open(target, "wb") as out:
        shutil.copyfileobj(resp, out)


def _extract(path: Path, directory: str) -> None:
    name = path.name
    if name.endswith(TAR_SUFFIXES):
        with tarfile.open(path) as tar:
            tar.extractall(directory, filter="data")  # no paths outside the sandbox
    elif name.endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            zf.extractall(directory)  # zipfile drops absolute and '..' parts
    elif name.endswith((".gz", ".bz2", ".xz")):
        opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}[path.suffix]
        with opener(path, "rb") as src, open(path.with_suffix(""), "wb") as out:
            shutil.copyfileobj(src, out)
    # anything else is not an archive: Mesos leaves it as fetched


def fetch(uris: list[dict[str, Any]], directory: str) -> list[Path]:
    """Fetch `uris` (Mesos `CommandInfo.URI` JSON) into `directory`; the paths written."""
    written: list[Path] = []
    for uri in uris:
        value = str(uri.get("value") or "")
        try:
            out = uri.get("output_file")
            target = _inside(directory, out) if out else Path(directory) / _basename(value)
            _download(value, target)
            if uri.get("executable"):
                target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            elif uri.get("extract", True):
                _extract(target, directory)
            written.append(target)
        except LaunchError as exc:
            raise LaunchError(f"Failed to fetch all URIs for container: {exc}") from None
        except (OSError, ValueError, tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
            raise LaunchError(f"Failed to fetch all URIs for container: '{value}': "
                              f"{exc}") from None
    return written


def run_as(user: str, argv: list[str], directory: str) -> list[str]:
    """`argv` wrapped to run as `user`, the sandbox given to that user; LaunchError when the
    agent cannot do that (no such user, or not root and another user)."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise LaunchError(f"Failed to get user information for '{user}': "
                          "No such user") from None
    if pw.pw_uid == os.geteuid():
        return argv
    if os.geteuid() != 0:
        raise LaunchError(f"Failed to chown sandbox '{directory}' to user '{user}': "
                          "Operation not permitted (the agent does not run as root)")
    for root, dirs, files in os.walk(directory):
        for name in [root, *(os.path.join(root, d) for d in dirs),
                     *(os.path.join(root, f) for f in files)]:
            os.lchown(name, pw.pw_uid, pw.pw_gid)
    return [sys.executable, "-m", "localmesos.runas", user, "--", *argv]


def spawn(spawner: Any, command: dict[str, Any], argv: list[str], env: dict[str, str],
          directory: str, stdout: str, stderr: str) -> Future:
    """Fetch the command's URIs, switch to its user, then `spawner.spawn`; the Future of the
    process (or of the LaunchError). Without URIs or user it is `spawner.spawn` itself."""
    uris = [u for u in command.get("uris") or () if isinstance(u, dict)]
    user = command.get("user")
    if not uris and not user:
        return spawner.spawn(argv, env, directory, stdout, stderr)
    result: Future = Future()

    def chain(inner: Future) -> None:
        exc = inner.exception()
        if exc is not None:
            result.set_exception(exc)
        else:
            result.set_result(inner.result())

    def prepare() -> None:
        try:
            fetch(uris, directory)
            final = run_as(str(user), argv, directory) if user else argv
        except LaunchError as exc:
            result.set_exception(exc)
            return
        except Exception as exc:  # a launch never dies silently
            result.set_exception(LaunchError(f"Failed to prepare the launch: {exc}"))
            return
        spawner.spawn(final, env, directory, stdout, stderr).add_done_callback(chain)

    threading.Thread(target=prepare, name="fetcher", daemon=True).start()
    return result
