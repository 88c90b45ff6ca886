"""SQLite backend of the quote store: the embedded default (one file, WAL mode).

Layout: one table `quotes(symbol, ts, open, high, low, close, volume, PRIMARY KEY(symbol, ts))
WITHOUT ROWID`, so rows are stored clustered by (symbol, ts): a range read is one index walk and
`last()` one seek.

Invariants:
- the file and table are created when the store is opened (`create=True`, the default); after
  that connections open the file with `mode=rw`, so a removed file is never silently recreated
  empty: it is `StoreUnavailable` until it is back;
- every operation first checks the file (stat + read permission) and reconnects when the file was
  replaced (a different inode), so a restored database is picked up without a restart;
- connections are per (process, thread), made on first use; one inherited through `fork()` is
  never used (nor closed: closing SQLite handles in a forked child is unsafe too);
- each `read_range` stream has its own connection, so it reads one consistent snapshot (WAL lets
  writers go on meanwhile), may be consumed from another thread, and is released when the stream
  is exhausted, closed or garbage-collected.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import islice, starmap
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

from services import sqlite_days
from services.day_buckets import DEFAULT_MARKET_TZ, DaySlicer, MarketDays, day_range
from services.store import (
    MAX_TS_MS,
    MIN_TS_MS,
    Quote,
    QuoteStore,
    StoreUnavailable,
    check_quote,
    check_range,
    check_symbol,
)

WRITE_BATCH = 1000   # rows per executemany/transaction: bounded memory and WAL growth
FETCH_BATCH = 1000   # rows per fetchmany while streaming

_SCHEMA = """
CREATE TABLE IF NOT EXISTS quotes (
    symbol TEXT NOT NULL,
    ts INTEGER NOT NULL,
    open REAL NOT NULL,
    high REAL NOT NULL,
    low REAL NOT NULL,
    close REAL NOT NULL,
    volume INTEGER NOT NULL,
    PRIMARY KEY (symbol, ts)
) WITHOUT ROWID
"""
_COLUMNS = "symbol, ts, open, high, low, close, volume"
_UPSERT = (
    f"INSERT INTO quotes ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (symbol, ts) DO UPDATE SET open = excluded.open, high = excluded.high, "
    "low = excluded.low, close = excluded.close, volume = excluded.volume"
)
_RANGE = (
    f"SELECT {_COLUMNS} FROM quotes WHERE symbol = ? AND ts >= ? AND ts <= ? ORDER BY ts LIMIT ?"
)
_RANGE_ROWS = ("SELECT ts, open, high, low, close, volume FROM quotes "
               "WHERE symbol = ? AND ts >= ? AND ts <= ? ORDER BY ts LIMIT ?")
_LAST = f"SELECT {_COLUMNS} FROM quotes WHERE symbol = ? ORDER BY ts DESC LIMIT 1"
_HAS = "SELECT 1 FROM quotes WHERE symbol = ? LIMIT 1"
# DISTINCT would read every row; this skips from one symbol to the next through the primary key
# (one seek per symbol), which matters with millions of quotes.
_SYMBOLS = """
WITH RECURSIVE s(symbol) AS (
    SELECT MIN(symbol) FROM quotes
    UNION ALL
    SELECT (SELECT MIN(symbol) FROM quotes WHERE symbol > s.symbol) FROM s WHERE s.symbol IS NOT NULL
)
SELECT symbol FROM s WHERE symbol IS NOT NULL
"""

# Connections inherited through fork(): kept referenced so they are never closed in the child.
_INHERITED: list[sqlite3.Connection] = []


class _Local(threading.local):
    pid: int = -1
    generation: int = -1
    inode: tuple[int, int] | None = None
    conn: sqlite3.Connection | None = None


class SQLiteQuoteStore(QuoteStore):
    """Quote store in one SQLite file (see the module docstring for the invariants)."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 5.0,
                 create: bool = True, market_tz: str = DEFAULT_MARKET_TZ) -> None:
        """`timeout`: seconds to wait for a lock held by another writer before giving up
        (`StoreUnavailable`). `create`: create the file and tables now if missing (and build
        the encoded day buckets, `services.sqlite_days`, if the file has none for `market_tz`,
        the zone whose days they are)."""
        self.days = MarketDays(market_tz)
        # A leading "//" (legal in POSIX paths) would read as a URI authority in "file://x".
        self.path = "/" + str(Path(path).absolute()).lstrip("/")
        self.timeout = float(timeout)
        self._local = _Local()
        self._lock = threading.Lock()
        self._generation = 0          # bumped by close(): every thread's connection is stale
        self._conns: list[tuple[int, sqlite3.Connection]] = []   # (pid, conn) to close
        # data_version's own connection, shared by the threads (under its lock) so that its
        # counter is one sequence: (pid, generation, inode, serial, conn).
        self._version_lock = threading.Lock()
        self._version_conn: tuple[int, int, tuple[int, int], int, sqlite3.Connection] | None = None
        self._serials = itertools.count()
        if create:
            self.create_schema()

    @classmethod
    def from_url(cls, url: str) -> SQLiteQuoteStore:
        """`sqlite:///abs/path.db` or `sqlite:relative.db`, optional `?timeout=SECONDS`."""
        parts = urlsplit(url)
        if parts.scheme.lower() != "sqlite" or parts.netloc or not parts.path:
            raise ValueError(f"bad SQLite store URL {url!r}: use sqlite:///abs/path.db or "
                             "sqlite:relative.db")
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        unknown = set(params) - {"timeout", "market_tz"}
        if unknown:
            raise ValueError(f"unknown SQLite store URL parameter(s) {sorted(unknown)}")
        try:
            timeout = float(params.get("timeout", "5"))
        except ValueError:
            raise ValueError(f"timeout must be a number of seconds in {url!r}") from None
        if timeout < 0:
            raise ValueError(f"timeout must be >= 0 in {url!r}")
        # "sqlite:////abs" (SQLAlchemy's absolute form) means the same as "sqlite:///abs".
        path = "/" + parts.path.lstrip("/") if parts.path.startswith("/") else parts.path
        return cls(path, timeout=timeout, market_tz=params.get("market_tz") or DEFAULT_MARKET_TZ)

    def __repr__(self) -> str:
        return f"SQLiteQuoteStore({self.path!r})"

    # -- connections ---------------------------------------------------------------------------
    def _connect(self, mode: str) -> sqlite3.Connection:
        # URI form so `mode=rw` refuses to create a missing file; check_same_thread=False because
        # close() may run in another thread and streams may be handed between threads; each
        # connection is still used by one thread at a time.
        uri = f"file:{quote(self.path)}?mode={mode}"
        conn = sqlite3.connect(uri, uri=True, timeout=self.timeout, isolation_level=None,
                               check_same_thread=False)
        try:
            # NORMAL is durable enough in WAL mode (a power loss may lose the last commits, never
            # corrupts) and avoids an fsync per transaction.
            conn.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            conn.close()
            raise
        with self._lock:
            self._conns.append((os.getpid(), conn))
        return conn

    def _file_identity(self) -> tuple[int, int]:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise StoreUnavailable(f"SQLite store {self.path}: {exc.strerror}") from exc
        if not os.access(self.path, os.R_OK):
            raise StoreUnavailable(f"SQLite store {self.path} is not readable")
        return st.st_dev, st.st_ino

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection to the file as it is now (reconnecting if needed)."""
        local = self._local
        inode = self._file_identity()
        pid = os.getpid()
        if local.conn is not None and local.pid != pid:
            _INHERITED.append(local.conn)
            local.conn = None
        if local.conn is not None and (local.generation != self._generation
                                       or local.inode != inode):
            self._discard(local.conn)
            local.conn = None
        if local.conn is None:
            with _errors(self.path):
                local.conn = self._connect("rw")
            local.pid, local.generation, local.inode = pid, self._generation, inode
        return local.conn

    def _discard(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            self._conns = [(p, c) for p, c in self._conns if c is not conn]
        try:
            conn.close()
        except sqlite3.Error:
            pass

    def _drop_thread_conn(self) -> None:
        # After a failure the connection may point at a file that is gone: start afresh.
        local = self._local
        if local.conn is not None and local.pid == os.getpid():
            self._discard(local.conn)
        local.conn = None

    @contextmanager
    def _use(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        try:
            with _errors(self.path):
                yield conn
        except StoreUnavailable:
            self._drop_thread_conn()
            raise

    # -- QuoteStore ------------------------------------------------------------------------------
    def create_schema(self) -> None:
        """Create the file (WAL mode) and the table if missing; idempotent."""
        with _errors(self.path):
            conn = self._connect("rwc")
            try:
                # journal_mode=WAL is persistent in the file: readers (service workers) and the
                # loader's writer then never block each other.
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(_SCHEMA)
                sqlite_days.ensure(conn, self.days)
            finally:
                self._discard(conn)

    def write(self, quotes: Iterable[Quote]) -> int:
        written = 0
        it = iter(quotes)
        while True:
            # Checked before the batch's transaction starts: a bad quote writes nothing of its batch.
            batch = [_row(check_quote(q)) for q in islice(it, WRITE_BATCH)]
            if not batch:
                return written
            with self._use() as conn:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(_UPSERT, batch)
                    # The days' encoded buckets in the same transaction: never out of step.
                    sqlite_days.refresh(conn, self.days, _day_keys(self.days, batch))
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        try:
                            conn.execute("ROLLBACK")
                        except sqlite3.Error:
                            pass  # the connection is dropped anyway; report the first error
                    raise
            written += len(batch)

    def read_range(self, symbol: str, start_ms: int | None = None, end_ms: int | None = None,
                   *, limit: int | None = None) -> Iterator[Quote]:
        return _Stream(self._range(_RANGE, symbol, start_ms, end_ms, limit))

    def read_range_rows(self, symbol: str, start_ms: int | None = None,
                        end_ms: int | None = None, *, limit: int | None = None,
                        ) -> Iterator[list[tuple]]:
        # Only the columns the caller needs (not the symbol it already knows), as SQLite's own
        # tuples: no Quote per row.
        return self._range(_RANGE_ROWS, symbol, start_ms, end_ms, limit)

    def read_range_encoded(self, symbol: str, start_ms: int | None = None,
                           end_ms: int | None = None, *, limit: int | None = None,
                           ) -> Iterator[bytes] | None:
        """The range as fragments of `/timeseries`' JSON (comma-joined objects with all
        fields), sliced from the encoded day buckets: the same bytes as encoding
        `read_range_rows`. Same contract as `read_range` (the first fragment is read by the call
        itself). None if the file has no buckets for this store's zone (a file replaced by an
        older one): the caller takes the row path."""
        check_symbol(symbol)
        start, end, lim = check_range(start_ms, end_ms, limit)
        start, end, first_day, last_day = day_range(self.days, start, end)
        # A few days (a one-day range touches one or two): read whole on this thread's
        # connection, one statement, so no connection is opened for the stream.
        with self._use() as conn:
            few = sqlite_days.read_few(conn, self.days, symbol, first_day, last_day,
                                       DaySlicer(start, end, lim))
        if few is not sqlite_days.TOO_MANY:
            return None if few is None else iter(few)
        self._file_identity()
        with _errors(self.path):
            conn = self._connect("rw")
        try:
            with _errors(self.path):
                conn.execute("BEGIN")  # one snapshot for the zone check and the buckets
                if sqlite_days.zone_of(conn) != self.days.tz:
                    self._discard(conn)
                    return None
                frags = sqlite_days.read(conn, self.days, symbol, first_day, last_day,
                                         DaySlicer(start, end, lim))
                first = next(frags, None)
        except BaseException:
            self._discard(conn)
            raise
        return _Fragments(self, conn, frags, first)

    def _range(self, sql: str, symbol: str, start_ms: int | None, end_ms: int | None,
               limit: int | None) -> _Pages:
        check_symbol(symbol)
        start, end, lim = check_range(start_ms, end_ms, limit)
        self._file_identity()
        with _errors(self.path):
            conn = self._connect("rw")
        try:
            with _errors(self.path):
                cur = conn.execute(sql, (symbol, MIN_TS_MS if start is None else start,
                                         MAX_TS_MS if end is None else end,
                                         -1 if lim is None else lim))
                first = cur.fetchmany(FETCH_BATCH)
        except BaseException:
            self._discard(conn)
            raise
        return _Pages(self, conn, cur, first)

    def data_version(self) -> tuple[int, int]:
        """(which connection, its `PRAGMA data_version`), from a connection of its own.

        `PRAGMA data_version` changes when any other connection, in this process or another,
        commits to the file; this connection never writes, so every commit counts. Its values
        mean something for this connection only, hence one connection shared by the threads
        (under a lock) and its serial in the token: a replaced file (another inode), a fork or
        `close()` means a new connection, so a new serial. Cost: a stat and one pragma (~5 us).
        """
        inode = self._file_identity()
        pid = os.getpid()
        with self._version_lock:
            held = self._version_conn
            if held is not None and held[0] != pid:
                _INHERITED.append(held[4])     # never closed in a forked child
                held = None
            elif held is not None and (held[1] != self._generation or held[2] != inode):
                self._discard(held[4])
                held = None
            if held is None:
                with _errors(self.path):
                    conn = self._connect("rw")
                held = (pid, self._generation, inode, next(self._serials), conn)
                self._version_conn = held
            try:
                with _errors(self.path):
                    version = held[4].execute("PRAGMA data_version").fetchone()[0]
            except StoreUnavailable:
                self._discard(held[4])
                self._version_conn = None
                raise
            return (held[3], version)

    def last(self, symbol: str) -> Quote | None:
        check_symbol(symbol)
        with self._use() as conn:
            row = conn.execute(_LAST, (symbol,)).fetchone()
        return None if row is None else Quote(*row)

    def has_symbol(self, symbol: str) -> bool:
        check_symbol(symbol)
        with self._use() as conn:
            return conn.execute(_HAS, (symbol,)).fetchone() is not None

    def symbols(self) -> list[str]:
        with self._use() as conn:
            return [r[0] for r in conn.execute(_SYMBOLS)]

    def ping(self) -> None:
        # Reads a page of the table: proves the file is there, readable, and a quote store.
        with self._use() as conn:
            conn.execute("SELECT 1 FROM quotes LIMIT 1").fetchall()

    def close(self) -> None:
        pid = os.getpid()
        with self._lock:
            self._generation += 1
            mine = [c for p, c in self._conns if p == pid]
            self._conns = [(p, c) for p, c in self._conns if p != pid]
        for conn in mine:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._local.conn = None


class _Pages(Iterator[list[tuple]]):
    """Pages (lists of row tuples, never empty) of one range query, holding its own connection
    until exhausted or closed.

    A class rather than a generator: a generator that was never started runs no `finally` when
    dropped, which would leak its connection; `__del__` here always releases it. A page shorter
    than `FETCH_BATCH` is the last: the connection is released as it is handed out.
    """

    def __init__(self, store: SQLiteQuoteStore, conn: sqlite3.Connection, cur: sqlite3.Cursor,
                 first: list[tuple]) -> None:
        self._store: SQLiteQuoteStore | None = store
        self._conn = conn
        self._cur = cur
        self._next: list[tuple] | None = first

    def __next__(self) -> list[tuple]:
        rows = self._next
        self._next = None
        if rows is None:
            if self._store is None:
                raise StopIteration
            try:
                with _errors(self._store.path):
                    rows = self._cur.fetchmany(FETCH_BATCH)
            except BaseException:
                self.close()
                raise
        if len(rows) < FETCH_BATCH:
            self.close()
            if not rows:
                raise StopIteration
        return rows

    def close(self) -> None:
        """Release the connection; the stream then ends. Idempotent."""
        store, self._store = self._store, None
        self._next = None
        if store is not None:
            store._discard(self._conn)

    def __del__(self) -> None:
        self.close()


class _Fragments(Iterator[bytes]):
    """The fragments of one bucketed range read, holding its connection (one snapshot) until
    exhausted or closed; like `_Pages`, a class so that `__del__` always releases it."""

    def __init__(self, store: SQLiteQuoteStore, conn: sqlite3.Connection,
                 frags: Iterator[bytes], first: bytes | None) -> None:
        self._store: SQLiteQuoteStore | None = store
        self._conn = conn
        self._frags = frags
        self._next = first
        if first is None:
            self.close()

    def __next__(self) -> bytes:
        frag, self._next = self._next, None
        if frag is None:
            if self._store is None:
                raise StopIteration
            try:
                with _errors(self._store.path):
                    frag = next(self._frags, None)
            except BaseException:
                self.close()
                raise
            if frag is None:
                self.close()
                raise StopIteration
        return frag

    def close(self) -> None:
        """Release the connection; the stream then ends. Idempotent."""
        store, self._store = self._store, None
        self._next = None
        if store is not None:
            self._frags = iter(())
            store._discard(self._conn)

    def __del__(self) -> None:
        self.close()


class _Stream(Iterator[Quote]):
    """The quotes of `_Pages` of full rows; `close()` releases the connection."""

    def __init__(self, pages: _Pages) -> None:
        self._pages = pages
        self._page: Iterator[Quote] = iter(())

    def __next__(self) -> Quote:
        q = next(self._page, None)
        if q is None:
            self._page = starmap(Quote, next(self._pages))
            q = next(self._page)
        return q

    def close(self) -> None:
        """Release the connection; the stream then ends. Idempotent."""
        self._page = iter(())
        self._pages.close()


def _day_keys(days: MarketDays, rows: list[tuple]) -> set[tuple[str, str]]:
    """(symbol, day) of each of `rows` (`_row` tuples)."""
    by_symbol: dict[str, list[int]] = {}
    for r in rows:
        by_symbol.setdefault(r[0], []).append(r[1])
    return {(sym, day) for sym, stamps in by_symbol.items() for day in days.days_of(stamps)}


def _row(q: Quote) -> tuple:
    return (q.symbol, q.ts, q.open, q.high, q.low, q.close, q.volume)


@contextmanager
def _errors(path: str) -> Iterator[None]:
    """Map SQLite's "cannot use the file" errors to StoreUnavailable.

    OperationalError covers a missing/unopenable file, a lock held past the timeout, I/O errors
    and a missing table; a bare DatabaseError is "file is not a database"/corruption. Integrity
    and programming errors are bugs and stay as they are.
    """
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise StoreUnavailable(f"SQLite store {path}: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        if type(exc) is not sqlite3.DatabaseError:
            raise
        raise StoreUnavailable(f"SQLite store {path}: {exc}") from exc
