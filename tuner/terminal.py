"""Text for a person's terminal: names from the database are hostile input.

A table named `esc\\x1b[2J…` must not clear the operator's screen, and a name with a
right-to-left override must not reorder the line it is printed in. `printable()` writes every
character a terminal would act on instead of showing — C0/C1 controls but newline and tab,
DEL, and Unicode format characters (bidi overrides, zero-width ones) — as a `\\uXXXX` escape.
That escape is also valid inside a JSON string, so `--json` output stays valid and means the
same when it passes through. `PrintableStream` applies it to everything a command prints.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from typing import Any, TextIO

_CANDIDATE = re.compile(r"[^\t\n\x20-\x7e]")  # ASCII's printable characters pass as they are
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if unicodedata.category(char) not in _UNSAFE_CATEGORIES:
        return char
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # as a JSON string would write it: a surrogate pair
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def printable(text: str) -> str:
    """`text` with every character a terminal would act on written as `\\uXXXX`."""
    return _CANDIDATE.sub(_escape, text)


class PrintableStream:
    """A text stream that writes `printable(text)` to the stream it wraps."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(printable(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def install() -> tuple[TextIO, TextIO]:
    """Route sys.stdout and sys.stderr through `printable`; returns the streams replaced."""
    saved = sys.stdout, sys.stderr
    if sys.stdout is not None:  # None: started without one (fd 1 closed)
        sys.stdout = PrintableStream(sys.stdout)
    if sys.stderr is not None:
        sys.stderr = PrintableStream(sys.stderr)
    return saved
