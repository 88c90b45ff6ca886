"""`accessd image build`: the container images tests and examples use, made here from Debian
packages (no registry is reachable), cached, and rebuilt only when what goes in changes.

- `accessd/busybox:<hash>`: Debian's busybox-static and its applet links, `docker import`ed
  from a root-filesystem tarball (~2 MB; builds in about a second).
- `accessd/python-base:<hash>`: a Debian root filesystem (`debootstrap --variant=minbase`, with
  python3, venv, tzdata, CA certificates) and a virtualenv `/opt/accessd` holding the access
  services' runtime dependencies at the versions this virtualenv has (wheels fetched by the
  host's pip, installed offline in a chroot). Minutes cold; its tarball is cached.
- `accessd/python:<hash>`: that base plus accessd itself (`pip install --no-deps` of the
  project's source), one small layer built with `docker build`; rebuilt when the source changes.

Each tag is a content hash of its inputs (the busybox binary; the Debian suite, package list
and wheel versions; the project's source files), so an existing tag means there is nothing to do.
Each is also tagged `:latest` for the example app definitions. The cache (root-filesystem
tarballs, wheels) is under `.cache/images/` (ignored by git), or `--cache-dir`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from localmesos import docker_cli

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = ROOT / ".cache" / "images"
BUILDER_VERSION = "1"  # bump to rebuild every image after a change to the recipes below
SUITE = "bookworm"
MIRROR = os.environ.get("ACCESSD_DEBIAN_MIRROR", "http://deb.debian.org/debian")
DEBIAN_PACKAGES = ("python3", "python3-venv", "tzdata", "ca-certificates")
# The access services' runtime dependencies (setup.py install_requires, minus the framework's
# pymesos/addict and the client's matplotlib), plus what installing the project needs offline.
RUNTIME_DISTRIBUTIONS = ("falcon", "gunicorn", "orjson", "prometheus-client", "numpy",
                         "requests", "cassandra-driver", "setuptools", "wheel")
PROJECT_PACKAGES = ("accessd", "scheduler", "executor", "services", "api", "localmesos")
PROJECT_FILES = ("setup.py", "pyproject.toml")


class BuildError(RuntimeError):
    pass


def docker_bin() -> str:
    """The docker client `accessd image` runs: `$ACCESSD_DOCKER`, else the shared lookup."""
    return docker_cli.docker_bin("ACCESSD_DOCKER")


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip()[-2000:]
        raise BuildError(f"{' '.join(argv[:4])} … exited with status {proc.returncode}: {tail}")
    return proc


def image_exists(tag: str) -> bool:
    return subprocess.run([docker_bin(), "image", "inspect", tag], capture_output=True
                          ).returncode == 0


def _tag_latest(tag: str) -> None:
    _run([docker_bin(), "tag", tag, tag.rsplit(":", 1)[0] + ":latest"])


def _digest(parts: list[bytes]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "big"))
        h.update(p)
    return h.hexdigest()[:12]


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """One build at a time per cache (tests and `make run` may ask at once)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _say(msg: str) -> None:
    print(f"image: {msg}", flush=True)


# ---- busybox ---------------------------------------------------------------------------------

BUSYBOX = "/bin/busybox"


def busybox_tag() -> str:
    binary = Path(BUSYBOX).read_bytes() if os.path.exists(BUSYBOX) else b""
    return f"accessd/busybox:{_digest([BUILDER_VERSION.encode(), binary])}"


def build_busybox(cache: Path) -> str:
    tag = busybox_tag()
    if image_exists(tag):
        return tag
    if not os.path.exists(BUSYBOX):
        raise BuildError("no /bin/busybox: install Debian's busybox-static "
                         "(tools/docker-deps.sh does)")
    applets = _run([BUSYBOX, "--list"]).stdout.split()
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        rootfs = Path(tmp) / "rootfs"
        for d in ("bin", "tmp", "etc", "root", "proc", "sys", "dev"):
            (rootfs / d).mkdir(parents=True)
        shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
        for applet in applets:
            if applet != "busybox":
                (rootfs / "bin" / applet).symlink_to("busybox")
        (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                               "nobody:x:65534:65534:nobody:/:/bin/false\n")
        (rootfs / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
        tarball = Path(tmp) / "rootfs.tar"
        _run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tarball), "."])
        _run([docker_bin(), "import", "--change", 'CMD ["/bin/sh"]',
              "--change", "ENV PATH=/bin", str(tarball), tag])
    return tag


# ---- python ----------------------------------------------------------------------------------

def _requirements() -> list[str]:
    out = []
    for name in RUNTIME_DISTRIBUTIONS:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(name)
    return out


def python_base_tag() -> str:
    parts = [BUILDER_VERSION.encode(), SUITE.encode(), " ".join(DEBIAN_PACKAGES).encode(),
             " ".join(_requirements()).encode()]
    return f"accessd/python-base:{_digest(parts)}"


def python_base_ready(cache: Path = DEFAULT_CACHE) -> bool:
    """Whether the Python image can be built in seconds (its base exists, as an image or as
    the cached tarball), rather than minutes (debootstrap)."""
    base = python_base_tag()
    return (image_exists(base)
            or (cache / f"python-base-{base.rsplit(':', 1)[1]}.tar").exists())


