"""The only namer, marker and quoter of the tuner's indexes, and the strict re-parse.

`index_name` gives a spec its deterministic name; `marker`/`is_tuner_index` write and read
the comment that makes an index the tuner's own; `quote_ident` quotes a name for display
text (the statements themselves quote through `templates`, `psycopg.sql.Identifier`);
`check` parses rendered text again and refuses anything but exactly one whitelisted statement;
`spec_from_definition` reads a `pg_get_indexdef` text back into a spec the templates can
recreate. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from tuner.errors import RefusedStatement
from tuner.models import Action, ActionKind, IndexSpec, TableRef

NAME_PREFIX = "pgt_"
MARKER = "pg-tuner: "
MAX_NAME_BYTES = 63  # NAMEDATALEN - 1: PostgreSQL silently truncates longer identifiers

# --- names ------------------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"_+", "_", "".join(ch if ch.isalnum() else "_" for ch in text.lower())).strip(
        "_"
    )


def clip(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` UTF-8 bytes, never inside a character."""
    return text.encode()[:max_bytes].decode(errors="ignore")


NAME_TRIES = 8  # names a spec may take when another index holds the first (squatting)


def index_name(spec: IndexSpec, attempt: int = 0) -> str:
    """`pgt_<table>_<cols>[_inc_<cols>][_hash]_<hash8>`: deterministic, ≤ 63 bytes, unique
    per spec. `attempt` > 0 gives the spec's next names, for when another index (anyone can
    name one `pgt_...`) already holds the first."""
    desc = spec.descending or (False,) * len(spec.columns)
    identity: list[object] = [spec.table.schema, spec.table.name, spec.columns, spec.include, desc]
    if spec.method != "btree":  # btree names stay what they were before hash existed
        identity.append(spec.method)
    if spec.expressions:  # and plain ones what they were before expressions existed
        identity.append(list(spec.expressions))
    if spec.predicate:
        identity.append([list(term) for term in spec.predicate])
    if attempt:
        identity.append(attempt)
    digest = hashlib.sha256(json.dumps(identity, ensure_ascii=False).encode()).hexdigest()[:8]
    forms = spec.expressions or ("",) * len(spec.columns)
    parts = [_slug(spec.table.name), *(_slug(f"{e.partition(':')[0]}_{c}") for c, e in
                                       zip(spec.columns, forms, strict=True))]  # fmt: skip
    if spec.include:
        parts += ["inc", *(_slug(c) for c in spec.include)]
    if spec.method != "btree":
        parts.append(spec.method)
    if spec.predicate:
        parts += ["where", *(_slug(c) for c, _, _ in spec.predicate)]
    body = "_".join(p for p in parts if p)
    tail = f"_{digest}"
    head = clip(f"{NAME_PREFIX}{body}", MAX_NAME_BYTES - len(tail)).rstrip("_")
    return head + tail


def index_names(spec: IndexSpec) -> tuple[str, ...]:
    """Every name the executor may give `spec`, in the order it tries them."""
    return tuple(index_name(spec, n) for n in range(NAME_TRIES))


def quote_ident(name: str, *, only_if_needed: bool = False) -> str:
    """`name` as a double-quoted identifier (quotes doubled), as `sql.Identifier` renders it;
    `only_if_needed`: bare when PostgreSQL would read it back unchanged (lower-case ASCII)."""
    if only_if_needed and name.isidentifier() and name == name.lower() and name.isascii():
        return name
    return '"' + name.replace('"', '""') + '"'


def quote_ref(schema: str, name: str, *, only_if_needed: bool = False) -> str:
    """`schema.name`, each part through `quote_ident`."""
    return (
        f"{quote_ident(schema, only_if_needed=only_if_needed)}."
        f"{quote_ident(name, only_if_needed=only_if_needed)}"
    )


def is_tuner_index(comment: str | None) -> bool:
    """The ownership marker: the executor comments every index it makes with `MARKER`."""
    return bool(comment and comment.startswith(MARKER))


def marker(action_id: str, created: datetime) -> str:
    """The comment the executor puts on an index it makes (what `is_tuner_index` reads)."""
    return f"{MARKER}action {action_id} {created.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def made_by(comment: str | None, action_id: str) -> bool:
    """Does an index's comment carry the marker the tuner wrote for this action?"""
    return bool(comment and comment.startswith(f"{MARKER}action {action_id} "))


