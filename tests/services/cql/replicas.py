"""Each node's own copy of the data: writes reach only the replicas that are up, coordinators
keep hints for the others, and reads merge the replicas they contact and repair them.

As on a real cluster (Apache Cassandra's docs: "Hints", "Read repair"):
- a write goes to every replica of its partition that is up; for one that is down or does not
  answer, the coordinator keeps a hint, unless that replica has been down longer than the hint
  window (`max_hint_window`, 3 h by default). No hint is kept for a write refused as Unavailable
  (the caller never applies such a write);
- hints are replayed when their target is back (and their holder is up): `deliver_hints`;
- a read asks the replicas its consistency level needs (the coordinator first when it is one of
  them, then ring order), merges their cells (highest timestamp wins) and, when they differ,
  writes the merged cells back to the contacted replicas before answering (blocking read repair,
  Cassandra 4's default). ONE and LOCAL_ONE contact one replica: nothing to compare, nothing
  repaired, and a stale replica answers stale data.

`Engine.tables` keeps every write too: what the cluster converges to (for assertions).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tests.services.cql.engine import Table, token
from tests.services.cql.topology import UP, Node, replica_groups, replicas

MAX_HINT_WINDOW = 3 * 3600.0  # cassandra.yaml max_hint_window: 3h

Key = tuple[str, str]  # (keyspace, table)


@dataclass
class Hint:
    holder: int          # the coordinator that keeps it
    target: int          # the replica that missed the write
    table: Key
    row: dict[str, Any]
    timestamp: int


@dataclass
class Repair:
    node: int            # the replica that was written back to
    table: Key
    partition: tuple
    cells: int


@dataclass
class ReplicaData:
    """Per-node copies of the user tables, the coordinators' hints, and what read repair did."""

    max_hint_window: float = MAX_HINT_WINDOW
    copies: dict[int, dict[Key, Table]] = field(default_factory=dict)
    hints: list[Hint] = field(default_factory=list)
    delivered: list[Hint] = field(default_factory=list)
    repairs: list[Repair] = field(default_factory=list)
    down_since: dict[int, float] = field(default_factory=dict)

    def copy(self, node: int, table: Table) -> Table:
        tables = self.copies.setdefault(node, {})
        key = (table.keyspace, table.name)
        if key not in tables:
            tables[key] = Table(table.keyspace, table.name, table.columns, table.partition_key,
                                table.clustering, table.descending)
        return tables[key]

    # -- writes --------------------------------------------------------------------------------
    def write(self, coordinator: Node, reps: list[Node], table: Table, row: dict[str, Any],
              timestamp: int) -> None:
        """`row` at `timestamp` on each replica that is up; a hint for each other one."""
        now = time.monotonic()
        for node in reps:
            if node.state == UP:
                self.copy(node.index, table).upsert(row, timestamp)
            elif now - self.down_since.get(node.index, now) < self.max_hint_window:
                self.hints.append(Hint(coordinator.index, node.index,
                                       (table.keyspace, table.name), dict(row), timestamp))

    def deliver_hints(self, nodes: list[Node], tables: dict[Key, Table]) -> int:
        """Replay every hint whose holder and target are both up; returns how many."""
        kept, done = [], 0
        for hint in self.hints:
            if nodes[hint.holder].state == UP and nodes[hint.target].state == UP:
                self.copy(hint.target, tables[hint.table]).upsert(hint.row, hint.timestamp)
                self.delivered.append(hint)
                done += 1
            else:
                kept.append(hint)
        self.hints = kept
        return done

    # -- reads ---------------------------------------------------------------------------------
    def contacted(self, cl: str, coordinator: Node, reps: list[Node],
                  replication: dict[str, str]) -> list[Node]:
        """The replicas a read at `cl` asks: per group, as many answering ones as it needs, the
        coordinator first (consistency was checked before: there are enough)."""
        if cl == "ANY":  # refused for reads earlier; never asked here
            return []
        ordered = sorted(reps, key=lambda n: n is not coordinator)
        out: list[Node] = []
        for needed, group in replica_groups(cl, coordinator, ordered, replication):
            answering = [n for n in ordered if n in group and n.state == UP]
            out.extend(n for n in answering[:needed] if n not in out)
        return out

    def merged(self, table: Table, partitions: dict[tuple, list[Node]]) -> Table:
        """A table holding, for each partition, the merge of the given replicas' cells; the
        replicas that missed or had older cells are repaired when there are several."""
        view = Table(table.keyspace, table.name, table.columns, table.partition_key,
                     table.clustering, table.descending)
        key = (table.keyspace, table.name)
        for pk, nodes in partitions.items():
            for node in nodes:
                copy = self.copies.get(node.index, {}).get(key)
                if copy is not None and pk in copy.data:
                    _merge_partition(view, copy, pk)
            if len(nodes) > 1 and pk in view.data:
                for node in nodes:
                    fixed = _merge_partition(self.copy(node.index, table), view, pk)
                    if fixed:
                        self.repairs.append(Repair(node.index, key, pk, fixed))
        return view

    def partitions_to_read(self, cl: str, coordinator: Node, nodes: list[Node], table: Table,
                           replication: dict[str, str], pk: tuple | None) -> dict[tuple, list[Node]]:
        """Each partition the read covers (one, or every partition any node holds for a scan)
        with the replicas asked for it."""
        key = (table.keyspace, table.name)
        if pk is not None:
            keys = {pk}
        else:
            keys = {p for tables in self.copies.values() if key in tables
                    for p in tables[key].data}
        return {p: self.contacted(cl, coordinator, replicas(nodes, replication, token(p)),
                                  replication) for p in keys}

    def rows(self, node: int, keyspace: str, table: str) -> list[dict[str, Any]]:
        """Every row node `node` holds of a table, values only (for assertions)."""
        copy = self.copies.get(node, {}).get((keyspace, table))
        if copy is None:
            return []
        return [{c: v for c, (v, _ts) in rows[k].items()}
                for keys, rows in copy.data.values() for k in keys]


def _merge_partition(into: Table, source: Table, pk: tuple) -> int:
    """Upsert every cell of `source`'s partition `pk` into `into`; returns how many changed."""
    keys, rows = source.data[pk]
    changed = 0
    for ck in keys:
        for col, (value, ts) in rows[ck].items():
            target = into.data.get(pk, ([], {}))[1].get(ck, {}).get(col)
            if target == (value, ts):
                continue
            row = dict(zip(into.partition_key, pk, strict=True))
            row.update(zip(into.clustering, ck, strict=True))
            before = target
            into.upsert({**row, col: value}, ts)
            if into.data[pk][1][ck].get(col) != before:
                changed += 1
    return changed
