"""The CQL subset the test server understands: tokenizer, recursive-descent parser pieces and
the parsed statement (`Statement`). Schema checks happen in `statements.py`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.services.cql.wire import SYNTAX_ERROR, CqlError, CqlType, make_type

if TYPE_CHECKING:
    from tests.services.cql.engine import Table

_TOKEN = re.compile(r"""\s*(?:(?P<str>'(?:[^']|'')*')|(?P<qid>"(?:[^"]|"")+")|(?P<num>-?\d+(?:\.\d+)?)
                        |(?P<id>[A-Za-z_][A-Za-z0-9_]*)|(?P<op><=|>=|[=<>(),.;?*{}:\[\]]))""", re.X)


@dataclass
class Tok:
    kind: str  # str | id | num | op
    text: str


def tokenize(cql: str) -> list[Tok]:
    out: list[Tok] = []
    pos = 0
    cql = cql.rstrip()
    while pos < len(cql):
        m = _TOKEN.match(cql, pos)
        if not m or m.end() == pos:
            raise CqlError(SYNTAX_ERROR, f"line 1:{pos} unexpected input at {cql[pos:pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup or "op"
        text = m.group(kind)
        if kind == "str":
            text = text[1:-1].replace("''", "'")
        elif kind == "qid":
            kind, text = "id", text[1:-1].replace('""', '"')
        elif kind == "id":
            text = text.lower()  # unquoted identifiers and keywords are case-insensitive
        out.append(Tok(kind, text))
    if out and out[-1].text == ";":
        out.pop()
    return out


class Parser:
    def __init__(self, cql: str) -> None:
        self.toks = tokenize(cql)
        self.i = 0
        self.markers = 0

    def peek(self, *words: str) -> bool:
        return self.i < len(self.toks) and self.toks[self.i].text in words and \
            self.toks[self.i].kind in ("id", "op")

    def accept(self, *words: str) -> bool:
        if self.peek(*words):
            self.i += 1
            return True
        return False

    def expect(self, *words: str) -> str:
        if not self.peek(*words):
            got = self.toks[self.i].text if self.i < len(self.toks) else "<end>"
            raise CqlError(SYNTAX_ERROR, f"expected {' or '.join(words)}, got {got!r}")
        self.i += 1
        return self.toks[self.i - 1].text

    def ident(self) -> str:
        if self.i >= len(self.toks) or self.toks[self.i].kind != "id":
            got = self.toks[self.i].text if self.i < len(self.toks) else "<end>"
            raise CqlError(SYNTAX_ERROR, f"expected an identifier, got {got!r}")
        self.i += 1
        return self.toks[self.i - 1].text

    def qname(self) -> tuple[str | None, str]:
        first = self.ident()
        if self.accept("."):
            return first, self.ident()
        return None, first

    def term(self) -> Term:
        if self.accept("?"):
            self.markers += 1
            return Term(marker=self.markers - 1)
        if self.i < len(self.toks) and self.toks[self.i].kind in ("str", "num"):
            tok = self.toks[self.i]
            self.i += 1
            return Term(literal=tok.text if tok.kind == "str" else
                        (float(tok.text) if "." in tok.text else int(tok.text)))
        raise CqlError(SYNTAX_ERROR, "expected a bind marker or a literal")

    def cql_type(self) -> CqlType:
        name = self.ident()
        params: list[CqlType] = []
        if self.accept("<"):
            params.append(self.cql_type())
            while self.accept(","):
                params.append(self.cql_type())
            self.expect(">")
        return make_type(name, tuple(params))

    def literal(self) -> str:
        if self.i >= len(self.toks) or self.toks[self.i].kind not in ("str", "num", "id"):
            raise CqlError(SYNTAX_ERROR, "expected a literal")
        self.i += 1
        return self.toks[self.i - 1].text

    def string_map(self) -> dict[str, str]:
        """`{'k': 'v' | N, ...}` (a replication map)."""
        self.expect("{")
        out: dict[str, str] = {}
        if not self.accept("}"):
            while True:
                key = self.literal()
                self.expect(":")
                out[key] = self.literal()
                if not self.accept(","):
                    break
            self.expect("}")
        return out

    def end(self) -> None:
        if self.i != len(self.toks):
            raise CqlError(SYNTAX_ERROR, f"unexpected {self.toks[self.i].text!r}")


@dataclass
class Term:
    marker: int | None = None   # index of the bind marker, or
    literal: Any = None         # a literal value


@dataclass
class Condition:
    column: str
    op: str
    term: Term


@dataclass
class Statement:
    """A parsed statement; `bind` lists (column spec name, type) of each bind marker, in order."""

    kind: str                       # create_keyspace | create_table | use | insert | select
    text: str
    keyspace: str | None = None
    table: str | None = None
    bind: list[tuple[str, CqlType]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    terms: list[Term] = field(default_factory=list)
    where: list[Condition] = field(default_factory=list)
    distinct: bool = False
    order_desc: bool | None = None
    limit: Term | None = None
    if_not_exists: bool = False
    table_def: Table | None = None
    replication: dict[str, str] | None = None   # CREATE KEYSPACE
