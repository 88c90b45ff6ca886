"""A small filesystem that can be filled: `small_tmpfs(path, mb)` mounts a tmpfs (root, or a
container that allows `mount`; otherwise the reason is given to skip with) and
`fill_filesystem(dir)` writes a ballast file until ENOSPC. `truncate_wal(db)` first, or a
SQLite store's writes land in the space its write-ahead log already holds (a checkpointed log
is written again from its start) and never meet the full disk. Used by the disk-full tests
and `bench/chaos.py`.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import wait_until


def mount_tmpfs(path: Path, size_mb: int) -> str | None:
    """Mount a `size_mb` tmpfs on `path`; None when done, else why it could not be."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700",
                              "tmpfs", str(path)], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if out.returncode == 0 else (out.stderr.strip() or f"exit {out.returncode}")


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


@contextmanager
def small_tmpfs(path: Path, size_mb: int) -> Iterator[str | None]:
    """Yields None with `path` a tmpfs of `size_mb`, or the reason mounting was refused."""
    refused = mount_tmpfs(path, size_mb)
    try:
        yield refused
    finally:
        if refused is None:
            unmount(path)


def truncate_wal(db_path: Path, timeout: float = 10.0) -> bool:
    """Checkpoint the SQLite database's write-ahead log into it and cut the log to 0 bytes,
    retried while a reader or writer is in the way; whether that was done by `timeout`."""
    conn = sqlite3.connect(db_path, timeout=timeout)
    try:
        wait_until(lambda: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0,
                   timeout, 0.02, "a truncating checkpoint", error=TimeoutError, retry_on=())
        return True
    except TimeoutError:
        return False
    finally:
        conn.close()


def fill_filesystem(directory: Path) -> Path:
    """Write a ballast file in `directory` until its filesystem answers ENOSPC."""
    ballast = directory / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 4096, 1):  # then whatever is left below a megabyte
            chunk = b"\0" * size
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return ballast
