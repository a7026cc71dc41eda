"""How a person reads a statement: a short stable label and the text shortened with care.

A queryid says nothing to a reader and changes with the role or the parameter types; the
label names what the statement does and where, and its hash tells two alike statements
apart: `select orders,customers #3fa2c1`. The hash is of the text with its whitespace and
case folded, so the same statement gets the same label in `advise`, `audit`, `status`, the
journal and the logs, on any day. Labels and shortened texts are for reading: they never
stand in for the statement itself.                                                   (pure)
"""

from __future__ import annotations

import hashlib
import re

from tuner import sqlinfo

MAX_TABLES = 3  # tables a label names; more show as "+N"
_VERB = re.compile(r"^(?:\s|--[^\n]*|/\*.*?\*/|\()*([a-z]+)", re.IGNORECASE | re.DOTALL)
_SELECT_LIST = re.compile(r"^(select\s+(?:distinct\s+)?)(.+?)(\s+from\s+)", re.IGNORECASE)
_MIN_ELIDED = 16  # a select list shorter than this stays as it is


def _printable(text: str) -> str:
    """Non-printable characters as escapes, so a hostile name cannot move the cursor."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def text_hash(text: str) -> str:
    """Six hex digits of the text with whitespace and case folded (stable across runs)."""
    folded = " ".join(text.split()).lower().rstrip(";").strip()
    return hashlib.sha1(folded.encode()).hexdigest()[:6]


def _tables(text: str) -> tuple[str, str]:
    """The statement's verb and the tables it names, in order of first mention."""
    match = _VERB.match(text)
    verb = match.group(1).lower() if match else "?"
    info = sqlinfo.analyze(text)
    if isinstance(info, sqlinfo.Unparsed):
        return verb, ""
    names: list[str] = []
    for name in (*info.writes, *info.reads, *(u.table for u in info.tables)):
        if name.name not in names:
            names.append(name.name)
    shown = ",".join(names[:MAX_TABLES])
    more = len(names) - MAX_TABLES
    return verb, shown + (f"+{more}" if more > 0 else "")


def label(text: str) -> str:
    """`select orders,customers #3fa2c1`: the verb, the first tables, a hash of the text."""
    verb, tables = _tables(text)
    head = f"{verb} {tables}" if tables else verb
    return _printable(f"{head} #{text_hash(text)}")


def shorten(text: str, width: int = 96) -> str:
    """The text on one line within `width` characters: a long select list gives way first
    (`SELECT … FROM`), so the tables and predicates stay; then the tail, at a word, never
    right after a figure (`$1…` reads as `$12` cut short)."""
    flat = _printable(" ".join(text.split()))
    if len(flat) <= width:
        return flat
    match = _SELECT_LIST.match(flat)
    if match and len(match.group(2)) >= _MIN_ELIDED:
        flat = match.group(1) + "…" + match.group(3) + flat[match.end() :]
        if len(flat) <= width:
            return flat
    cut = flat[: max(width - 1, 1)]
    space = cut.rfind(" ")
    while space > width // 2 and cut[space - 1].isdigit():  # `$1…` would read as a cut figure
        space = cut.rfind(" ", 0, space)
    if space > width // 2:
        cut = cut[:space]
    return (cut.rstrip().rstrip("0123456789").rstrip() or cut) + "…"


def describe(text: str, width: int = 96) -> str:
    """The label, then the shortened text: what a line about one statement shows."""
    name = label(text)
    return f"{name}  {shorten(text, max(width - len(name) - 2, 24))}"
