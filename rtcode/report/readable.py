"""Values as a reader of the HTML report wants them: evidence values as "name value
unit" with the unit taken from the key's suffix, DICOM person names in their usual
order, and file paths relative to the folder all of a report's files sit in.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

# Unit suffixes of rtcode's value names (facts, metrics, policy keys): the suffix,
# the unit shown, and whether the value is a share shown as a percentage.
UNITS: tuple[tuple[str, str], ...] = (
    ("_mm2", "mm²"),
    ("_mm", "mm"),
    ("_deg", "deg"),
    ("_mu", "MU"),
    ("_pct", "%"),
    ("_gy", "Gy"),
    ("_cc", "cm³"),
    ("_cm3", "cm³"),
)
SHARES = ("_share", "_fraction")  # 0..1, shown as a percentage
ACRONYMS = {"mu": "MU", "vmat": "VMAT", "fif": "FIF", "dca": "DCA", "cv": "CV", "mlc": "MLC"}


def unit_of(key: str) -> tuple[str, str]:
    """(name without its unit suffix, unit) of a value name; unit "" when it has none,
    "share" for a 0..1 share (``_share``, ``_fraction``: shown as a percentage)."""
    lower = key.lower()
    for suffix, unit in UNITS:
        if lower.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)], unit
    if lower.endswith(SHARES):
        return key, "share"
    return key, ""


def words(key: str) -> str:
    """A value name in words: "beam_on_leaf_travel" -> "beam on leaf travel"."""
    return " ".join(ACRONYMS.get(w.lower(), w) for w in key.split("_") if w)


def number_text(value: float) -> str:
    return f"{value:g}"


def quantity(value: Any, unit: str) -> str:
    """One value with its unit ("84 mm", "62.15%", "yes"); lists item by item."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        if unit == "share":
            return f"{value * 100:.4g}%"
        if unit == "%":
            return f"{number_text(value)}%"
        return f"{number_text(value)} {unit}".rstrip()
    if isinstance(value, (list, tuple)):
        return ", ".join(quantity(v, unit) for v in value) or "none"
    if isinstance(value, dict):
        return "; ".join(f"{words(k)} {quantity(v, '')}" for k, v in value.items()) or "-"
    return str(value)


def named_values(values: dict[str, Any]) -> list[str]:
    """A table of evidence values as "name value unit" items, in the table's order."""
    out = []
    for key, value in values.items():
        name, unit = unit_of(key)
        out.append(f"{words(name)} {quantity(value, unit)}")
    return out


def person_name(value: str | None) -> str | None:
    """A DICOM PN value in the usual order (PS3.5 6.2: family^given^middle^prefix^suffix,
    with up to three "="-separated groups: alphabetic, ideographic, phonetic):
    "Family^Given" -> "Family, Given"; a later group follows in parentheses. A value
    without "^" or "=" (a pseudonym, a name typed as one string) stays as it is."""
    if value is None or ("^" not in value and "=" not in value):
        return value
    groups = [g for g in (_name_group(g) for g in value.split("=")) if g]
    if not groups:
        return value.strip() or None
    return groups[0] + "".join(f" ({g})" for g in groups[1:])


def _name_group(group: str) -> str:
    family, given, middle, prefix, suffix = ([p.strip() for p in group.split("^")] + [""] * 5)[:5]
    first = " ".join(p for p in (prefix, given, middle) if p)
    text = ", ".join(p for p in (family, first) if p)
    return f"{text}, {suffix}" if suffix and text else text or suffix


# ----------------------------------------------------------------- file paths


def _parts(path: str) -> list[str]:
    return path.replace(os.sep, "/").split("/") if os.sep != "/" else path.split("/")


def common_folder(paths: Iterable[str]) -> str | None:
    """The deepest folder that holds every file in ``paths`` (as the paths are written:
    a relative path stays relative, a URL keeps its scheme), or None when they share
    none, or only the root."""
    common: list[str] | None = None
    for path in paths:
        folder = _parts(path)[:-1]
        if common is None:
            common = folder
            continue
        n = 0
        while n < min(len(common), len(folder)) and common[n] == folder[n]:
            n += 1
        common = common[:n]
    if not common or not "".join(common) or common[-1] == "":
        return None  # nothing shared, only the root, or a URL's bare scheme
    return "/".join(common)


class Paths:
    """File paths relative to a report's common folder (shown once, in full, in the
    page's header); with no common folder, paths stay as written."""

    def __init__(self, folder: str | None) -> None:
        self.folder = folder
        self._within = (
            None
            if folder is None
            else re.compile(r"(?<![\w.\-/\\])" + re.escape(folder) + r"[/\\]")
        )

    def relative(self, path: str | None) -> str:
        """A file path (or a ``file::element`` DICOM path) below the folder."""
        if path is None:
            return ""
        if self.folder is None:
            return path
        for sep in ("/", os.sep):
            if path.startswith(self.folder + sep):
                return path[len(self.folder) + 1 :]
        return path

    def in_text(self, text: str) -> str:
        """Every path below the folder inside a sentence, made relative."""
        return text if self._within is None else self._within.sub("", text)
