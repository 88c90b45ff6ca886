"""Statements parsed against a schema: CREATE KEYSPACE/TABLE, USE, INSERT, SELECT, with the
rules of Cassandra that matter to a client (whole partition key restricted, no filtering on
regular columns, ORDER BY on the first clustering column, known columns)."""

from __future__ import annotations

from collections.abc import Callable

from tests.services.cql.engine import Table
from tests.services.cql.parser import Condition, Parser, Statement
from tests.services.cql.wire import INT, SYNTAX_ERROR, CqlError, CqlType
from tests.services.cql.wire import invalid as _invalid


class StatementParser:
    """Parses CQL with table lookups through `lookup(keyspace, table)` (None: no such table)."""

    def __init__(self, lookup: Callable[[str, str], Table | None],
                 keyspace_exists: Callable[[str], bool]) -> None:
        self.lookup = lookup
        self.keyspace_exists = keyspace_exists

    def parse(self, cql: str, current_ks: str | None) -> Statement:
        p = Parser(cql)
        if p.accept("use"):
            ks = p.ident()
            p.end()
            return Statement("use", cql, keyspace=ks)
        if p.accept("create"):
            what = p.expect("keyspace", "table")
            ine = False
            if p.accept("if"):
                p.expect("not")
                p.expect("exists")
                ine = True
            if what == "keyspace":
                ks = p.ident()
                p.expect("with")
                p.expect("replication")
                p.expect("=")
                replication = p.string_map()
                if p.accept("and"):
                    p.expect("durable_writes")
                    p.expect("=")
                    p.expect("true", "false")
                p.end()
                return Statement("create_keyspace", cql, keyspace=ks, if_not_exists=ine,
                                 replication=replication)
            return self._parse_create_table(p, cql, current_ks, ine)
        if p.accept("insert"):
            p.expect("into")
            st = Statement("insert", cql)
            st.keyspace, st.table = p.qname()
            table = self._table(st, current_ks)
            p.expect("(")
            st.columns = [p.ident()]
            while p.accept(","):
                st.columns.append(p.ident())
            p.expect(")")
            p.expect("values")
            p.expect("(")
            st.terms = [p.term()]
            while p.accept(","):
                st.terms.append(p.term())
            p.expect(")")
            if p.peek("if"):  # the quote store's writes are idempotent upserts: no Paxos here
                raise _invalid("test server: lightweight transactions (INSERT ... IF) are not "
                               "simulated; services/cassandra_store.py does not use them")
            p.end()
            if len(st.terms) != len(st.columns):
                raise _invalid("Unmatched column names/values")
            for col, term in zip(st.columns, st.terms, strict=True):
                self._column(table, col)
                if term.marker is not None:
                    st.bind.append((col, table.columns[col]))
            missing = [c for c in table.partition_key + table.clustering if c not in st.columns]
            if missing:
                raise _invalid(f"Some partition key parts are missing: {', '.join(missing)}"
                               if set(missing) & set(table.partition_key)
                               else f"Some clustering keys are missing: {', '.join(missing)}")
            return st
        if p.accept("select"):
            return self._parse_select(p, cql, current_ks)
        raise CqlError(SYNTAX_ERROR, f"statement not supported by the test server: {cql[:80]!r}")

    def _parse_create_table(self, p: Parser, cql: str, current_ks: str | None,
                            ine: bool) -> Statement:
        ks, name = p.qname()
        ks = ks or current_ks
        if ks is None:
            raise _invalid("No keyspace has been specified.")
        p.expect("(")
        cols: dict[str, CqlType] = {}
        pk: list[str] = []
        ck: list[str] = []
        while True:
            if p.accept("primary"):
                p.expect("key")
                p.expect("(")
                if p.accept("("):
                    pk = [p.ident()]
                    while p.accept(","):
                        pk.append(p.ident())
                    p.expect(")")
                else:
                    pk = [p.ident()]
                while p.accept(","):
                    ck.append(p.ident())
                p.expect(")")
            else:
                col = p.ident()
                cols[col] = p.cql_type()
                if p.accept("primary"):
                    p.expect("key")
                    pk = [col]
            if not p.accept(","):
                break
        p.expect(")")
        desc: dict[str, bool] = {c: False for c in ck}
        if p.accept("with"):
            while True:
                if p.accept("clustering"):
                    p.expect("order")
                    p.expect("by")
                    p.expect("(")
                    while True:
                        c = p.ident()
                        if c not in ck:
                            raise _invalid(f"Only clustering key columns can be defined in "
                                           f"CLUSTERING ORDER directive: {c}")
                        desc[c] = p.expect("asc", "desc") == "desc"
                        if not p.accept(","):
                            break
                    p.expect(")")
                else:  # other table options (compaction, ...): accepted, not modelled
                    p.ident()
                    p.expect("=")
                    while p.i < len(p.toks) and not p.peek("and"):
                        p.i += 1
                if not p.accept("and"):
                    break
        p.end()
        if not pk:
            raise _invalid("No PRIMARY KEY specifed for table (exactly one required)")
        for c in pk + ck:
            if c not in cols:
                raise _invalid(f"Unknown definition {c} referenced in PRIMARY KEY")
        order = pk + ck + sorted(c for c in cols if c not in pk and c not in ck)
        table = Table(ks, name, {c: cols[c] for c in order}, pk, ck, desc)
        return Statement("create_table", cql, keyspace=ks, table=name, if_not_exists=ine,
                         table_def=table)

    def _parse_select(self, p: Parser, cql: str, current_ks: str | None) -> Statement:
        st = Statement("select", cql)
        st.distinct = p.accept("distinct")
        if p.accept("*"):
            st.columns = ["*"]
        else:
            st.columns = [p.ident()]
            while p.accept(","):
                st.columns.append(p.ident())
        p.expect("from")
        st.keyspace, st.table = p.qname()
        table = self._table(st, current_ks)
        if st.columns == ["*"]:
            st.columns = list(table.columns)
        for c in st.columns:
            self._column(table, c)
        if p.accept("where"):
            while True:
                col = p.ident()
                op = p.expect("=", "<", ">", "<=", ">=")
                st.where.append(Condition(col, op, p.term()))
                self._column(table, col)
                if st.where[-1].term.marker is not None:
                    st.bind.append((col, table.columns[col]))
                if not p.accept("and"):
                    break
        if p.accept("order"):
            p.expect("by")
            col = p.ident()
            direction = p.expect("asc", "desc") if p.peek("asc", "desc") else "asc"
            if not table.clustering or col != table.clustering[0]:
                raise _invalid(f"Order by is currently only supported on the clustered columns "
                               f"of the PRIMARY KEY, got {col}")
            st.order_desc = (direction == "desc") != table.descending[col]
        if p.accept("limit"):
            st.limit = p.term()
            if st.limit.marker is not None:
                st.bind.append(("[limit]", INT))
        p.end()
        self._check_select(table, st)
        return st

    def _check_select(self, table: Table, st: Statement) -> None:
        pk_eq = {c.column for c in st.where if c.column in table.partition_key and c.op == "="}
        for c in st.where:
            if c.column in table.partition_key and c.op != "=":
                raise _invalid(f"Only EQ and IN relation are supported on the partition key "
                               f"(got {c.column} {c.op})")
            if c.column not in table.partition_key and c.column not in table.clustering:
                raise _invalid("Cannot execute this query as it might involve data filtering "
                               "and thus may have unpredictable performance. If you want to "
                               "execute this query despite the performance unpredictability, "
                               "use ALLOW FILTERING")
            if c.column in table.clustering and c.column != table.clustering[0]:
                raise _invalid(f"test server: restrictions only on the first clustering column, "
                               f"got {c.column}")
        if st.where and pk_eq != set(table.partition_key):
            raise _invalid("Cannot execute this query as it might involve data filtering: "
                           "partition key parts are not all restricted by =")
        if st.order_desc is not None and not st.where:
            raise _invalid("ORDER BY is only supported when the partition key is restricted by "
                           "an EQ or an IN.")
        if st.distinct:
            if st.where or any(c not in table.partition_key for c in st.columns):
                raise _invalid("SELECT DISTINCT queries must only request partition key columns")

    def _table(self, st: Statement, current_ks: str | None) -> Table:
        ks = st.keyspace or current_ks
        if ks is None:
            raise _invalid("No keyspace has been specified. USE a keyspace, or explicitly "
                           "specify keyspace.tablename")
        st.keyspace = ks
        if not self.keyspace_exists(ks):
            raise _invalid(f"Keyspace {ks} does not exist")
        table = self.lookup(ks, st.table or "")
        if table is None:
            raise _invalid(f"unconfigured table {st.table}")
        st.table_def = table
        return table

    @staticmethod
    def _column(table: Table, col: str) -> None:
        if col not in table.columns:
            raise _invalid(f"Undefined column name {col} in table {table.keyspace}.{table.name}")
