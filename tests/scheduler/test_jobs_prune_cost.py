"""The SQLite store's prune of one job's history costs the same whatever the other jobs keep:
the scheduler prunes a few jobs every tick, so a cost that grew with the whole history (every
finished run of every job) slowed every tick down as the history filled up."""

from __future__ import annotations

from scheduler.sqlite_state import SQLiteStateStore


def _finished(job: str, n: int) -> dict:
    return {"id": f"ct:{n}:0:{job}", "job": job, "active": False, "state": "succeeded"}


def _prune_steps(store: SQLiteStateStore, job: str) -> int:
    """SQLite virtual-machine instructions the prune of `job` runs (counted 100 at a time)."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    conn = store._conn()
    conn.set_progress_handler(count, 100)
    try:
        assert store.prune_job_runs(job, 5) == 15
    finally:
        conn.set_progress_handler(None, 100)
    return steps[0] * 100


def test_prune_cost_does_not_grow_with_other_jobs_history(tmp_path):
    store = SQLiteStateStore(str(tmp_path / "state.db"))
    try:
        store.record_jobs(runs=[_finished("a", i) for i in range(20)])
        alone = _prune_steps(store, "a")
        store.record_jobs(runs=[_finished("a", i) for i in range(100, 115)])  # 20 again
        for job in range(50):  # 50 other jobs with 100 finished runs each
            store.record_jobs(runs=[_finished(f"other{job:02d}", i) for i in range(100)])
        crowded = _prune_steps(store, "a")
        # the same work (15 of 20 runs deleted), among 5,000 other finished runs: at most a
        # few index levels more, not a walk over them (that was ~50x)
        assert crowded < 2 * alone + 2000, (alone, crowded)
        assert [r["id"] for r in store.list_job_runs("a")] == [
            f"ct:{i}:0:a" for i in range(114, 109, -1)]
    finally:
        store.close()
