"""Text for a terminal: every character that could steer the terminal is shown escaped.

DICOM values, file names, charges cells and policy files are written by other people.
A raw ESC in a PatientID can recolour the screen, set the window title (OSC), move
the cursor over the lines above, or hide text; a bidi override can show ``77301`` as
``10377``. The text renderers (scan table, ``inspect``, ``report``, the audit table,
``results``) pass every value through ``shown`` before laying it out, and every line
through ``lines_text`` before writing it, so:

* C0 controls (U+0000-U+001F, newline and tab included: a value is one line), DEL and
  C1 controls (U+0080-U+009F, 8-bit CSI U+009B among them) are shown as ``\\x1b``,
  ``\\n``, ``\\t``, ``\\x9b``;
* Unicode format characters (category Cf: the bidi embeddings, overrides and isolates
  U+202A-U+202E and U+2066-U+2069, the bidi marks, zero-width spaces and joiners,
  U+FEFF, soft hyphen, tag characters), the line and paragraph separators U+2028 and
  U+2029, and lone surrogates (a file name that is not UTF-8) are shown as ``\\u202e``;
* everything else, backslashes included, is shown as it is. Escaping is idempotent: the
  escaped form contains none of those characters, so text shown once is shown the same
  way again (table rows kept in the scan cache are shown through it a second time).

Widths and clipping are computed on the escaped text, so a column never cuts a raw
escape sequence in half and the columns stay aligned. JSON and CSV are data formats
and are not touched here (JSON escapes controls itself).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
# An escape cut short at the end of a clipped value: "\x1" or "\u20".
_PARTIAL = re.compile(r"\\(?:x[0-9a-f]?|u[0-9a-f]{0,3}|U[0-9a-f]{0,7})?$")


def _escape(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def shown(value: object) -> str:
    """``value`` as text that is safe on a terminal (see the module docstring)."""
    text = "" if value is None else str(value)
    if text.isprintable():  # the common case, decided in C: nothing to escape
        return text
    return "".join(
        _escape(ch) if not ch.isprintable() and unicodedata.category(ch) in _HIDDEN else ch
        for ch in text
    )


def one_line(value: object) -> str:
    """``shown``, with runs of spaces (and other blank characters) made one space."""
    return " ".join(shown(value).split())


def cut(text: str, width: int) -> str:
    """Shown text cut to at most ``width`` characters, never in the middle of an escape."""
    return text if len(text) <= width else _PARTIAL.sub("", text[:width])


def clip(value: object, width: int) -> str:
    """``one_line`` in at most ``width`` characters; a clipped value ends with "~" and
    never with part of an escape."""
    text = one_line(value)
    if len(text) <= width:
        return text
    return cut(text, width - 1) + "~"


def lines_text(lines: Iterable[str]) -> str:
    """Lines joined for the terminal, each one ``shown``, ending with a newline: the
    last guard, for text a renderer wrote into a line without a value helper."""
    return "".join(shown(line) + "\n" for line in lines)