# --- the strict re-parse ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Statement:
    """What `check` recognised: the statement's head and the names it touches."""

    head: str
    schema: str
    name: str
    spec: IndexSpec | None = None
    text: str = ""


# A rendered statement is made of these tokens only; anything else (comments, dollar quotes,
# operators, a second statement's `;`) makes `check` refuse the text outright.
_TOKEN = re.compile(
    r"""(?P<space>[ \t\n\r\f\v]+)
      | (?P<ident>"(?:[^"\x00]|"")*")
      | (?P<string>(?<![A-Za-z0-9_$])[Ee]'(?:[^'\\\x00]|''|\\[^\x00])*'|'(?:[^'\x00]|'')*')
      | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
      | (?P<punct>[(),.]|->>|=)""",
    re.VERBOSE,
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise RefusedStatement(
                f"unexpected {text[pos : pos + 12]!r} at offset {pos}: only one whitelisted "
                "statement, without comments or `;`, is allowed"
            )
        kind, value = match.lastgroup or "", match.group()
        pos = match.end()
        if kind == "ident":
            value = value[1:-1].replace('""', '"')
            if not value or len(value.encode()) > MAX_NAME_BYTES:
                raise RefusedStatement(f"identifier {value!r} is empty or over 63 bytes")
        if kind != "space":
            out.append((kind, value))
    return out


class _Reader:
    """A cursor over tokens that either matches the grammar or raises RefusedStatement."""

    def __init__(self, text: str, bare_identifiers: bool = False) -> None:
        self.tokens = _tokens(text)
        self.pos = 0
        self.bare = bare_identifiers

    def ahead(self, *words: str) -> bool:
        """`peek` one token further on."""
        self.pos += 1
        try:
            return self.peek(*words)
        finally:
            self.pos -= 1

    def peek(self, *words: str) -> bool:
        if self.pos >= len(self.tokens):
            return False
        kind, value = self.tokens[self.pos]
        return (kind == "word" and value.upper() in words) or (kind == "punct" and value in words)

    def expect(self, *words: str) -> str:
        if not self.peek(*words):
            got = self.tokens[self.pos][1] if self.pos < len(self.tokens) else "the end"
            raise RefusedStatement(f"expected {' or '.join(words)}, got {got!r}")
        self.pos += 1
        return self.tokens[self.pos - 1][1].upper()

    def ident(self) -> str:
        kind, value = self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")
        if kind == "ident" or (self.bare and kind == "word"):
            self.pos += 1
            return value
        raise RefusedStatement(f"expected a quoted identifier, got {value or 'the end'!r}")

    def string(self) -> str:
        kind, value = self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")
        if kind != "string":
            raise RefusedStatement(f"expected a string literal, got {value or 'the end'!r}")
        self.pos += 1
        return value

    def constant(self) -> str:
        """A string literal's value: `'...'` with `''`, or `E'...'` with `\\\\` and `''` only
        (what psycopg renders); any other escape is refused."""
        raw = self.string()
        if raw[0] in "Ee":
            body = raw[2:-1]
            if re.search(r"\\[^\\]|\\$", body.replace("\\\\", "")):
                raise RefusedStatement(f"escape in {raw!r}: only \\\\ and '' are rendered")
            body = body.replace("\\\\", "\\")
        else:
            body = raw[1:-1]
        return body.replace("''", "'")

    def key(self) -> tuple[str, str]:
        """(column, expression form) of one index key: a quoted column or `(expression)`."""
        if not self.peek("("):
            return self.ident(), ""
        self.expect("(")
        if self.peek("CAST"):
            self.expect("CAST")
            self.expect("(")
            column = self.ident()
            self.expect("AS")
            self.catalog("DATE")
            self.expect(")")
            form = "date"
        elif self.peek("PG_CATALOG"):
            function = self.catalog("LOWER", "UPPER", "DATE_TRUNC").lower()
            self.expect("(")
            unit = ""
            if function == "date_trunc":
                unit = ":" + self.constant()
                self.expect(",")
            column = self.ident()
            self.expect(")")
            form = function + unit
        else:
            column = self.ident()
            self.expect("OPERATOR")
            self.expect("(")
            self.catalog("->>")
            self.expect(")")
            form = "field:" + self.constant()
        self.expect(")")
        return column, form

    def catalog(self, *names: str) -> str:
        self.expect("PG_CATALOG")
        self.expect(".")
        return self.expect(*names)

    def predicate(self) -> tuple[tuple[str, str, str | None], ...]:
        """`c = 'v'`, `c IS NULL`, `c IS NOT NULL`, joined by AND."""
        terms: list[tuple[str, str, str | None]] = []
        while True:
            column = self.ident()
            if self.peek("="):
                self.expect("=")
                terms.append((column, "=", self.constant()))
            else:
                self.expect("IS")
                negated = bool(self.peek("NOT") and self.expect("NOT"))
                self.expect("NULL")
                terms.append((column, "is not null" if negated else "is null", None))
            if not self.peek("AND"):
                return tuple(terms)
            self.expect("AND")

    def qualified(self, optional_schema: bool = False) -> tuple[str, str]:
        first = self.ident()
        if optional_schema and not self.peek("."):
            return "", first
        self.expect(".")
        return first, self.ident()

    def idents_in_parens(self, allow_desc: bool) -> tuple[tuple[str, ...], tuple[bool, ...]]:
        self.expect("(")
        names, desc = (
            [self.ident()],
            [bool(allow_desc and self.peek("DESC") and self.expect("DESC"))],
        )
        while self.peek(","):
            self.expect(",")
            names.append(self.ident())
            desc.append(bool(allow_desc and self.peek("DESC") and self.expect("DESC")))
        self.expect(")")
        return tuple(names), tuple(desc)

    def end(self) -> None:
        if self.pos != len(self.tokens):
            raise RefusedStatement(
                f"unexpected {self.tokens[self.pos][1]!r} after the statement: exactly one "
                "whitelisted statement is allowed"
            )


def _create_index(r: _Reader, concurrently: bool) -> Statement:
    r.expect("CREATE")
    r.expect("INDEX")
    if concurrently or r.peek("CONCURRENTLY"):
        r.expect("CONCURRENTLY")
    name = r.ident()
    r.expect("ON")
    schema, table = r.qualified(optional_schema=r.bare)
    r.expect("USING")
    method = r.expect("BTREE", "HASH", "BRIN", "GIN").lower()
    forms: tuple[str, ...] = ()
    if method == "btree" and not r.bare:  # the executor's texts: expressions allowed
        keys, desc = _keys(r)
        columns, forms = tuple(k[0] for k in keys), tuple(k[1] for k in keys)
    elif method == "gin" and not r.bare and r.peek("(") and r.ahead("("):
        r.expect("(")  # ((pg_catalog.to_tsvector('config', c)))
        r.expect("(")
        r.catalog("TO_TSVECTOR")
        r.expect("(")
        config = r.constant()
        r.expect(",")
        columns, desc, forms = (r.ident(),), (False,), (f"tsvector:{config}",)
        r.expect(")")
        r.expect(")")
        r.expect(")")
    elif method == "gin" and not r.bare:  # (c [pg_catalog.jsonb_path_ops | "s".gin_trgm_ops])
        r.expect("(")
        columns, desc = (r.ident(),), (False,)
        if r.peek("PG_CATALOG"):
            forms = (r.catalog("JSONB_PATH_OPS").lower(),)
        elif not r.peek(")"):
            home = r.ident()  # pg_trgm's schema
            r.expect(".")
            r.expect("GIN_TRGM_OPS")
            forms = (f"gin_trgm_ops:{home}",)
        r.expect(")")
    else:
        columns, desc = r.idents_in_parens(allow_desc=method == "btree")
    include: tuple[str, ...] = ()
    if method == "btree" and r.peek("INCLUDE"):
        r.expect("INCLUDE")
        include, _ = r.idents_in_parens(allow_desc=False)
    predicate: tuple[tuple[str, str, str | None], ...] = ()
    if method == "btree" and not r.bare and r.peek("WHERE"):
        r.expect("WHERE")
        predicate = r.predicate()
    r.end()
    try:
        spec = IndexSpec(TableRef(schema, table), columns, include, desc if any(desc) else (),
                         method, forms, predicate)  # fmt: skip
    except ValueError as exc:  # a hash index on two columns, an unknown date unit...
        raise RefusedStatement(str(exc)) from None
    return Statement("CREATE INDEX CONCURRENTLY", schema, name, spec)


def _keys(r: _Reader) -> tuple[list[tuple[str, str]], tuple[bool, ...]]:
    r.expect("(")
    keys, desc = [r.key()], [bool(r.peek("DESC") and r.expect("DESC"))]
    while r.peek(","):
        r.expect(",")
        keys.append(r.key())
        desc.append(bool(r.peek("DESC") and r.expect("DESC")))
    r.expect(")")
    return keys, tuple(desc)


def check(text: str) -> Statement:
    """Parse `text` again: exactly one whitelisted statement, or raise RefusedStatement.

    The whitelist, by its exact grammar (identifiers always quoted, as psycopg renders them):
    CREATE INDEX CONCURRENTLY i ON s.t USING btree (c [DESC], ...) [INCLUDE (c, ...)]
    CREATE INDEX CONCURRENTLY i ON s.t USING hash (c) | ... USING brin (c)
    CREATE INDEX CONCURRENTLY i ON s.t USING gin (c [pg_catalog.jsonb_path_ops | "s".gin_trgm_ops])
    CREATE INDEX CONCURRENTLY i ON s.t USING gin ((pg_catalog.to_tsvector('config', c)))
    where a btree key is also one of (pg_catalog.lower(c)), (pg_catalog.upper(c)),
    (CAST(c AS pg_catalog.date)), (pg_catalog.date_trunc('unit', c)),
    (c OPERATOR(pg_catalog.->>) 'key'), and a WHERE of c = 'v' | c IS [NOT] NULL terms
    joined by AND may follow
    DROP INDEX CONCURRENTLY IF EXISTS s.i | REINDEX INDEX CONCURRENTLY s.i
    ANALYZE s.t | VACUUM (ANALYZE) s.t | COMMENT ON INDEX s.i IS 'pg-tuner: ...'
    """
    r = _Reader(text)
    head = r.expect("CREATE", "DROP", "REINDEX", "ANALYZE", "VACUUM", "COMMENT")
    if head == "CREATE":
        r.pos = 0
        found = _create_index(r, concurrently=True)
        return Statement(found.head, found.schema, found.name, found.spec, text)
    if head == "DROP":
        r.expect("INDEX")
        r.expect("CONCURRENTLY")
        r.expect("IF")
        r.expect("EXISTS")
        head = "DROP INDEX CONCURRENTLY"
    elif head == "REINDEX":
        r.expect("INDEX")
        r.expect("CONCURRENTLY")
        head = "REINDEX INDEX CONCURRENTLY"
    elif head == "VACUUM":
        r.expect("(")
        r.expect("ANALYZE")
        r.expect(")")
        head = "VACUUM (ANALYZE)"
    elif head == "COMMENT":
        r.expect("ON")
        r.expect("INDEX")
        head = "COMMENT ON INDEX"
    schema, name = r.qualified()
    if head == "COMMENT ON INDEX":
        r.expect("IS")
        literal = r.string()
        if not literal.lstrip("Ee").startswith("'" + MARKER):
            raise RefusedStatement(f"an index comment must start with {MARKER!r}")
    r.end()
    return Statement(head, schema, name, None, text)


def spec_from_definition(definition: str, schema: str) -> tuple[str, IndexSpec]:
    """(name, spec) of a `pg_get_indexdef` text, or RefusedStatement when the whitelist's
    template could not recreate it (unique, partial, expression, gin, opclass...)."""
    r = _Reader(definition, bare_identifiers=True)
    found = _create_index(r, concurrently=False)
    assert found.spec is not None
    spec = found.spec
    if not found.schema:
        spec = replace(spec, table=TableRef(schema, spec.table.name))
    return found.name, spec


def recreate_problem(definition: str, schema: str) -> str | None:
    """Why rollback could not recreate an index from its `pg_get_indexdef`, or None."""
    try:
        spec_from_definition(definition, schema)
    except RefusedStatement as exc:
        return str(exc)
    return None


def undo_command(action: Action) -> str | None:
    """The statement that would undo `action`, as a person would read it; None if none exists."""
    if action.kind is ActionKind.CREATE_INDEX and action.index_name:
        return f"DROP INDEX CONCURRENTLY {quote_ref(action.table.schema, action.index_name)}"
    if action.kind is ActionKind.DROP_INDEX and action.index_definition:
        definition = action.index_definition
        for head in ("CREATE UNIQUE INDEX ", "CREATE INDEX "):
            if definition.startswith(head):
                return head + "CONCURRENTLY " + definition[len(head) :]
        return definition
    return None
