"""Text for a terminal: what a snapshot, a groups file or a host says, made harmless to print.

Names and messages come from untrusted files (a guest's ``<name>``, a manifest's host
name, a hostname a host reports).  Printed raw, a newline fakes an output line
(``cpu_mode = host-passthrough``), an escape sequence rewrites the screen, a bidi
override reorders what a reader sees.  ``printable`` escapes every such character
(C0 and C1 controls, DEL, Unicode line separators and bidi controls) as ``\\n``,
``\\x1b``, ``\\u202e`` ...; backslashes are left alone, so escaping twice changes
nothing.  Pure: no printing here.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
                     "\u2066-\u2069]")
_UNSAFE_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029"
                                 "\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    named = _NAMED.get(c)
    if named is not None:
        return named
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"


def printable(text: str) -> str:
    """``text`` on one line, every control character escaped."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escape, text)


def printable_lines(text: str) -> str:
    """``text`` with its line breaks kept and every other control character escaped
    (for output whose lines were built from already escaped parts)."""
    if _UNSAFE_BUT_NEWLINE.search(text) is None:
        return text
    return _UNSAFE_BUT_NEWLINE.sub(_escape, text)
