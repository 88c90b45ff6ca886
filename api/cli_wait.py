"""`--wait`: following a deployment until it is done *and* the app converged, with a progress bar.

See `DeploymentWaiter` for what "done" means and how failure is recognised.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from api.client import ApiClient, ApiError, CliError, app_path, normalize_id

FAILED_STATES = ("failed", "cancelled", "superseded")
# How often --wait polls the API: often enough that the bar feels live, rare enough that a
# dozen waiting operators do not load the API.
POLL_SECONDS = 0.25

# --------------------------------------------------------------------------------------------
# Progress display for --wait
# --------------------------------------------------------------------------------------------

class Progress:
    """A progress bar on stderr: redrawn in place on a TTY, one line per change on a pipe."""

    WIDTH = 24

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last = ""

    def update(self, fraction: float, text: str) -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        filled = round(fraction * self.WIDTH)
        line = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {text}"
        if line == self.last:
            return
        self.last = line
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.last:
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------------------------------
# Waiting for a deployment
# --------------------------------------------------------------------------------------------

class DeploymentWaiter:
    """Follows one deployment of one app until it is done, failed, or the timeout passes.

    Done means both: the deployment id is no longer listed by `GET /v2/deployments`, and the app
    converged — for a start/scale/restart `tasksRunning == instances` and, when the app has health
    checks, `tasksHealthy == instances`; for a delete the app is gone. Requiring convergence too
    matters because a deployment can end (e.g. superseded or failed) without the app ever getting
    there, and the operator asked to wait for the app, not for bookkeeping.

    A failed, cancelled or superseded deployment is recognised from its `status`, either while it
    is still listed or, once it left the list, from `GET /v2/deployments/<id>` (the API keeps
    finished deployments there); a 404 there means it left no record, i.e. it finished normally.
    """

    def __init__(self, client: ApiClient, app_id: str, deployment_id: str, action: str,
                 timeout: float, progress: Progress,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.app_id = normalize_id(app_id)
        self.deployment_id = deployment_id
        self.deleting = action == "delete"
        self.action = action
        self.timeout = timeout
        self.progress = progress
        self.clock = clock
        self._outcome: dict[str, Any] | None = None

    def run(self) -> None:
        """Returns when done; raises CliError on failure or timeout.

        An API that is briefly unreachable or answers 5xx (a restart, a busy store) does not end
        the wait: the deployment goes on without us, so we keep asking until the deadline."""
        deadline = self.clock() + self.timeout
        fraction = 0.0
        while True:
            try:
                done, fraction, text = self._poll()
            except CliError as exc:
                if not exc.transient:
                    raise
                text = f"API unavailable, retrying: {exc.message}"
                done = False
            self.progress.update(fraction, text)
            if done:
                return
            if self.clock() >= deadline:
                raise CliError(f"timed out after {self.timeout:g}s waiting for deployment "
                               f"{self.deployment_id} of {self.app_id} ({text})")
            time.sleep(POLL_SECONDS)

    def _poll(self) -> tuple[bool, float, str]:
        deployment = self._listed_deployment()
        if deployment is not None:
            self._check_failed(deployment)
        else:
            outcome = self._finished_outcome()
            if outcome is not None:
                self._check_failed(outcome)
        app = self.client.get(app_path(self.app_id), ok_404=True)
        app = app.get("app", app) if isinstance(app, dict) else None
        converged, fraction, text = self._describe(app, deployment)
        return deployment is None and converged, fraction, text

    def _listed_deployment(self) -> dict[str, Any] | None:
        listed = self.client.get("/v2/deployments") or []
        for d in listed:
            if d.get("id") == self.deployment_id:
                return d
        return None

    def _finished_outcome(self) -> dict[str, Any] | None:
        # Asked once: a finished deployment's record does not change any more.
        if self._outcome is None:
            try:
                found = self.client.get(f"/v2/deployments/{self.deployment_id}", ok_404=True)
            except ApiError as exc:
                if exc.status not in (405, 501):
                    raise
                found = None
            self._outcome = found if isinstance(found, dict) else {}
        return self._outcome or None

    def _check_failed(self, deployment: dict[str, Any]) -> None:
        status = deployment.get("status")
        if status in FAILED_STATES:
            why = deployment.get("message") or ""
            raise CliError(f"deployment {self.deployment_id} of {self.app_id} {status}"
                           + (f": {why}" if why else ""))

    def _describe(self, app: dict[str, Any] | None,
                  deployment: dict[str, Any] | None) -> tuple[bool, float, str]:
        """(converged, progress fraction, one-line description) of where the app stands."""
        step = ""
        if deployment is not None:
            actions = ", ".join(str(a.get("action")) for a in deployment.get("currentActions")
                                or [])
            step = (f"; step {deployment.get('currentStep', '?')}/"
                    f"{deployment.get('totalSteps', '?')} {actions}").rstrip()
        else:
            step = "; deployment finished"
        if self.deleting:
            if app is None:
                return True, 1.0, f"{self.app_id} deleted{step}"
            left = int(app.get("tasksRunning", 0)) + int(app.get("tasksStaged", 0))
            return False, 0.0 if left else 0.9, f"{self.app_id}: {left} task(s) left{step}"
        if app is None:
            return False, 0.0, f"{self.app_id} not found{step}"
        want = int(app.get("instances", 0))
        running = int(app.get("tasksRunning", 0))
        checks = bool(app.get("healthChecks"))
        healthy = int(app.get("tasksHealthy", 0))
        converged = running == want and (not checks or healthy == want)
        text = f"{self.app_id}: {running}/{want} running"
        if checks:
            text += f", {healthy}/{want} healthy"
        # While a restart or new definition rolls out, the app's counters include the old
        # tasks (a 1-instance restart is "1/1 running" from the start); the deployment's own
        # progress counts the new version's tasks and the old ones left.
        progress = (deployment or {}).get("progress")
        if isinstance(progress, dict) and self.action in ("restart", "deploy") and \
                (progress.get("old") or progress.get("running", 0) < want):
            running = int(progress.get("running", 0))
            healthy = int(progress.get("healthy", 0))
            text += (f" (new version: {running} running"
                     + (f", {healthy} healthy" if checks else "")
                     + f"; {int(progress.get('old', 0))} old)")
            converged = False
        if want == 0:
            fraction = 1.0 if converged else 0.0
        else:
            # Health counts half when there are checks: running then healthy.
            fraction = (min(running, want) + (min(healthy, want) if checks else
                                              min(running, want))) / (2 * want)
            if not converged:
                fraction = min(fraction, 0.96)  # a full bar only once it is done
        return converged, fraction, text + step


def wait_for(client: ApiClient, app_id: str, deployment_id: str | None, action: str,
             opts: argparse.Namespace) -> None:
    if not deployment_id:
        raise CliError(f"the API did not name a deployment for {action} {app_id}; "
                       "nothing to wait for")
    progress = Progress(sys.stderr)
    # Each poll must come back well within the wait's own timeout.
    client.timeout = min(client.timeout, max(2.0, opts.timeout / 3))
    try:
        DeploymentWaiter(client, app_id, deployment_id, action, opts.timeout, progress).run()
    finally:
        progress.close()


def deployment_id_of(answer: Any) -> str | None:
    """The deployment an API write started: `deploymentId`, or POST's `deployments[0].id`."""
    if not isinstance(answer, dict):
        return None
    if answer.get("deploymentId"):
        return str(answer["deploymentId"])
    deps = answer.get("deployments") or []
    if deps and isinstance(deps[0], dict) and deps[0].get("id"):
        return str(deps[0]["id"])
    return None


