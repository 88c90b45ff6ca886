"""Each agent is a machine with its own loopback address: agent k is 127.0.1.k.

A client that reads a task's `host` from the API must reach the task there, as on a real
cluster; a made-up name (`agent3.localmesos`) resolves to nothing. Linux routes all of 127/8 to
`lo`, so every address below is bindable and reachable without configuration. The address is
the agent's hostname and its IP (offers' `hostname` and `url.address`, the agent's `pid`,
`LIBPROCESS_IP`, `MESOS_AGENT_ENDPOINT`, the tasks' `network_infos`); its HTTP server listens
there, and the checks an agent runs for its tasks probe it (what 127.0.0.1 is on a real agent's
machine). Agents past 254 continue in 127.0.2.x, and so on.
"""

from __future__ import annotations

PER_BLOCK = 254  # .1 … .254 of each 127.0.N.0/24


def agent_address(index: int) -> str:
    """Agent `index` (1-based) → its loopback address: 1 → 127.0.1.1, 255 → 127.0.2.1."""
    if index < 1:
        raise ValueError(f"agent index must be >= 1, got {index}")
    block, host = divmod(index - 1, PER_BLOCK)
    if block >= 254:
        raise ValueError(f"too many agents ({index}): at most {254 * PER_BLOCK}")
    return f"127.0.{block + 1}.{host + 1}"
