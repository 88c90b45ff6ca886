"""The state store: the only thing the API process and the scheduler share.

The API writes *desired* state (app definitions, deployments, kill requests); the scheduler writes
*observed* state (tasks, health, deployment progress, app runtime status) and the framework id.
Everything is a JSON document (plain dicts), so the store does not depend on the app schema.

Invariants every backend keeps:
- every method is atomic; `apply_app_change` and `request_kills` are single transactions, so a
  rejected change leaves nothing behind;
- `desired_generation()` grows whenever desired state changes (apps, deployments, kill requests,
  delay resets), so the scheduler can notice API writes by polling one integer;
- an app's runtime status document has one writer, the scheduler (its worker thread), so its
  read-modify-write of the document can lose nothing. The API asks for a backoff reset
  (`DELETE /v2/queue/{id}/delay`) with `request_delay_reset`, a desired-state request like a
  kill request; the scheduler folds the pending request into the status it writes next and
  consumes it in that same transaction (`put_app_status(..., delay_reset=request)`). A request
  that lands after the scheduler read the status stays pending for its next write, so a reset
  is never overwritten by an older delay;
- `append_event` ids grow strictly; `events_since` returns events in id order (the API's
  `/v2/events` tails this log, which works across processes).

A backend is storage only: it implements the reads, the event log and `transact(plan)`, which
runs a pure plan (`scheduler.changes`) on a consistent snapshot (`Reader`) and applies the
`Transaction` (puts and deletes) it returns, all or none. The change methods below are defined
once, here, over `transact`; no backend recomputes instances, versions or statuses.

`scheduler.stores.open_state(url)` opens a backend: `SQLiteStateStore` (`scheduler.sqlite_state`,
a path or `sqlite:///path`, the default) or `ZooKeeperStateStore` (`scheduler.zk_state`,
`zk://h1:2181,h2:2181/accessd`). `tests/scheduler/test_state_contract.py` runs one suite on both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from scheduler.spec import iso_now
from scheduler.state_types import (
    FINAL_DEPLOYMENT_STATUSES,
    KINDS,
    AppExists,
    AppNotFound,
    Delete,
    DeploymentConflict,
    Doc,
    Kind,
    NotLeader,
    Op,
    Plan,
    Put,
    Reader,
    StateError,
    StoreUnavailable,
    T,
    TaskRecord,
    Transaction,
    Update,
)

if TYPE_CHECKING:
    from scheduler.service_ports import PortRange

PRUNE_CHUNK = 500   # deletions per transaction of `prune_deployments` (a ZooKeeper multi)

__all__ = [
    "FINAL_DEPLOYMENT_STATUSES", "KINDS", "PRUNE_CHUNK", "AppExists", "AppNotFound", "Delete",
    "DeploymentConflict", "Doc", "Kind", "NotLeader", "Op", "Plan", "Put", "Reader",
    "StateError", "StateStore", "StoreUnavailable", "T", "TaskRecord", "Transaction", "Update",
]


def _prune_plan(deployment_ids: list[str]) -> Plan[int]:
    """Deletions of those deployments still stored and final in the snapshot."""
    def plan(reader: Reader) -> tuple[Transaction, int]:
        ops = tuple(Delete("deployments", i) for i in deployment_ids
                    if (reader.deployment(i) or {}).get("status", "running")
                    in FINAL_DEPLOYMENT_STATUSES)
        return Transaction(ops), len(ops)
    return plan


class StateStore(ABC):
    """Interface of every state-store backend. Documents are Marathon-shaped JSON dicts.

    A backend implements the reads, the event log and `transact`; the changes (which document
    becomes what) are computed once, here and in `scheduler.changes`, from a snapshot."""

    @abstractmethod
    def transact(self, plan: Plan[T]) -> T:
        """Run `plan` (pure) on a consistent snapshot and apply the Transaction it returns,
        atomically and only if that snapshot is still current at the commit (a backend may run
        `plan` again on a newer snapshot); returns the plan's result. Exceptions `plan` raises
        (a rejected change) propagate and nothing is written."""

    # -- framework ---------------------------------------------------------------------------
    @abstractmethod
    def get_framework_id(self) -> str | None: ...

    def set_framework_id(self, framework_id: str | None) -> None:
        op: Op = (Delete("meta", "framework_id") if framework_id is None
                  else Put("meta", "framework_id", {"value": framework_id}))
        self.transact(lambda r: (Transaction((op,)), None))

    # -- desired state: apps and deployments (written by the API) -----------------------------
    @abstractmethod
    def get_app(self, app_id: str) -> Doc | None: ...

    @abstractmethod
    def list_apps(self) -> list[Doc]:
        """All apps, sorted by id."""

    def apply_app_change(self, app_id: str, app: Doc | None, deployment: Doc | None, *,
                         force: bool = False, must_exist: bool | None = None,
                         port_range: PortRange | None = None,
                         events: Callable[[Doc | None], Sequence[Doc]] | Sequence[Doc] = (),
                         history_keep: int = 0) -> Doc | None:
        """Atomically store `app` (None deletes it) together with its `deployment`; returns
        the stored document: `app` with its port-0 service ports assigned from `port_range`
        (default 10000-19999), unique across apps (`scheduler.service_ports`; a clash is
        ServicePortConflict).

        Raises DeploymentConflict if an active deployment affects `app_id` and not `force`; with
        `force` those deployments are marked `superseded`. `must_exist=True` raises AppNotFound for
        a missing app, `must_exist=False` raises AppExists for an existing one. Bumps the desired
        generation. `events` (complete stored events, see `Transaction.events`, or a function
        of the stored app giving them) are appended in the same transaction: the change and its
        announcement commit together. With
        `history_keep`, `app` also goes into its version history (`put_app_version`), or, for a
        delete, the app's history goes (`transact_with_version`), in the same transaction where
        the backend can. (The rules are
        `scheduler.changes.app_change`'s; the backend only applies its transaction.)
        """
        from scheduler import changes
        from scheduler.service_ports import DEFAULT_RANGE

        now = iso_now()

        def plan(r: Reader) -> tuple[Transaction, Doc | None]:
            txn, stored = changes.app_change(r, app_id, app, deployment, force=force,
                                             must_exist=must_exist, now=now,
                                             port_range=port_range or DEFAULT_RANGE)
            extra = tuple(events(stored) if callable(events) else events)
            return Transaction(txn.ops, txn.bump_generation, txn.events + extra), stored

        return self.transact_with_version(plan, app_id, history_keep)

    def apply_app_update(self, app_id: str, update: Update, *,
                         force: bool = False, port_range: PortRange | None = None,
                         events: Callable[[Doc | None, Doc | None], Sequence[Doc]],
                         history_keep: int = 0,
                         now: str | None = None) -> tuple[Doc | None, Doc | None]:
        """`apply_app_change` of what `update(previous)` (pure: it may run again on a newer
        snapshot) makes of the app as the transaction reads it: `(app, deployment)`, which may
        raise to refuse. `events(stored, deployment)`; `now`: the change's time (when
        superseded deployments finish; default: the time now). Returns the stored app and the
        deployment. (The rules are `scheduler.changes.app_update`'s.)"""
        from scheduler import changes
        from scheduler.service_ports import DEFAULT_RANGE

        now = now or iso_now()
        planned: list[Doc | None] = [None]

        def plan(r: Reader) -> tuple[Transaction, Doc | None]:
            txn, (stored, deployment) = changes.app_update(
                r, app_id, update, force=force, now=now, port_range=port_range or DEFAULT_RANGE)
            planned[0] = deployment  # the last run is the one committed
            extra = tuple(events(stored, deployment))
            return Transaction(txn.ops, txn.bump_generation, txn.events + extra), stored

        stored = self.transact_with_version(plan, app_id, history_keep)
        return stored, planned[0]

    def apply_app_updates(self, updates: Sequence[tuple[str, Update]], *, force: bool = False,
                          port_range: PortRange | None = None,
                          events: Callable[[Doc | None, Doc | None], Sequence[Doc]],
                          history_keep: int = 0, now: str | None = None
                          ) -> list[tuple[Doc | None, Doc | None]]:
        """`apply_app_update` of several apps (distinct ids) in one transaction: every change
        with its events and version history, or, if one is refused (DeploymentConflict,
        AppExists, a port clash...), nothing. Returns each app's stored document and
        deployment, in order. (The rules are `scheduler.changes.apps_update`'s.)"""
        from scheduler import changes
        from scheduler.service_ports import DEFAULT_RANGE

        now = now or iso_now()
        planned: list[tuple[Doc | None, Doc | None]] = []

        def plan(r: Reader) -> tuple[Transaction, dict[str, Doc | None]]:
            txn, results = changes.apps_update(r, updates, force=force, now=now,
                                               port_range=port_range or DEFAULT_RANGE)
            planned[:] = results  # the last run is the one committed
            extra = tuple(e for stored, deployment in results
                          for e in events(stored, deployment))
            stored = {app_id: app for (app_id, _), (app, _) in zip(updates, results, strict=True)}
            return Transaction(txn.ops, txn.bump_generation, txn.events + extra), stored

        self.transact_with_versions(plan, history_keep)
        return list(planned)

    def transact_with_version(self, plan: Plan[Doc | None], app_id: str,
                              keep: int) -> Doc | None:
        """`transact_with_versions` of a plan changing one app, whose result is that app as
        stored after it (None: the app does not exist, e.g. it was deleted)."""
        def keyed(reader: Reader) -> tuple[Transaction, dict[str, Doc | None]]:
            txn, stored = plan(reader)
            return txn, {app_id: stored}

        return self.transact_with_versions(keyed, keep)[app_id]

    def transact_with_versions(self, plan: Plan[dict[str, Doc | None]],
                               keep: int) -> dict[str, Doc | None]:
        """`transact(plan)`, whose result maps each app changed to its document as stored after
        it (None: the app does not exist, e.g. it was deleted); then, with `keep`, each app's
        history follows: the stored app goes into it (`put_app_version`), or a gone app's
        history goes (`delete_app_versions`). A backend that keeps histories in the same
        database does all of it in one transaction (SQLite, ZooKeeper); the default runs them
        one after the other."""
        stored = self.transact(plan)
        for app_id, doc in stored.items():
            if keep and doc is not None:
                self.put_app_version(app_id, doc["version"], doc, keep=keep)
            elif keep:
                self.delete_app_versions(app_id)
        return stored

    @abstractmethod
    def get_deployment(self, deployment_id: str) -> Doc | None: ...

    @abstractmethod
    def list_deployments(self, active_only: bool = True) -> list[Doc]:
        """Deployments in creation order; active ones have status `running`."""

    def update_deployment(self, deployment: Doc) -> bool:
        """Replace a deployment document (the scheduler records progress and completion).

        A deployment already final in the store (cancelled or superseded by the API meanwhile)
        stays as it is and this returns False (True when stored), so the caller can drop the
        events that went with the stale update. Raises StateError for an unknown id."""
        from scheduler import changes

        return self.transact(lambda r: changes.deployment_update(r, deployment))

    def cancel_deployment(self, deployment_id: str) -> Doc:
        """Mark an active deployment `cancelled` (raises StateError if unknown or not active)."""
        from scheduler import changes

        now = iso_now()
        return self.transact(lambda r: changes.cancel_deployment(r, deployment_id, now=now))

    # -- kill requests (written by the API, consumed by the scheduler) -------------------------
    def request_kills(self, task_ids: list[str], *, scale: bool,
                      deployment: Doc | None = None, force: bool = False,
                      events: Callable[[Doc | None], Sequence[Doc]] | Sequence[Doc] = (),
                      history_keep: int = 0) -> Doc | None:
        """Ask the scheduler to kill tasks. With `scale`, the owning apps' `instances` drop by the
        number of their live tasks killed, and `deployment` records that change; like
        `apply_app_change`, a scale of an app locked by a running deployment raises
        DeploymentConflict unless `force` (then that deployment is `superseded`). The rules
        are `scheduler.changes.kill_requests`'s. Returns the deployment's target app as stored
        (None without `scale`); `events` and, with `history_keep`, that app's version history
        entry are written in the same transaction, as `apply_app_change` does."""
        from scheduler import changes

        now = iso_now()
        target = ((deployment or {}).get("target") or {}).get("app")

        def plan(r: Reader) -> tuple[Transaction, Doc | None]:
            txn, stored = changes.kill_requests(
                r, list(task_ids), scale=scale, force=force, now=now,
                deployments=[deployment] if deployment is not None else [])
            app = stored.get(target) if target else None
            extra = tuple(events(app) if callable(events) else events)
            return Transaction(txn.ops, txn.bump_generation, txn.events + extra), app

        if scale and history_keep and target:
            return self.transact_with_version(plan, target, history_keep)
        return self.transact(plan)

    def request_scaling_kills(self, task_ids: list[str], deployments: Sequence[Doc], *,
                              force: bool = False,
                              events: Callable[[Doc | None, Doc], Sequence[Doc]],
                              history_keep: int = 0) -> dict[str, Doc | None]:
        """`request_kills(scale=True)` of the tasks of several apps, all in one transaction:
        each app's scale is recorded by its own deployment among `deployments` (one per app),
        `events(stored, deployment)` and, with `history_keep`, each app's version history
        entry with it. Returns each deployment's target app as stored."""
        from scheduler import changes

        now = iso_now()

        def plan(r: Reader) -> tuple[Transaction, dict[str, Doc | None]]:
            txn, stored = changes.kill_requests(r, list(task_ids), scale=True, force=force,
                                                now=now, deployments=deployments)
            extra = tuple(e for d in deployments
                          for e in events(stored.get(d["target"]["app"]), d))
            return Transaction(txn.ops, txn.bump_generation, txn.events + extra), stored

        if history_keep:
            return self.transact_with_versions(plan, history_keep)
        return self.transact(plan)

    @abstractmethod
    def pending_kill_requests(self) -> list[Doc]:
        """`[{"taskId": ..., "scale": bool, "requestedAt": ...}]`, oldest first."""

    def complete_kill_request(self, task_id: str) -> None:
        self.transact(lambda r: (Transaction((Delete("kill_requests", task_id),)), None))

    # -- delay resets (written by the API, consumed by the scheduler; additive) ------------------
    def request_delay_reset(self, app_id: str) -> Doc:
        """Ask the scheduler to reset an app's launch backoff (`DELETE /v2/queue/{id}/delay`);
        returns the request `{"appId", "requestedAt", "seq"}`. Raises AppNotFound for an unknown
        app. A request still pending for the app is replaced (one per app; `seq` grows with every
        request). Bumps the desired generation. Deleting the app drops its pending request."""
        from scheduler import changes

        now = iso_now()
        return self.transact(lambda r: changes.delay_reset_request(r, app_id, now=now))

    @abstractmethod
    def pending_delay_resets(self) -> list[Doc]:
        """Pending `request_delay_reset` requests, oldest first, each as that method returned it.
        They stay pending until a `put_app_status(..., delay_reset=request)` consumes them."""

    @abstractmethod
    def desired_generation(self) -> int:
        """A counter that grows with every change of desired state."""

    # -- observed state (written by the scheduler) ---------------------------------------------
    def upsert_task(self, task: Doc) -> None:
        """Store a task document keyed by `task["id"]` (Marathon task shape plus `state`)."""
        task_id = task.get("id")
        if not task_id:
            raise StateError("a task needs an 'id'")
        self.transact(lambda r: (Transaction((Put("tasks", task_id, task),)), None))

    @abstractmethod
    def get_task(self, task_id: str) -> Doc | None: ...

    @abstractmethod
    def list_tasks(self, app_id: str | None = None) -> list[Doc]: ...

    def task_records(self, app_id: str | None = None) -> list[TaskRecord] | None:
        """The tasks of `list_tasks`, in its order, as stored: `(task id, app id, revision,
        the document's JSON bytes)`, the revision changing whenever the stored document does
        (readers may keep what they derive from a document per revision). None when the
        backend keeps no such revision: read `list_tasks`."""
        return None

    def delete_task(self, task_id: str) -> None:
        self.transact(lambda r: (Transaction((Delete("tasks", task_id),)), None))

    def put_app_status(self, app_id: str, status: Doc, *, delay_reset: Doc | None = None) -> None:
        """Runtime status of an app: backoff delay, waiting reason, lastTaskFailure, queue.
        Written by the scheduler only (the module docstring says why).

        `delay_reset` (additive): a request from `pending_delay_resets()` that `status` already
        includes; it is consumed in the same transaction as the write. A newer request for the
        app made meanwhile (another `seq`) is not consumed: it stays pending for the next write.
        """
        from scheduler import changes

        self.transact(lambda r: changes.app_status_write(r, app_id, status, delay_reset))

    def delete_app_status(self, app_id: str) -> None:
        """Forget an app's runtime status (the scheduler calls it after a delete)."""
        self.transact(lambda r: (Transaction((Delete("app_status", app_id),)), None))

    @abstractmethod
    def get_app_status(self, app_id: str) -> Doc | None: ...

    @abstractmethod
    def list_app_status(self) -> dict[str, Doc]: ...

    # -- event log ----------------------------------------------------------------------------
    @abstractmethod
    def append_event(self, event_type: str, payload: Doc) -> int:
        """Append an event (Marathon event bus shape: payload gets `eventType` and `timestamp`)."""

    @abstractmethod
    def events_since(self, after_id: int, limit: int = 1000) -> list[tuple[int, Doc]]: ...

    @abstractmethod
    def latest_event_id(self) -> int: ...

    @abstractmethod
    def prune_events(self, keep: int) -> int:
        """Delete all but the newest `keep` events; returns how many went. Ids are never reused,
        so a reader resuming from an older id simply gets what is left."""

    def prune_deployments(self, keep_finished: int) -> int:
        """Delete all but the newest `keep_finished` finished deployments (succeeded, failed,
        cancelled, superseded; running ones are never touched); returns how many went. Every
        change writes one and they were kept for ever (`GET /v2/deployments/{id}` answers any
        status; Marathon keeps none). Here over `transact`, PRUNE_CHUNK deletions per
        transaction (a ZooKeeper `multi` is one packet); a backend may do it its own way
        (SQLite: by creation order, in SQL)."""
        finished = [d["id"] for d in self.list_deployments(active_only=False)
                    if d.get("status", "running") in FINAL_DEPLOYMENT_STATUSES]
        doomed = finished[:max(0, len(finished) - max(0, int(keep_finished)))]
        pruned = 0
        for start in range(0, len(doomed), PRUNE_CHUNK):
            pruned += self.transact(_prune_plan(doomed[start:start + PRUNE_CHUNK]))
        return pruned

    # -- app version history (plain documents; the API decides what to keep) ---------------
    # Optional: a backend that keeps histories overrides these (SQLite through
    # `scheduler.sqlite_versions`, ZooKeeper through `scheduler.zk_versions`). The defaults keep none, so `GET /v2/apps/{id}/versions`
    # lists only the current version there and a rollback can only name that one.
    def put_app_version(self, app_id: str, version: str, doc: Doc, *, keep: int) -> None:
        """Store `doc` as `app_id`'s `version`, keeping only its newest `keep` versions."""
        return None  # kept nowhere (see above)

    def list_app_versions(self, app_id: str) -> list[str]:
        """The app's stored versions, newest first."""
        return []

    def get_app_version(self, app_id: str, version: str) -> Doc | None:
        return None

    def delete_app_versions(self, app_id: str) -> None:
        """Forget the app's history (the app was deleted)."""
        return None

    # -- load balancers' registrations (scheduler.balancer_store; the defaults keep none) -------
    def put_balancer(self, name: str, doc: Doc) -> None:
        return None

    def list_balancers(self) -> list[Doc]:
        return []

    def delete_balancer(self, name: str) -> bool:
        return False

    @abstractmethod
    def close(self) -> None: ...
