"""Statements handed in as a file (`advise --queries`, `explain --file`): a `.sql` script
split at its semicolons, or a log of one statement a line.
"""

from __future__ import annotations

import re
from pathlib import Path

_PIECE = re.compile(  # what may hold a `;` that ends nothing: strings, quoted names, comments
    r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|(\$(?:[A-Za-z_]\w*)?\$)[\s\S]*?\1|--[^\n]*|/\*[\s\S]*?\*/|;"
)
_ONLY_COMMENTS = re.compile(r"^(?:\s|--[^\n]*|/\*[\s\S]*?\*/)*$")
_LEADING_COMMENTS = re.compile(r"^(?:\s|--[^\n]*|/\*[\s\S]*?\*/)*")


def split_statements(text: str) -> list[str]:
    """The statements of a file: split at `;` outside strings, quoted names, dollar quotes
    and comments; a file without any such `;` holds one statement a line (as Dexter reads
    a log of statements). Comment-only pieces are left out."""
    cuts = [m.start() for m in _PIECE.finditer(text) if m.group(0) == ";"]
    if cuts:
        bounds = zip([0, *(c + 1 for c in cuts)], [*cuts, len(text)], strict=True)
        pieces = [text[a:b] for a, b in bounds]
    else:
        pieces = text.splitlines()
    return [_LEADING_COMMENTS.sub("", p).strip() for p in pieces if not _ONLY_COMMENTS.match(p)]


def read_statements(path: str) -> list[str]:
    """The statements in `path`; ValueError says why there are none to read."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(exc.strerror or str(exc)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {exc.start})") from None
    found = split_statements(text)
    if not found:
        raise ValueError("no statements in it (an empty file, or comments only)")
    return found
