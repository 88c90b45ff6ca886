"""The simulated cluster's shape: nodes (address, datacenter, rack, up/down/unresponsive), the
ring that places each partition's replicas, and the consistency arithmetic a coordinator does.

Node k owns ring position k; a partition's token picks its first position and its replicas are
the next nodes around the ring: the first RF for SimpleStrategy, the first RF of each datacenter
for NetworkTopologyStrategy (as Cassandra walks the ring per datacenter).

Consistency (Cassandra's `ConsistencyLevel.blockFor` and `assureSufficientLiveReplicas`):
ONE/TWO/THREE need that many, QUORUM a majority of all replicas, ALL every one, LOCAL_ONE and
LOCAL_QUORUM count only the coordinator's datacenter, EACH_QUORUM a majority in every
datacenter, ANY one acknowledgement (a hint will do) and is refused for reads.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from tests.services.cql.engine import Table
from tests.services.cql.wire import (
    CONSISTENCY_CODES,
    READ_TIMEOUT,
    UNAVAILABLE,
    WRITE_TIMEOUT,
    CqlError,
    invalid,
    make_type,
    w_int,
    w_short,
    w_string,
)

UP, DOWN, UNRESPONSIVE = "up", "down", "unresponsive"


@dataclass
class Node:
    index: int
    address: str
    datacenter: str
    rack: str
    state: str = UP
    host_id: uuid.UUID = field(default_factory=uuid.uuid4)


def replicas(nodes: list[Node], replication: dict[str, str], tok: bytes) -> list[Node]:
    """The replicas of the partition at ring token `tok`, in ring order."""
    start = int.from_bytes(tok[:4], "big") % len(nodes)
    ring = nodes[start:] + nodes[:start]
    cls = replication.get("class", "").rsplit(".", 1)[-1]
    if cls == "SimpleStrategy":
        return ring[:int(replication["replication_factor"])]
    if cls == "NetworkTopologyStrategy":
        wanted = {dc: int(rf) for dc, rf in replication.items() if dc != "class"}
        out = []
        for node in ring:
            if wanted.get(node.datacenter, 0) > 0:
                wanted[node.datacenter] -= 1
                out.append(node)
        return out
    return [ring[0]]  # LocalStrategy (system keyspaces): the coordinator itself


def replica_groups(cl: str, coordinator: Node, reps: list[Node],
                   replication: dict[str, str]) -> list[tuple[int, list[Node]]]:
    """(replicas needed, the replicas that count for it) for each group `cl` requires."""
    local = coordinator.datacenter
    groups: list[tuple[int, list[Node]]]
    if cl in ("ONE", "TWO", "THREE"):
        groups = [({"ONE": 1, "TWO": 2, "THREE": 3}[cl], reps)]
    elif cl == "QUORUM":
        groups = [(len(reps) // 2 + 1, reps)]
    elif cl == "ALL":
        groups = [(len(reps), reps)]
    elif cl == "LOCAL_ONE":
        groups = [(1, [n for n in reps if n.datacenter == local])]
    elif cl == "LOCAL_QUORUM":
        nts = replication["class"].endswith("NetworkTopologyStrategy")
        rf = int(replication.get(local, 0)) if nts else len(reps)
        groups = [(rf // 2 + 1, [n for n in reps if n.datacenter == local])]
    elif cl == "EACH_QUORUM":
        if not replication["class"].endswith("NetworkTopologyStrategy"):
            groups = [(len(reps) // 2 + 1, reps)]
        else:
            groups = [(int(rf) // 2 + 1, [n for n in reps if n.datacenter == dc])
                      for dc, rf in replication.items() if dc != "class"]
    else:
        raise invalid(f"unknown consistency level {cl}")
    return groups


def block_for(cl: str, coordinator: Node, reps: list[Node], replication: dict[str, str]) -> int:
    """How many replica answers `cl` waits for (Cassandra's blockFor)."""
    if cl == "ANY":
        return 1
    return sum(needed for needed, _ in replica_groups(cl, coordinator, reps, replication))


def check_consistency(cl: str, *, write: bool, coordinator: Node, reps: list[Node],
                      replication: dict[str, str], timeout_write_type: str = "SIMPLE") -> None:
    """Raise what a coordinator answers when `cl` cannot be met by `reps` (a partition's
    replicas): Unavailable (too few up: nothing is tried), or a timeout with the counts of
    replicas that answered (up but unresponsive ones never do)."""
    if cl == "ANY" and not write:
        raise invalid("ANY ConsistencyLevel is only supported for writes")
    if cl in ("SERIAL", "LOCAL_SERIAL"):
        raise invalid(f"{cl} is not supported as conditional update commit consistency. Use "
                      "ANY if you mean \"make sure it is accepted but I don't care how many "
                      "replicas commit it for non-SERIAL reads\"" if write else
                      "test server: serial reads are not supported")
    if cl == "ANY":
        return  # a hint on the coordinator is enough (replayed when a replica is back)
    groups = replica_groups(cl, coordinator, reps, replication)
    code = w_short(CONSISTENCY_CODES[cl])
    for needed, group in groups:
        alive = [n for n in group if n.state != DOWN]
        if len(alive) < needed:
            raise CqlError(UNAVAILABLE, f"Cannot achieve consistency level {cl}",
                           code + w_int(needed) + w_int(len(alive)))
    for needed, group in groups:
        answered = sum(1 for n in group if n.state == UP)
        if answered < needed:
            raise replica_timeout(cl, answered, needed, write=write,
                                  write_type=timeout_write_type)


def replica_timeout(cl: str, received: int, block_for: int, *, write: bool,
                    write_type: str = "SIMPLE") -> CqlError:
    """WriteTimeout / ReadTimeout with the coordinator's counts."""
    code = w_short(CONSISTENCY_CODES.get(cl, 1))
    what = f"Operation timed out - received only {received} responses."
    if write:
        return CqlError(WRITE_TIMEOUT, what, code + w_int(received) + w_int(block_for)
                        + w_string(write_type))
    # data_present: whether the data replica answered (it is among those that did, if any)
    return CqlError(READ_TIMEOUT, what, code + w_int(received) + w_int(block_for)
                    + (b"\x01" if received else b"\x00"))


def system_tables(node: Node, nodes: list[Node], cluster_name: str, port: int,
                  schema_version: uuid.UUID, protocol_version: str) -> dict[str, Table]:
    """system.local (this node), system.peers and system.peers_v2 (the others), as a driver
    reads them on its control connection."""
    t = make_type
    cols = {"data_center": t("text"), "host_id": t("uuid"), "rack": t("text"),
            "release_version": t("text"), "schema_version": t("uuid"),
            "tokens": t("set", (t("text"),))}
    local = Table("system", "local", {
        "key": t("text"), "broadcast_address": t("inet"), "cluster_name": t("text"),
        "cql_version": t("text"), "listen_address": t("inet"),
        "native_protocol_version": t("text"), "partitioner": t("text"),
        "rpc_address": t("inet"), "rpc_port": t("int"), **cols}, ["key"], [], {})
    local.columns = dict(sorted(local.columns.items(), key=lambda kv: kv[0] != "key"))
    peers = Table("system", "peers", {"peer": t("inet"), "preferred_ip": t("inet"),
                                      "rpc_address": t("inet"), **cols}, ["peer"], [], {})
    peers_v2 = Table("system", "peers_v2", {
        "peer": t("inet"), "peer_port": t("int"), "native_address": t("inet"),
        "native_port": t("int"), "preferred_ip": t("inet"), "preferred_port": t("int"),
        **cols}, ["peer"], ["peer_port"], {"peer_port": False})

    def about(n: Node) -> dict:
        return {"data_center": n.datacenter, "host_id": n.host_id, "rack": n.rack,
                "release_version": "4.1.0", "schema_version": schema_version,
                "tokens": [str(n.index)]}

    local.upsert({"key": "local", "broadcast_address": node.address,
                  "cluster_name": cluster_name, "cql_version": "3.4.5",
                  "listen_address": node.address, "native_protocol_version": protocol_version,
                  "partitioner": "org.apache.cassandra.dht.Murmur3Partitioner",
                  "rpc_address": node.address, "rpc_port": port, **about(node)})
    for other in nodes:
        if other is node:
            continue
        peers.upsert({"peer": other.address, "rpc_address": other.address, **about(other)})
        peers_v2.upsert({"peer": other.address, "peer_port": 7000,
                         "native_address": other.address, "native_port": port, **about(other)})
    return {"local": local, "peers": peers, "peers_v2": peers_v2}