def _project_files() -> list[Path]:
    files = [ROOT / f for f in PROJECT_FILES if (ROOT / f).exists()]
    for pkg in PROJECT_PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files.append(path)
    return files


def python_tag() -> str:
    parts = [python_base_tag().encode()]
    for path in _project_files():
        parts += [str(path.relative_to(ROOT)).encode(), path.read_bytes()]
    return f"accessd/python:{_digest(parts)}"


def _base_rootfs(cache: Path, tag: str) -> Path:
    """The base's root-filesystem tarball, from the cache or built (debootstrap, then wheels)."""
    tarball = cache / f"python-base-{tag.rsplit(':', 1)[1]}.tar"
    if tarball.exists():
        return tarball
    if os.geteuid() != 0 or not shutil.which("debootstrap"):
        raise BuildError("building the Python image needs root and debootstrap "
                         "(tools/docker-deps.sh installs it)")
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        rootfs = Path(tmp) / "rootfs"
        try:
            _debootstrap_with_wheels(rootfs, tarball)
        finally:  # debootstrap mounts /proc and /sys in the target: never delete through them
            _unmount_under(rootfs)
    return tarball


def _unmount_under(rootfs: Path) -> None:
    prefix = str(rootfs) + "/"
    with open("/proc/mounts") as fh:
        points = [line.split()[1] for line in fh if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def _debootstrap_with_wheels(rootfs: Path, tarball: Path) -> None:
    """debootstrap, then the wheels into /opt/accessd, then the tarball."""
    _say(f"debootstrap --variant=minbase {SUITE} (a few minutes) …")
    _run(["debootstrap", "--variant=minbase", f"--include={','.join(DEBIAN_PACKAGES)}",
          SUITE, str(rootfs), MIRROR])
    wheels = rootfs / "tmp" / "wheels"
    _say("fetching wheels with this machine's pip …")
    _run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
          "--python-version", "3.11", "--platform", "manylinux2014_x86_64",
          "--platform", "manylinux_2_28_x86_64", "-d", str(wheels), *_requirements()])
    _say("installing them into /opt/accessd (offline, in a chroot) …")
    _run(["chroot", str(rootfs), "/usr/bin/python3", "-m", "venv", "/opt/accessd"])
    _run(["chroot", str(rootfs), "/opt/accessd/bin/pip", "install", "-q", "--no-index",
          "--find-links", "/tmp/wheels", *_requirements()])
    shutil.rmtree(wheels)
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (rootfs / junk).glob("*"):
            if entry.is_file():
                entry.unlink()
    partial = tarball.with_suffix(".partial")
    _run(["tar", "-C", str(rootfs), "--numeric-owner", "--exclude=./proc/*",
          "--exclude=./sys/*", "-cf", str(partial), "."])
    partial.rename(tarball)


def build_python(cache: Path) -> str:
    tag = python_tag()
    if image_exists(tag):
        return tag
    base = python_base_tag()
    if not image_exists(base):
        tarball = _base_rootfs(cache, base)
        _say(f"docker import {tarball.name} …")
        _run([docker_bin(), "import", "--change",
              "ENV PATH=/opt/accessd/bin:/usr/local/bin:/usr/bin:/bin", str(tarball), base])
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        ctx = Path(tmp)
        for path in _project_files():
            dest = ctx / "src" / path.relative_to(ROOT)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        (ctx / "Dockerfile").write_text(
            f"FROM {base}\n"
            "COPY src /tmp/accessd-src\n"
            "RUN /opt/accessd/bin/pip install -q --no-index --no-deps --no-build-isolation "
            "/tmp/accessd-src && rm -rf /tmp/accessd-src /root/.cache\n"
            "ENV PATH=/opt/accessd/bin:/usr/local/bin:/usr/bin:/bin PYTHONUNBUFFERED=1\n"
            'CMD ["python3"]\n')
        _run([docker_bin(), "build", "-q", "--network", "none", "-t", tag, str(ctx)],
             env={**os.environ, "DOCKER_BUILDKIT": "0"})
    return tag


BUILDERS = {"busybox": build_busybox, "python": build_python}


def build(kinds: list[str], cache: Path = DEFAULT_CACHE) -> dict[str, str]:
    """Build (or find) each image; returns kind -> tag. Raises BuildError with the reason."""
    out = {}
    with _locked(cache):
        for kind in kinds:
            start = time.monotonic()
            tag = BUILDERS[kind](cache)
            _tag_latest(tag)
            _say(f"{tag} ready ({time.monotonic() - start:.2f} s)")
            out[kind] = tag
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="accessd image", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build", help="build the images (skipped when up to date)")
    b.add_argument("kinds", nargs="*", help="busybox, python (default: both)")
    b.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    t = sub.add_parser("tags", help="print the tag each image has for the current inputs")
    t.add_argument("kinds", nargs="*", default=list(BUILDERS))
    args = parser.parse_args(argv)
    unknown = [k for k in args.kinds if k not in BUILDERS]
    if unknown:
        parser.error(f"unknown image {unknown[0]!r} (busybox, python)")
    if args.action == "tags":
        for kind in args.kinds:
            print(busybox_tag() if kind == "busybox" else python_tag())
        return 0
    try:
        build(list(args.kinds) or list(BUILDERS), args.cache_dir)
    except (BuildError, OSError) as exc:
        print(f"accessd image: {exc}", file=sys.stderr)
        return 1
    return 0
