"""Cassandra backend of the quote store, through the DataStax cassandra-driver.

Schema (`create_schema()`, an explicit call: services do not create keyspaces):

    quotes_by_bucket (symbol text, bucket text, ts timestamp, open double, high double,
                      low double, close double, volume bigint,
                      PRIMARY KEY ((symbol, bucket), ts)) WITH CLUSTERING ORDER BY (ts ASC)
    symbol_buckets   (symbol text, bucket text, PRIMARY KEY (symbol, bucket))
                      WITH CLUSTERING ORDER BY (bucket ASC)

A partition is one symbol's day (or month, `bucket=month`), so partitions stay bounded however
long the series grows. `symbol_buckets` indexes the buckets that exist per symbol: range reads walk
only those between start and end, in order, one query per bucket with the ts bounds; `last()`
reads the newest bucket backwards; `has_symbol()` is one single-partition read; `symbols()` a
DISTINCT scan of the small index table (the only multi-partition query).

Invariants:
- bucket names sort like time: `YYYY-MM-DD` / `YYYY-MM` (zero-padded years), UTC; the granularity
  is fixed for a keyspace's lifetime (the data of a "day" keyspace is not found by a "month" store);
- a quote is never stored without its bucket in `symbol_buckets`: writes upsert the index entries
  before the quotes, so an index entry may at worst point to an empty bucket, which readers skip;
- every statement is prepared, with the URL's consistency level; reads page with `fetch_size`, so a
  range read holds at most one page in memory;
- the Cluster and Session are created lazily in the process that uses them (the driver's event
  loop threads do not survive fork): a store built before gunicorn forks is safe in each worker;
  a failed connection attempt is dropped whole and retried on the next call, and a node that goes
  down is reconnected by the driver (`reconnect_max` caps its backoff), so no restart is needed;
- driver errors meaning "cannot reach / timed out / overloaded" become `StoreUnavailable`;
- a write runs every batch even when some fail, then reports the failures in one
  `StoreUnavailable` (the others were written; writing the same quotes again is safe);
- settings the cluster can never satisfy (a `local_dc` it lacks, a consistency level its
  replication cannot meet; ANY, which Cassandra refuses for reads) are `StoreMisconfigured`
  (a `ValueError`) with the reason, not a stream of Unavailable / NoHostAvailable errors.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from itertools import islice
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from services import cassandra_days
from services.day_buckets import DEFAULT_MARKET_TZ, MarketDays
from services.store import (
    MAX_TS_MS,
    MIN_TS_MS,
    Quote,
    QuoteStore,
    StoreMisconfigured,
    StoreUnavailable,
    check_quote,
    check_range,
    check_symbol,
)

DEFAULT_PORT = 9042
WRITE_CHUNK = 1000       # quotes taken from the iterable at a time (bounded memory)
ROWS_PER_BATCH = 50      # single-partition UNLOGGED batches stay far below batch_size_warn (5 KB)
WRITE_CONCURRENCY = 16   # batches in flight at once
_KNOWN_BUCKETS_MAX = 100_000   # (symbol, bucket) index entries this process knows are written
_EPOCH_NAIVE = datetime(1970, 1, 1)
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}")
_CONSISTENCIES = ("ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM",
                  "LOCAL_ONE")


def bucket_of(ts_ms: int, granularity: str) -> str:
    """The bucket holding `ts_ms`: `YYYY-MM-DD` for "day", `YYYY-MM` for "month" (UTC)."""
    d = _EPOCH_NAIVE + timedelta(milliseconds=ts_ms)
    # f-string rather than strftime: strftime does not zero-pad years < 1000 on glibc.
    return f"{d.year:04d}-{d.month:02d}" if granularity == "month" else \
        f"{d.year:04d}-{d.month:02d}-{d.day:02d}"


def _ms(dt: datetime) -> int:
    # The driver decodes `timestamp` as a naive UTC datetime; integer arithmetic keeps it exact.
    return (dt - _EPOCH_NAIVE) // timedelta(milliseconds=1)


class CassandraQuoteStore(QuoteStore):
    """Quote store in a Cassandra keyspace (see the module docstring for schema and invariants)."""

    def __init__(self, contact_points: list[tuple[str, int]], keyspace: str, *,
                 consistency: str = "LOCAL_QUORUM", username: str | None = None,
                 password: str | None = None, bucket: str = "day",
                 connect_timeout: float = 5.0, request_timeout: float = 5.0,
                 replication: str = "1", fetch_size: int = 5000, local_dc: str | None = None,
                 protocol_version: int | None = None, reconnect_max: float = 10.0,
                 market_tz: str = DEFAULT_MARKET_TZ) -> None:
        """See `from_url` for the meaning of each option; nothing connects here."""
        self.days = MarketDays(market_tz)
        self._days_prepared: tuple[Any, dict[str, Any]] | None = None  # (session, statements)
        self._days_ready: Any = None    # the session that saw the buckets built for our zone
        if not contact_points:
            raise ValueError("at least one contact point is needed")
        if not _IDENT.fullmatch(keyspace):
            raise ValueError(f"keyspace must match {_IDENT.pattern}, got {keyspace!r}")
        if consistency.upper() not in _CONSISTENCIES:
            raise ValueError(f"consistency must be one of {_CONSISTENCIES}, got {consistency!r}")
        if consistency.upper() == "ANY":
            # Cassandra refuses ANY for reads, and the store reads with the same level.
            raise ValueError("consistency ANY is for writes only (Cassandra refuses it for "
                             "reads, and the store reads with the same level); use ONE or more")
        if bucket not in ("day", "month"):
            raise ValueError(f"bucket must be day or month, got {bucket!r}")
        if (username is None) != (password is None):
            raise ValueError("username and password go together")
        if connect_timeout <= 0 or request_timeout <= 0 or fetch_size <= 0 or reconnect_max <= 0:
            raise ValueError("timeouts, fetch_size and reconnect_max must be > 0")
        self.contact_points = list(contact_points)
        self.keyspace = keyspace.lower()  # unquoted CQL identifiers are case-insensitive
        self.consistency = consistency.upper()
        self.username, self.password = username, password
        self.bucket = bucket
        self.connect_timeout, self.request_timeout = connect_timeout, request_timeout
        self.replication = _replication(replication)
        self.fetch_size = fetch_size
        self.local_dc = local_dc
        self.protocol_version = protocol_version
        self.reconnect_max = reconnect_max
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._cluster: Any = None
        self._session: Any = None
        self._prepared: dict[str, Any] | None = None
        self._known_buckets: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._known_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> CassandraQuoteStore:
        """`cassandra://h1[:port],h2[:port]/keyspace?option=value&...`

        Options: consistency (LOCAL_QUORUM), username + password (or `user:pass@` in the URL),
        bucket (day|month), connect_timeout / request_timeout (seconds, 5), replication (a
        replication factor for SimpleStrategy, or `dc1:3,dc2:3` for NetworkTopologyStrategy;
        used by create_schema only), fetch_size (rows per page, 5000), local_dc,
        protocol_version (default: negotiated), reconnect_max (seconds between reconnection
        attempts at most, 10), market_tz (the zone whose days the encoded buckets are,
        `services.cassandra_days`; America/New_York; fixed for a keyspace's lifetime).
        """
        parts = urlsplit(url)
        if parts.scheme.lower() != "cassandra":
            raise ValueError(f"not a cassandra:// URL: {url!r}")
        netloc = parts.netloc
        username = password = None
        if "@" in netloc:
            userinfo, netloc = netloc.rsplit("@", 1)
            username, _, password = (unquote(x) for x in userinfo.partition(":"))
        points = []
        for hp in filter(None, netloc.split(",")):
            host, sep, port = hp.rpartition(":") if not hp.endswith("]") else (hp, "", "")
            if not sep:
                host, port = hp, str(DEFAULT_PORT)
            host = host.strip("[]")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"bad contact point {hp!r} in {url!r}")
            points.append((host, int(port)))
        keyspace = parts.path.strip("/")
        if not points or not keyspace:
            raise ValueError(f"bad Cassandra store URL {url!r}: need hosts and a /keyspace")
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        known = {"consistency", "username", "password", "bucket", "connect_timeout",
                 "request_timeout", "replication", "fetch_size", "local_dc", "protocol_version",
                 "reconnect_max", "market_tz"}
        if set(params) - known:
            raise ValueError(f"unknown Cassandra store URL parameter(s) {sorted(set(params) - known)}")

        def num(name: str, default: float, kind: type = float) -> Any:
            try:
                return kind(params[name]) if name in params else default
            except ValueError:
                raise ValueError(f"{name} must be a number in {url!r}") from None

        pv = params.get("protocol_version") or None
        if pv is not None and not pv.isdigit():
            raise ValueError(f"protocol_version must be an int in {url!r}")
        return cls(points, keyspace,
                   consistency=params.get("consistency", "LOCAL_QUORUM"),
                   username=params.get("username", username),
                   password=params.get("password", password),
                   bucket=params.get("bucket", "day"),
                   connect_timeout=num("connect_timeout", 5.0),
                   request_timeout=num("request_timeout", 5.0),
                   replication=params.get("replication", "1"),
                   fetch_size=num("fetch_size", 5000, int),
                   local_dc=params.get("local_dc") or None,
                   protocol_version=None if pv is None else int(pv),
                   reconnect_max=num("reconnect_max", 10.0),
                   market_tz=params.get("market_tz") or DEFAULT_MARKET_TZ)

    def __repr__(self) -> str:
        hosts = ",".join(f"{h}:{p}" for h, p in self.contact_points)
        return f"CassandraQuoteStore({hosts}/{self.keyspace})"

    # -- connection ------------------------------------------------------------------------------
    def _new_cluster(self) -> Any:
        _quiet_shutdown_race()
        from cassandra import ConsistencyLevel
        from cassandra.auth import PlainTextAuthProvider
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.connection import DefaultEndPoint
        from cassandra.policies import DCAwareRoundRobinPolicy, ExponentialReconnectionPolicy
        from cassandra.query import tuple_factory

        profile = ExecutionProfile(
            load_balancing_policy=DCAwareRoundRobinPolicy(local_dc=self.local_dc),
            consistency_level=getattr(ConsistencyLevel, self.consistency),
            request_timeout=self.request_timeout,
            row_factory=tuple_factory,
        )
        kwargs: dict[str, Any] = {}
        if self.protocol_version is not None:
            kwargs["protocol_version"] = self.protocol_version
        if self.username is not None:
            kwargs["auth_provider"] = PlainTextAuthProvider(self.username, self.password)
        return Cluster(
            # EndPoints rather than host names: each contact point keeps its own port. Peers
            # discovered later use `port` (the first contact point's).
            contact_points=[DefaultEndPoint(h, p) for h, p in self.contact_points],
            port=self.contact_points[0][1],
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            connect_timeout=self.connect_timeout, control_connection_timeout=self.connect_timeout,
            # The store needs neither schema nor token metadata (it prepares its statements), and
            # skipping them keeps the control connection cheap. The cost: no token-aware routing.
            schema_metadata_enabled=False, token_metadata_enabled=False,
            reconnection_policy=ExponentialReconnectionPolicy(0.25, self.reconnect_max),
            **kwargs,
        )

    def _get_session(self) -> Any:
        """This process's session, connecting on first use (and again after a failed attempt)."""
        pid = os.getpid()
        if self._pid == pid and self._session is not None:
            return self._session
        with self._lock:
            if self._pid != pid:
                # Inherited through fork: the driver's threads and sockets belong to the parent.
                # Shutting it down here could hang on those threads; just let it go.
                self._cluster = self._session = self._prepared = None
                self._pid = pid
            if self._session is None:
                cluster = self._new_cluster()
                try:
                    try:
                        with _mapped():
                            session = cluster.connect()
                    except StoreUnavailable:
                        # A local_dc the cluster lacks leaves the driver no host to open a
                        # session on ("Unable to connect to any servers"): say why instead.
                        self._check_datacenter(cluster)
                        raise
                    self._check_datacenter(cluster)
                except BaseException:
                    cluster.shutdown()
                    raise
                self._session = session
                self._session.default_fetch_size = self.fetch_size
                self._cluster = cluster
            return self._session

    def _check_datacenter(self, cluster: Any) -> None:
        """A `local_dc` the cluster does not have leaves the driver no host to query (every
        request would fail with NoHostAvailable): refuse it once, by name."""
        datacenters = {h.datacenter for h in cluster.metadata.all_hosts() if h.datacenter}
        if self.local_dc is not None and self.local_dc not in datacenters:
            raise StoreMisconfigured(
                f"{self!r}: local_dc {self.local_dc!r} is not a datacenter of this cluster "
                f"(it has {', '.join(sorted(datacenters)) or 'none'})")

    def _local_datacenter(self) -> str | None:
        if self.local_dc is not None:
            return self.local_dc
        from cassandra.cluster import EXEC_PROFILE_DEFAULT

        policy = self._cluster.profile_manager.profiles[EXEC_PROFILE_DEFAULT] \
            .load_balancing_policy
        return getattr(policy, "local_dc", None)

    def check_configuration(self) -> None:
        """Connect, then check the datacenter and that the keyspace's replication can ever meet
        the consistency level (a keyspace not created yet is not checked)."""
        session = self._get_session()
        with _mapped():
            row = session.execute("SELECT replication FROM system_schema.keyspaces WHERE "
                                  "keyspace_name = %s", (self.keyspace,),
                                  timeout=self.request_timeout).one()
        if row is None:
            return
        replication = dict(row[0])
        strategy = replication.pop("class", "").rsplit(".", 1)[-1]
        if strategy == "NetworkTopologyStrategy":
            per_dc = {dc: int(rf) for dc, rf in replication.items()}
        else:
            per_dc = None
        total = sum(per_dc.values()) if per_dc is not None else \
            int(replication.get("replication_factor", 1))
        need = {"ONE": 1, "TWO": 2, "THREE": 3}.get(self.consistency, 1)
        if total < need:
            raise StoreMisconfigured(
                f"{self!r}: consistency {self.consistency} needs {need} replicas, but keyspace "
                f"{self.keyspace} has a replication factor of {total}: no write or read could "
                "ever succeed")
        local = self._local_datacenter()
        if self.consistency.startswith("LOCAL_") and per_dc is not None and \
                per_dc.get(local or "", 0) == 0:
            raise StoreMisconfigured(
                f"{self!r}: consistency {self.consistency} counts replicas in the local "
                f"datacenter {local!r}, where keyspace {self.keyspace} has none "
                f"(its replication: {per_dc}); set local_dc or the replication")

    def _statements(self) -> dict[str, Any]:
        """Prepared statements (prepared once per session; retried if the schema was missing)."""
        session = self._get_session()
        prepared = self._prepared
        if prepared is not None:
            return prepared
        ks = self.keyspace
        cols = "symbol, ts, open, high, low, close, volume"
        texts = {
            "insert": f"INSERT INTO {ks}.quotes_by_bucket (symbol, bucket, ts, open, high, low, "
                      "close, volume) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            "index": f"INSERT INTO {ks}.symbol_buckets (symbol, bucket) VALUES (?, ?)",
            "range": f"SELECT {cols} FROM {ks}.quotes_by_bucket WHERE symbol = ? AND bucket = ? "
                     "AND ts >= ? AND ts <= ? LIMIT ?",
            "last_in": f"SELECT {cols} FROM {ks}.quotes_by_bucket WHERE symbol = ? AND bucket = ? "
                       "ORDER BY ts DESC LIMIT 1",
            "buckets": f"SELECT bucket FROM {ks}.symbol_buckets WHERE symbol = ? AND bucket >= ? "
                       "AND bucket <= ?",
            "buckets_desc": f"SELECT bucket FROM {ks}.symbol_buckets WHERE symbol = ? "
                            "ORDER BY bucket DESC",
            "has": f"SELECT bucket FROM {ks}.symbol_buckets WHERE symbol = ? LIMIT 1",
            "symbols": f"SELECT DISTINCT symbol FROM {ks}.symbol_buckets",
        }
        from cassandra import InvalidRequest

        try:
            with _mapped():
                prepared = {name: session.prepare(text) for name, text in texts.items()}
        except InvalidRequest as exc:
            # Keyspace/tables not created yet: unavailable until create_schema() runs somewhere;
            # then the next call prepares again and the service recovers without a restart.
            raise StoreUnavailable(f"{self!r}: schema missing ({exc}); run create_schema()") from exc
        with self._lock:
            if self._session is session:
                self._prepared = prepared
        return prepared

    def _execute(self, name: str, params: tuple, fetch_size: int | None = None) -> Any:
        stmt = self._statements()[name]
        with _mapped():
            if fetch_size is not None:
                # bind() gives a BoundStatement of our own; the shared prepared one stays intact.
                bound = stmt.bind(params)
                bound.fetch_size = fetch_size
                return self._get_session().execute(bound)
            return self._get_session().execute(stmt, params)

    # -- QuoteStore ------------------------------------------------------------------------------
    def create_schema(self) -> None:
        """CREATE KEYSPACE / TABLEs IF NOT EXISTS (idempotent), then prepare the statements."""
        session = self._get_session()
        ks = self.keyspace
        ddl = [
            f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {self.replication} "
            "AND durable_writes = true",
            f"CREATE TABLE IF NOT EXISTS {ks}.quotes_by_bucket (symbol text, bucket text, "
            "ts timestamp, open double, high double, low double, close double, volume bigint, "
            "PRIMARY KEY ((symbol, bucket), ts)) WITH CLUSTERING ORDER BY (ts ASC)",
            f"CREATE TABLE IF NOT EXISTS {ks}.symbol_buckets (symbol text, bucket text, "
            "PRIMARY KEY (symbol, bucket)) WITH CLUSTERING ORDER BY (bucket ASC)",
            *cassandra_days.ddl(ks),
        ]
        with _mapped():
            for text in ddl:
                # DDL waits for schema agreement across nodes: allow more than a query's timeout.
                session.execute(text, timeout=max(self.request_timeout, 30.0))
        with self._lock:
            self._prepared = None
        self._statements()
        cassandra_days.ensure(self)   # the encoded day buckets of data written before them

    def write(self, quotes: Iterable[Quote]) -> int:
        from cassandra.concurrent import execute_concurrent
        from cassandra.query import BatchStatement, BatchType

        written = 0
        it = iter(quotes)
        while True:
            chunk = [check_quote(q) for q in islice(it, WRITE_CHUNK)]
            if not chunk:
                return written
            st = self._statements()
            session = self._get_session()
            # Keyed by ts within a partition: the last of duplicate quotes wins. Cassandra gives
            # every statement of a batch the same write timestamp and breaks such ties by cell
            # value, not by order, so duplicates must not reach one batch.
            partitions: dict[tuple[str, str], dict[int, Quote]] = {}
            for q in chunk:
                partitions.setdefault((q.symbol, bucket_of(q.ts, self.bucket)), {})[q.ts] = q
            with self._known_lock:
                new_keys = [k for k in partitions if k not in self._known_buckets]
            # Index first: a quote must never be stored in a bucket readers cannot find.
            if new_keys:
                self._run_concurrent(execute_concurrent, session,
                                     [(st["index"], key) for key in new_keys])
                with self._known_lock:  # a bounded FIFO: forgetting only costs a rewrite
                    for key in new_keys:
                        self._known_buckets[key] = None
                    while len(self._known_buckets) > _KNOWN_BUCKETS_MAX:
                        self._known_buckets.popitem(last=False)
            batches = []
            for (symbol, bucket), by_ts in partitions.items():
                rows = list(by_ts.values())
                for i in range(0, len(rows), ROWS_PER_BATCH):
                    # Single-partition UNLOGGED batch: applied atomically by one replica set,
                    # no batchlog; multi-partition batches would only add coordinator load.
                    batch = BatchStatement(batch_type=BatchType.UNLOGGED)
                    for q in rows[i:i + ROWS_PER_BATCH]:
                        batch.add(st["insert"], (symbol, bucket, q.ts, q.open, q.high, q.low,
                                                 q.close, q.volume))
                    batches.append((batch, ()))
            self._run_concurrent(execute_concurrent, session, batches)
            # Then the touched days' encoded buckets, from the rows as stored.
            cassandra_days.refresh(self, {(symbol, day) for (symbol, _), by_ts in
                                          partitions.items()
                                          for day in self.days.days_of(by_ts)})
            written += len(chunk)

    @staticmethod
    def _run_concurrent(execute_concurrent: Any, session: Any, items: list) -> None:
        """Run every statement, even after one failed, then report the failures together: the
        caller learns how much of its write is missing, and a retry of the same quotes is safe
        (upserts of the same cells; nothing is removed)."""
        results = execute_concurrent(session, items, concurrency=WRITE_CONCURRENCY,
                                     raise_on_first_error=False, results_generator=False)
        failures = [result for ok, result in results if not ok]
        if not failures:
            return
        transient = _unavailable_errors()
        fatal = [f for f in failures if not isinstance(f, transient)]
        if fatal:  # a bug or configuration error: raised as itself
            raise fatal[0]
        first = failures[0]
        raise StoreUnavailable(
            f"Cassandra write incomplete: {len(failures)} of {len(items)} statements failed "
            f"(first: {type(first).__name__}: {first}); the others were written. Writing the "
            "same quotes again is safe.") from first

    def read_range(self, symbol: str, start_ms: int | None = None, end_ms: int | None = None,
                   *, limit: int | None = None) -> Iterator[Quote]:
        check_symbol(symbol)
        start, end, lim = check_range(start_ms, end_ms, limit)
        start = MIN_TS_MS if start is None else start
        end = MAX_TS_MS if end is None else end
        # The bucket listing and the first row are fetched now: an unreachable store (or the
        # replicas of the first bucket) fails the call itself, before a caller starts answering.
        buckets = self._execute("buckets", (symbol, bucket_of(start, self.bucket),
                                            bucket_of(end, self.bucket)))
        walk = self._walk(symbol, buckets, start, end, lim)
        try:
            first = next(walk)
        except StopIteration:
            return iter(())
        return _chain_first(first, walk)

    def read_range_encoded(self, symbol: str, start_ms: int | None = None,
                           end_ms: int | None = None, *, limit: int | None = None,
                           ) -> Iterator[bytes] | None:
        check_symbol(symbol)
        start, end, lim = check_range(start_ms, end_ms, limit)
        return cassandra_days.read(self, symbol, start, end, lim)

    def _walk(self, symbol: str, buckets: Any, start: int, end: int,
              limit: int | None) -> Iterator[Quote]:
        left = limit
        with _mapped():
            for (bucket,) in buckets:  # pages of the index are fetched as the walk goes on
                if left == 0:
                    return
                # LIMIT must be > 0 in CQL; "no limit" is the largest int it takes.
                rows = self._execute("range", (symbol, bucket, start, end,
                                               min(left, 2**31 - 1) if left else 2**31 - 1))
                for row in rows:  # iterating a ResultSet fetches the next page when needed
                    yield Quote(row[0], _ms(row[1]), *row[2:])
                    if left is not None:
                        left -= 1
                        if left == 0:
                            return

    def last(self, symbol: str) -> Quote | None:
        check_symbol(symbol)
        with _mapped():
            # Newest bucket first; an index entry whose quotes failed to land is skipped. Small
            # pages: almost always the first bucket answers.
            for (bucket,) in self._execute("buckets_desc", (symbol,), fetch_size=4):
                rows = self._execute("last_in", (symbol, bucket)).all()
                if rows:
                    row = rows[0]
                    return Quote(row[0], _ms(row[1]), *row[2:])
        return None

    def has_symbol(self, symbol: str) -> bool:
        check_symbol(symbol)
        return bool(self._execute("has", (symbol,)).all())

    def symbols(self) -> list[str]:
        with _mapped():
            return sorted(row[0] for row in self._execute("symbols", ()))

    def ping(self) -> None:
        """Reachability only (a system.local read, so it works before create_schema())."""
        session = self._get_session()
        with _mapped():
            session.execute("SELECT release_version FROM system.local WHERE key = 'local'",
                            timeout=self.request_timeout)

    def close(self) -> None:
        with self._lock:
            cluster = self._cluster if self._pid == os.getpid() else None
            self._cluster = self._session = self._prepared = None
        if cluster is not None:
            cluster.shutdown()


class _ShutdownRaceFilter(logging.Filter):
    """One line instead of a traceback for the driver's shutdown race.

    When a process exits (a gunicorn worker stopping) while the driver is bringing a node back
    up (a reconnection after a node outage), the driver's `on_up` submits to its executor after
    `Cluster.shutdown()` closed it, and logs the RuntimeError with its traceback, twice. Nothing
    is lost (the process is going away); the traceback would only look like a crash in the log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        # Python words it "after shutdown" (the executor was shut down) or "after interpreter
        # shutdown" (the process is exiting): the same race.
        if isinstance(exc, RuntimeError) and "cannot schedule new futures after" in str(exc):
            record.msg = f"{record.getMessage()} RuntimeError: {exc} (shutting down; ignored)"
            record.args = None
            record.exc_info = record.exc_text = None
        return True


def _quiet_shutdown_race() -> None:
    for name in ("cassandra.cluster", "cassandra.pool"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _ShutdownRaceFilter) for f in logger.filters):
            logger.addFilter(_ShutdownRaceFilter())


def _chain_first(first: Quote, rest: Iterator[Quote]) -> Iterator[Quote]:
    """`first`, then `rest`; closing it closes `rest` (a stream given up stops fetching)."""
    try:
        yield first
        yield from rest
    finally:
        rest.close()  # type: ignore[attr-defined]


def _replication(spec: str) -> str:
    """The CQL replication map for `spec`: "3" → SimpleStrategy, "dc1:3,dc2:2" → NTS."""
    spec = str(spec).strip()
    if spec.isdigit() and int(spec) > 0:
        return f"{{'class': 'SimpleStrategy', 'replication_factor': {int(spec)}}}"
    dcs = {}
    for part in spec.split(","):
        dc, _, rf = part.partition(":")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", dc.strip()) or not rf.strip().isdigit():
            raise ValueError(f"replication must be N or dc1:N,dc2:M, got {spec!r}")
        dcs[dc.strip()] = int(rf)
    return "{'class': 'NetworkTopologyStrategy', " + ", ".join(
        f"'{dc}': {rf}" for dc, rf in dcs.items()) + "}"


class _mapped:
    """Context manager turning the driver's "cannot reach / timed out" errors into StoreUnavailable.

    Other driver errors (InvalidRequest, SyntaxException, ...) are bugs or configuration errors
    and pass through unchanged.
    """

    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> bool:
        if exc is None or isinstance(exc, StoreUnavailable):
            return False
        if isinstance(exc, _unavailable_errors()):
            raise StoreUnavailable(f"Cassandra unavailable: {type(exc).__name__}: {exc}") from exc
        return False


_UNAVAILABLE: tuple[type[BaseException], ...] | None = None


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    global _UNAVAILABLE
    if _UNAVAILABLE is None:
        from cassandra import (
            AuthenticationFailed,
            CoordinationFailure,
            OperationTimedOut,
            ReadTimeout,
            Unavailable,
            WriteTimeout,
        )
        from cassandra.cluster import NoHostAvailable
        from cassandra.connection import ConnectionException
        from cassandra.protocol import (
            IsBootstrappingErrorMessage,
            OverloadedErrorMessage,
            ServerError,
        )

        # CoordinationFailure covers ReadFailure/WriteFailure; ServerError is included because a
        # coordinator answers it for transient internal failures (e.g. during a node restart).
        _UNAVAILABLE = (NoHostAvailable, OperationTimedOut, Unavailable, ReadTimeout,
                        WriteTimeout, CoordinationFailure, ConnectionException,
                        OverloadedErrorMessage, IsBootstrappingErrorMessage, ServerError,
                        AuthenticationFailed)
    return _UNAVAILABLE
