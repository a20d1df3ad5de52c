"""Stored strings shown to an operator are data, never markup or terminal control (docs/report.md, "Command line").

Guard keys, run ids, critic names, rationales, transition reasons and error texts come from agents, critics, trace
files and command lines; any of them may hold an ESC sequence (which retitles or clears a terminal), rich markup
(``[link=...]``, ``[/]``, which rich would interpret or refuse), HTML, or a bidi override that reorders what is
read. Every renderer passes them through here: :func:`visible` writes each control character as an escape
(``\\x1b``, ``\\n``, ``\\u202e``) so the text stays on its line and shows what is really there; :func:`text` wraps
the result in a rich :class:`~rich.text.Text`, which rich never parses as markup.
"""

from __future__ import annotations

import unicodedata

from rich.text import Text

__all__ = ["text", "visible"]

_ESCAPED_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})  # C0, DEL, C1; line and paragraph separators
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(char: str) -> str:
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(value: object) -> str:
    """``str(value)`` with every control character (C0, DEL, C1, bidi controls, line separators) escaped."""
    raw = "" if value is None else str(value)
    if raw.isprintable():  # the common case: nothing to escape (printable excludes all of the above)
        return raw
    return "".join(
        _escaped(c) if unicodedata.category(c) in _ESCAPED_CATEGORIES or c in _BIDI_CONTROLS else c for c in raw
    )


def text(value: object, style: str = "") -> Text:
    """A rich :class:`Text` of ``visible(value)``: printed literally, brackets and all."""
    return Text(visible(value), style=style)
