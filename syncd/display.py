"""Text for people: names and messages escaped before they reach a terminal or a log line,
and byte counts in the units people read (:func:`size`).

A file name is whatever a remote says it is. A bucket key holding ``\\n`` would forge a whole
extra line of a report, ``ESC[2J`` would clear the admin's screen, U+202E would show
``evil\\u202etxt.exe`` as ``evilexe.txt``. Every human-readable line syncd writes (stderr,
stdout reports, daemon logs, ``status``, ``log``, ``conflicts``, ``check``, plans) goes through
:func:`printable` exactly once, at the point where it is written. Machine output (``--json``,
the control protocol, JSON logs) keeps the exact name: JSON escapes what it must itself.
"""

from __future__ import annotations

import re
import unicodedata

# Anything that might need escaping: ASCII controls, the backslash (so that an escape can never
# be mistaken for a name that holds one), and every non-ASCII character, which _escape then
# looks up. Plain ASCII names, the common case, match nothing and are returned as they are.
_SUSPECT = re.compile("[\x00-\x1f\\\\\x7f-\U0010ffff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
_SURROGATE_ESCAPE = range(0xDC80, 0xDD00)  # bytes 0x80-0xFF that were not UTF-8
# Controls (C0, DEL, C1), format characters (bidi overrides and isolates such as U+202E,
# zero-width characters, the BOM), lone surrogates, line and paragraph separators: each can
# move the cursor, change the terminal, break the line or make one name look like another.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code in _SURROGATE_ESCAPE:
        return f"\\x{code - 0xDC00:02x}"  # the original byte, as the file system holds it
    if unicodedata.category(char) not in _UNSAFE_CATEGORIES:
        return char
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def printable(text: object) -> str:
    """``text`` (``str()`` of it) with every character that could move the cursor, change the
    terminal, start a new line or disguise the line shown as a visible escape: ``\\n``,
    ``\\x1b``, ``\\u202e``; a byte of invalid UTF-8 (surrogate-escaped) as ``\\xNN``; a
    backslash as ``\\\\``. Letters, digits, symbols, emoji and spaces of any script are kept.
    Never raises.

    Apply it once, to the whole line being written: applying it twice doubles backslashes.
    """
    value = text if isinstance(text, str) else str(text)
    if _SUSPECT.search(value) is None:  # the common case: nothing to do, no copy
        return value
    return _SUSPECT.sub(_escape, value)


def size(n: int) -> str:
    """Bytes for people: ``512 B``, ``1.5 KiB``, ... ``3.0 GiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
