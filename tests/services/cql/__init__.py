"""A CQL native-protocol test cluster, used the way DataStax's Simulacron is used: the real
cassandra-driver connects to it on loopback addresses and runs the store's statements against an
in-memory engine, while tests look at every request, stop, pause and restart nodes, and inject
faults.

Modules, one stage each:
- `wire`: frames, the spec's notation, value types, v5 segments;
- `parser`, `statements`: the CQL subset, parsed for real and checked against the schema;
- `engine`: keyspaces, tables, cells with write timestamps (highest wins, ties to the greater
  value), reads in key order with positions;
- `topology`: nodes, replicas on the ring, consistency levels;
- `protocol`: v4/v5 request and result bodies, paging state as a key position;
- `transport`: a connection's state and frames (v4 framing or v5 segments);
- `replicas`: each node's own copy of the data, hints, reads merged across replicas, read repair;
- `coordinator`: faults, consistency against the replicas, execution, paging, batches;
- `server`: `CqlTestServer`: nodes' lifecycle, connections, the handshake, events, test hooks.
"""

from tests.services.cql.protocol import Request
from tests.services.cql.server import FAULTS, CqlTestServer

__all__ = ["FAULTS", "CqlTestServer", "Request"]
