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

The width text is laid out in (``columns``) and the shortening of paths that keeps
their file name (``shorten_path``, ``common_folder``) are here too.
"""

from __future__ import annotations

import os
import re
import shutil
import unicodedata
from collections.abc import Iterable

DEFAULT_COLUMNS = 100  # when neither the terminal nor COLUMNS says
ELLIPSIS = "\u2026"  # marks the middle of a path left out

_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
# An escape cut short at the end of a clipped value: "\x1" or "\u20".
_ESCAPE = re.compile(r"\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}|[ntr])")  # as _escape writes
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


def columns(terminal: bool) -> int:
    """The width to lay text out in: the terminal's (``shutil.get_terminal_size``, which
    lets ``COLUMNS`` override it) when writing to one; else ``COLUMNS`` when it is a
    positive number (a pipe, a file, a cron job that sets it); else ``DEFAULT_COLUMNS``."""
    if terminal:
        return shutil.get_terminal_size((DEFAULT_COLUMNS, 24)).columns
    try:
        value = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        return DEFAULT_COLUMNS
    return value if value > 0 else DEFAULT_COLUMNS


def plural(count: int, one: str, many: str | None = None) -> str:
    """A count with its noun in agreement: "1 error", "0 errors", "2 structure sets"."""
    return f"{count} {one if count == 1 else many or one + 's'}"


def _folder_of(path: str) -> str:
    return path[: max(path.rfind("/"), 0)]


def common_folder(paths: Iterable[str]) -> str:
    """The longest folder (or URL prefix) that every path lies in, whole components
    only, without the trailing "/"; "" when they share none worth dropping (nothing,
    "/" or a URL scheme)."""
    split = [_folder_of(p).split("/") for p in paths]
    if not split:
        return ""
    first, last = min(split), max(split)  # their common prefix is everyone's
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    common = first[:n]
    if all(part == "" or part.endswith(":") for part in common):
        return ""  # "", "/", "http://": nothing that says where the plans are
    return "/".join(common)


def relative(path: str, folder: str) -> str:
    """``path`` below ``folder`` (as ``common_folder`` gives it), else as it is."""
    if folder and path.startswith(folder + "/"):
        return path[len(folder) + 1 :]
    return path


def _middle(text: str, width: int) -> str:
    """Shown ``text`` in ``width`` characters: its start and end, the middle left out,
    never an escape cut in half at either side."""
    if len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    keep = width - 1
    start = len(text) - (keep - keep // 2)  # of the end kept: it weighs a little more
    for m in _ESCAPE.finditer(text):
        if m.start() < start < m.end():
            start = m.end()  # not the rest of "\x1b": the head gets the room
            break
    return cut(text, keep - (len(text) - start)) + ELLIPSIS + text[start:]


def shorten_path(text: str, width: int) -> str:
    """A shown path in at most ``width`` characters, shortened in the middle so that
    its file name stays whole: "…/eclipse-3d/RP.dcm" (whole folders from the end, and
    the first one when it fits too), else the folders cut in their middle
    ("27_fif_…segment/RP.dcm"); a file name longer than the width (a UID) leaves the
    path's start and the name's end ("eclipse-vm…1.2.840.1234.dcm"), a DICOMweb
    instance the end of its UID ("…8.498.8157905461")."""
    if len(text) <= width:
        return text
    folder, sep, name = text.rpartition("/")
    if not sep:
        return _middle(name, width)
    if len(name) + 2 > width:
        if folder.endswith("/instances") or folder == "instances":  # DICOMweb: the end
            return ELLIPSIS + name[len(name) - width + 1 :]  # of the instance UID tells
        # a long file name (a UID): the path's start, its first folder, says more than
        # "RP.1.2.246...", and the name's end
        return _middle(text, width)
    room = width - len(name) - 1  # for the folders and the ellipsis
    if room < 5:  # too little to tell folders apart: the name alone
        return ELLIPSIS + "/" + name
    parts = folder.split("/")
    kept = 0  # whole folders kept from the end
    while kept < len(parts) - 1 and len("/".join(parts[-kept - 1 :])) + 2 <= room:
        kept += 1
    tail = "/".join(parts[len(parts) - kept :])
    if kept and len(tail) + 2 >= room // 2:
        shown_folder = ELLIPSIS + "/" + tail
        if len(parts[0]) + 1 + len(shown_folder) <= room:
            shown_folder = parts[0] + "/" + shown_folder
        return shown_folder + "/" + name
    return _middle(folder, room) + "/" + name
