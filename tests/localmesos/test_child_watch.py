"""`localmesos.child_watch.ChildWatcher`: one thread calls each child's callback exactly once,
after that child has exited; a callback that raises stops nothing; without a pidfd a thread of
its own waits instead."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest

from localmesos.child_watch import ChildWatcher
from tests.support import wait_until


@pytest.fixture
def watcher():
    w = ChildWatcher()
    yield w
    w.stop()


def watch_all(watcher, popens, ended, *, raising=()):
    lock = threading.Lock()

    def make(p):
        def fn():
            rc = p.wait()  # reaps: the child has exited, so this returns at once
            with lock:
                ended.append((p.pid, rc))
            if p.pid in raising:
                raise RuntimeError("a callback that fails")
        return fn

    for p in popens:
        watcher.watch(p.pid, make(p), p.wait)


def test_each_callback_runs_once_after_its_child_exited(watcher):
    popens = [subprocess.Popen(["/bin/sh", "-c", f"exit {n % 3}"]) for n in range(40)]
    ended: list[tuple[int, int]] = []
    watch_all(watcher, popens, ended, raising={popens[0].pid})
    wait_until(lambda: len(ended) == 40, timeout=20)
    assert sorted(ended) == sorted((p.pid, n % 3) for n, p in enumerate(popens))


def test_a_running_child_is_not_reported_until_it_ends(watcher):
    sleeper = subprocess.Popen(["sleep", "30"])
    quick = subprocess.Popen(["true"])
    ended: list[tuple[int, int]] = []
    watch_all(watcher, [sleeper, quick], ended)
    wait_until(lambda: ended == [(quick.pid, 0)], timeout=10)
    assert sleeper.poll() is None
    sleeper.kill()
    wait_until(lambda: len(ended) == 2, timeout=10)
    assert ended[1] == (sleeper.pid, -9)


def test_without_a_pidfd_a_thread_waits(watcher, monkeypatch):
    def no_pidfd(pid):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    child = subprocess.Popen(["true"])
    ended: list[tuple[int, int]] = []
    watch_all(watcher, [child], ended)
    wait_until(lambda: ended == [(child.pid, 0)], timeout=10)


def test_stop_twice_and_watch_after_stop_are_harmless():
    w = ChildWatcher()
    w.stop()
    w.stop()
    child = subprocess.Popen(["true"])
    w.watch(child.pid, lambda: None, child.wait)  # ignored: nothing is watched any more
    child.wait()
