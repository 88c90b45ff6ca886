"""Status updates on an agent: one task's updates reach the scheduler in order, one at a time,
each re-sent with backoff until acknowledged (and at once when its framework re-subscribes).
A mixin of `agent.Agent`."""

from __future__ import annotations

import collections
import logging
from typing import Any

from localmesos.model import TERMINAL, Task, make_status, new_uuid_b64

log = logging.getLogger("localmesos.agent")

Key = tuple[str, str]


class StatusUpdates:
    def _update(self, task: Task, state: str, source: str, message: str | None = None,
                reason: str | None = None, healthy: bool | None = None) -> None:
        status = make_status(task.id, state, source, agent_id=self.id, message=message,
                             reason=reason, uuid_b64=new_uuid_b64(),
                             container_status=task.container_status(),
                             executor_id=task.id if task.executor is None else None)
        if healthy is not None:
            status["healthy"] = healthy
        self._accept_status(task, status)

    def _accept_status(self, task: Task, status: dict[str, Any]) -> None:
        task.record(status)
        self.master.task_changed(task)
        key = (task.framework_id, task.id)
        if task.framework_id in self.removed_frameworks:
            if task.terminal:
                self._drop(task)
            return
        q = self.pending.setdefault(key, collections.deque())
        q.append(status)
        if len(q) == 1:
            self._forward(key, self.cluster.opts.status_update_retry)

    def _forward(self, key: Key, interval: float) -> None:
        q = self.pending.get(key)
        if not q:
            return
        old = self.retry.pop(key, None)
        if old is not None:
            old[0].cancel()
        if self.disconnected:
            return  # kept (checkpointed); forwarded once the agent is registered again
        self.master.forward_update(key[0], q[0])
        timer = self.cluster.timers.call_later(interval, self._retry_update, key, q[0]["uuid"])
        self.retry[key] = (timer, interval)

    def _retry_update(self, key: Key, uuid_b64: str) -> None:
        q = self.pending.get(key)
        if not q or q[0]["uuid"] != uuid_b64:
            return
        interval = min(self.retry.get(key, (None, 1.0))[1] * 2, 600.0)
        log.info("re-sending unacknowledged %s of task %s", q[0]["state"], key[1])
        self._forward(key, interval)

    def framework_subscribed(self, fid: str, info: dict[str, Any]) -> None:
        """A framework (re-)subscribed: refresh its info, re-send its pending updates now."""
        if fid in self.framework_infos:
            self.framework_infos[fid] = dict(info)
        for key in [k for k in self.pending if k[0] == fid]:
            self._forward(key, self.cluster.opts.status_update_retry)

    def acknowledge(self, fid: str, tid: str, uuid_b64: str) -> None:
        key = (fid, tid)
        q = self.pending.get(key)
        if not q or q[0]["uuid"] != uuid_b64:
            log.debug("ignoring acknowledgement %s for %s: not the pending update", uuid_b64, tid)
            return
        status = q.popleft()
        timer = self.retry.pop(key, (None, 0.0))[0]
        if timer is not None:
            timer.cancel()
        task = self.tasks.get(key)
        if q:
            self._forward(key, self.cluster.opts.status_update_retry)
        else:
            self.pending.pop(key, None)
            if task is not None and status["state"] in TERMINAL and task.terminal:
                self._drop(task)

    def _drop(self, task: Task) -> None:
        key = (task.framework_id, task.id)
        if self.tasks.get(key) is task:
            del self.tasks[key]
            if task.executor is not None:
                task.executor.tasks.pop(task.id, None)
            self.master.task_removed(task)
