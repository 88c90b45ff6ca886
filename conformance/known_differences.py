"""Where a scenario fails today on one cluster, and why: the lane stays green only for these.

Each entry: (scenario, cluster) -> reason naming the issue. A scenario is a test function name,
with its parameters for parametrised ones (`test_deploy_with_health_check[cmd-TCP]`); cluster is
`mesos` (the real Mesos 1.12) or `localmesos`. Listed scenarios run as `xfail(strict=False)`:
the summary table shows each as XFAIL with its reason, or XPASS once it is fixed (then remove the
entry). An unlisted failure fails the lane.
"""

from __future__ import annotations

KNOWN: dict[tuple[str, str], str] = {}


def known(scenario: str, cluster: str) -> str | None:
    return KNOWN.get((scenario, cluster))
