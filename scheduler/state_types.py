"""The plain types of the state store (`scheduler.state`): documents, the operations and
transactions a plan returns, the snapshot it reads (`Reader`), and the store's errors. Imported
through `scheduler.state`, which re-exports them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

Doc = dict[str, Any]
# A stored task with its revision (see `StateStore.task_records`).
TaskRecord = tuple[str, str, Any, bytes]

FINAL_DEPLOYMENT_STATUSES = frozenset({"succeeded", "failed", "cancelled", "superseded"})


class StateError(Exception):
    """Base class of the store's own errors."""


class DeploymentConflict(StateError):
    """A change touches an app that a running deployment already changes (Marathon's 409)."""

    def __init__(self, deployment_ids: list[str]) -> None:
        super().__init__(
            "App is locked by one or more deployments. Override with the option '?force=true'. "
            "View details at '/v2/deployments/<DEPLOYMENT_ID>'."
        )
        self.deployment_ids = deployment_ids


class AppNotFound(StateError):
    def __init__(self, app_id: str) -> None:
        super().__init__(f"App '{app_id}' does not exist")
        self.app_id = app_id


class AppExists(StateError):
    def __init__(self, app_id: str) -> None:
        super().__init__(f"An app with id [{app_id}] already exists.")
        self.app_id = app_id


class StoreUnavailable(StateError):
    """The store cannot take writes now (e.g. ZooKeeper has no quorum); nothing was written."""


class NotLeader(StateError):
    """A fenced write by a scheduler that is no longer the leader; nothing was written."""


# -- transactions: what a backend applies ----------------------------------------------------
# Kinds of documents: each is a keyed collection. `meta` holds `framework_id` ({"value": id})
# and the jobs' counters; the `job*` kinds are `scheduler.jobs.documents`'.
Kind = Literal["apps", "deployments", "kill_requests", "delay_resets", "tasks", "app_status",
               "meta", "jobs", "job_status", "job_runs", "job_requests"]
KINDS: tuple[Kind, ...] = ("apps", "deployments", "kill_requests", "delay_resets", "tasks",
                           "app_status", "meta", "jobs", "job_status", "job_runs",
                           "job_requests")


@dataclass(frozen=True)
class Put:
    """Store `doc` under (`kind`, `key`), replacing what is there. A put of an existing
    deployment or kill request keeps its place in creation order."""
    kind: Kind
    key: str
    doc: Doc


@dataclass(frozen=True)
class Delete:
    """Remove (`kind`, `key`) if it exists."""
    kind: Kind
    key: str


Op = Put | Delete


@dataclass(frozen=True)
class Transaction:
    """Operations a backend applies all or none, against the snapshot they were computed from
    (a backend rejects, or recomputes, a transaction whose snapshot changed meanwhile)."""
    ops: tuple[Op, ...] = ()
    bump_generation: bool = False
    # Events appended in the same transaction, each a complete stored event (payload with
    # `eventType` and `timestamp`), in order: a batch of status updates stores its events with
    # the documents they describe.
    events: tuple[Doc, ...] = ()


class Reader(Protocol):
    """The snapshot a transaction is computed from (the reads of `StateStore.transact`)."""

    def app(self, app_id: str) -> Doc | None: ...

    def apps(self) -> list[Doc]:
        """Every stored app (a listing read: a concurrent change of any app conflicts)."""
        ...

    def deployment(self, deployment_id: str) -> Doc | None: ...

    def running_deployments(self, app_ids: set[str]) -> list[Doc]:
        """Running deployments whose `affectedApps` include one of `app_ids`, oldest first."""
        ...

    def task(self, task_id: str) -> Doc | None: ...

    def kill_request(self, task_id: str) -> Doc | None: ...

    def delay_reset(self, app_id: str) -> Doc | None:
        """The app's pending delay-reset request, with its `seq`."""
        ...

    def generation(self) -> int: ...


T = TypeVar("T")
Plan = Callable[[Reader], tuple[Transaction, T]]
# What a change makes of an app as the snapshot holds it: (app or None, deployment), or it raises
# to refuse the change (`apply_app_update`).
Update = Callable[[Doc | None], tuple[Doc | None, Doc | None]]
