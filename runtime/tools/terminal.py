"""Text from the network made safe for a terminal: what the CLI prints of it cannot move the cursor or fake a line.

A device or a stranger's registration chooses its names, addresses, docs, results and
error messages; ``printable`` escapes every character a terminal would act on (C0 and
C1 controls, ESC and BEL among them, DEL, line and paragraph separators, bidi and other
format characters) as a Python escape, and leaves the rest as it is.
"""

from __future__ import annotations

from typing import Final

_NAMED: Final = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with every character that is not printable (``str.isprintable``, space aside) escaped."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)


def printable_lines(text: str) -> str:
    """``printable`` for text of several lines: each line escaped, the line breaks ``\\n`` kept."""
    return "\n".join(printable(line) for line in text.split("\n"))
