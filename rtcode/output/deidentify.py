"""De-identification for outputs that leave the department (``--deidentify``): keyed
pseudonyms for patient IDs, names, dates and UIDs, applied to results before they
are rendered."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

import numpy as np

ENV_KEY = "RTCODE_DEIDENTIFY_KEY"

T = TypeVar("T")


class PseudonymDate(str):
    """A date replaced by its pseudonym. Renderers format dates with ``isoformat()``
    or ``strftime()``: both give the pseudonym; arithmetic or comparison with a real
    date raises, so nothing computes silently with a date that is gone."""

    def isoformat(self) -> str:
        return str(self)

    def strftime(self, _format: str) -> str:
        return str(self)


@dataclass(frozen=True)
class Pseudonyms:
    key: bytes
    stable: bool  # True when the key came from the environment (same across runs)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Pseudonyms:
        env = os.environ if environ is None else environ
        text = env.get(ENV_KEY, "")
        if text:
            return cls(text.encode("utf-8"), True)
        return cls(secrets.token_bytes(32), False)

    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self.key, f"{kind}\x00{value}".encode(), hashlib.sha256).digest()

    def patient_id(self, value: str) -> str:
        return "PAT-" + self._digest("patient_id", value.strip()).hex()[:10].upper()

    def patient_name(self, value: str) -> str:
        return "NAME-" + self._digest("patient_name", _name_key(value)).hex()[:8].upper()

    def date(self, value: str) -> str:
        return "DATE-" + self._digest("date", value.replace("-", "")[:8]).hex()[:8].upper()

    def uid(self, value: str) -> str:
        return "2.25." + str(int.from_bytes(self._digest("uid", value.strip())[:16], "big"))


def _name_key(value: str) -> str:
    return " ".join(re.split(r"[\^\s_,]+", value.strip().upper())).strip()


# ------------------------------------------------------------------ collect


@dataclass
class _Found:
    patient_ids: set[str] = dataclasses.field(default_factory=set)
    names: set[str] = dataclasses.field(default_factory=set)
    dates: set[str] = dataclasses.field(default_factory=set)
    uids: set[str] = dataclasses.field(default_factory=set)


_DATE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})")


def _collect(obj: Any, found: _Found, seen: set[int]) -> None:
    if id(obj) in seen or isinstance(obj, (str, bytes, int, float, Enum, np.ndarray)):
        return
    seen.add(id(obj))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if _skip(obj):
            return
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name, None)
            name = f.name
            if isinstance(value, str) and value.strip():
                if name == "patient_id":
                    found.patient_ids.add(value.strip())
                elif name == "patient_name":
                    found.names.add(value.strip())
                elif (name == "date" or name.endswith("_date")) and _DATE.match(value.strip()):
                    found.dates.add(value.strip())
                elif name.endswith("_uid"):
                    found.uids.add(value.strip())
            elif isinstance(value, (dt.date, dt.datetime)):
                found.dates.add(value.strftime("%Y%m%d"))  # its text forms go too
            elif name.endswith("_uids") and isinstance(value, (tuple, list)):
                found.uids.update(v.strip() for v in value if isinstance(v, str) and v.strip())
            else:
                _collect(value, found, seen)
    elif isinstance(obj, Mapping):
        for v in obj.values():
            _collect(v, found, seen)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            _collect(v, found, seen)


# Configuration, not patient data: left as it is (a CMS PTP edit's dates are not a
# patient's). By name, so that this module imports none of them.
CONFIGURATION_TYPES = frozenset({"Policy", "PtpFile", "PtpEdit"})


def _skip(obj: Any) -> bool:
    return type(obj).__name__ in CONFIGURATION_TYPES or isinstance(obj, Pseudonyms)


# Rows of an input file that could not be read (a charges row the audit rejected): no
# field says which of their cells identify a patient, so nobody can pseudonymise them.
# Their raw text is withheld, and so are the values their reason quotes (a date of
# service in a form that is not ISO); the line number still finds the row in the file.
RAW_ROW_TYPES = frozenset({"RejectedRow"})
WITHHELD = "(withheld)"
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


def _withhold_raw(row: Any) -> Any:
    reason = getattr(row, "reason", None)
    changes: dict[str, Any] = {"text": ""}
    if getattr(row, "patient_id", None) is not None:
        changes["patient_id"] = None  # a patient of no plan has no pseudonym: withheld
    if isinstance(reason, str):
        changes["reason"] = _QUOTED.sub(WITHHELD, reason)
    return dataclasses.replace(row, **changes)


# ------------------------------------------------------------------ replace

_NOT_WORD = r"A-Za-z0-9"
_ANY_UID = r"(?<!\d)(?<!\d\.)\d+(?:\.\d+){4,}(?!\.?\d)"


def _text_replacer(found: _Found, p: Pseudonyms) -> Callable[[str], str]:
    """Replace every identifier in a text in one pass (a replaced part is never looked
    at again). Each alternative is a literal with word or number boundaries; only the
    literals a text contains go into the expression used on it, so long result trees
    stay fast."""
    alts: list[tuple[str, str, Callable[[str], str]]] = []  # (literal, pattern, handler)
    for uid in sorted(found.uids, key=len, reverse=True):
        alts.append((uid, rf"(?<!\d)(?<!\d\.){re.escape(uid)}(?!\.?\d)", p.uid))
    forms: dict[str, str] = {}
    for d in found.dates:
        m = _DATE.match(d)
        if m:
            y, mo, da = m.groups()
            forms[f"{y}{mo}{da}"] = forms[f"{y}-{mo}-{da}"] = f"{y}{mo}{da}"
    for form in sorted(forms, key=len, reverse=True):
        handler = _const(p.date(forms[form]))
        alts.append((form, rf"(?<!\d){re.escape(form)}(?!\d)", handler))
    for pid in sorted(found.patient_ids, key=len, reverse=True):
        if len(pid) >= 3:
            pattern = rf"(?<![{_NOT_WORD}]){re.escape(pid)}(?![{_NOT_WORD}])"
        else:  # short: only as a whole field or a whole path segment
            pattern = rf"(?<![^/\\]){re.escape(pid)}(?![^/\\])"
        alts.append((pid, pattern, _const(p.patient_id(pid))))
    for name in sorted(found.names, key=len, reverse=True):
        for variant in sorted(_name_variants(name), key=len, reverse=True):
            pattern = rf"(?i:(?<![{_NOT_WORD}]){re.escape(variant)}(?![{_NOT_WORD}]))"
            alts.append((variant, pattern, _const(p.patient_name(name))))
    # A single name part ("SMITH") is replaced where it stands alone, as a whole field
    # or a whole path segment; inside other words it is kept, or common words that are
    # also names ("breast", "phantom") would vanish from every label.
    tokens = {t for n in found.names for t in _name_tokens(n)}
    for token in sorted(tokens, key=len, reverse=True):
        pattern = rf"(?i:(?<![^/\\]){re.escape(token)}(?![^/\\]))"
        alts.append((token, pattern, _const(p.patient_name(token))))
    lowered = [lit.lower() for lit, _, _ in alts]
    compiled: dict[tuple[int, ...], tuple[re.Pattern[str], list[Callable[[str], str]]]] = {}
    done: dict[str, str] = {}  # the same strings recur (directions, names, paths)

    def replace(text: str) -> str:
        if text in done:
            return done[text]
        low = text.lower()
        present = tuple(i for i, lit in enumerate(lowered) if lit in low)
        if present not in compiled:
            patterns = [alts[i][1] for i in present] + [_ANY_UID]
            handlers = [alts[i][2] for i in present] + [p.uid]
            regex = re.compile("|".join(f"({x})" for x in patterns))
            compiled[present] = (regex, handlers)
        regex, handlers = compiled[present]

        def one(m: re.Match[str]) -> str:
            return handlers[m.lastindex - 1](m.group(0)) if m.lastindex else m.group(0)

        done[text] = result = regex.sub(one, text) if present or _DIGITS.search(text) else text
        return result

    return replace


_DIGITS = re.compile(r"\d\.\d")


def _const(value: str) -> Callable[[str], str]:
    return lambda _matched: value


def _name_variants(name: str) -> set[str]:
    """How a DICOM name (Family^Given^Middle) shows up in text and folder names."""
    raw = name.strip()
    parts = [x.strip() for x in raw.split("^") if x.strip()]
    out = {raw}
    if parts:
        out |= {" ".join(parts), "_".join(parts), ", ".join(parts), "^".join(parts)}
        if len(parts) >= 2:
            out |= {f"{parts[1]} {parts[0]}", f"{parts[1]}_{parts[0]}"}
    return {v for v in out if v}


def _name_tokens(name: str) -> set[str]:
    """Name parts with at least three letters: replaced wherever they stand as a word."""
    return {t for t in re.split(r"[\^\s_,\-.]+", name) if sum(ch.isalpha() for ch in t) >= 3}


def _rewrite(obj: Any, text: Callable[[str], str], memo: dict[int, Any]) -> Any:
    if obj is None or isinstance(obj, (bool, int, float, bytes, Enum, np.ndarray, np.generic)):
        return obj  # Enum before str: str-valued enums (Category) stay what they are
    if isinstance(obj, str):
        return text(obj)
    if isinstance(obj, (dt.date, dt.datetime)):
        return PseudonymDate(text(obj.strftime("%Y%m%d")))
    key = id(obj)
    if key in memo:
        return memo[key]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if _skip(obj):
            return obj
        if type(obj).__name__ in RAW_ROW_TYPES:
            obj = _withhold_raw(obj)
        new = copy.copy(obj)
        memo[key] = new
        for f in dataclasses.fields(obj):
            if hasattr(obj, f.name):
                object.__setattr__(new, f.name, _rewrite(getattr(obj, f.name), text, memo))
        return new
    if isinstance(obj, Mapping):
        out: dict[Any, Any] = {}
        memo[key] = out
        for k, v in obj.items():
            out[_rewrite(k, text, memo)] = _rewrite(v, text, memo)
        return out
    if isinstance(obj, list):
        out_list: list[Any] = []
        memo[key] = out_list
        out_list.extend(_rewrite(v, text, memo) for v in obj)
        return out_list
    if isinstance(obj, tuple):
        items = [_rewrite(v, text, memo) for v in obj]
        result = type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
        memo[key] = result
        return result
    if isinstance(obj, (set, frozenset)):
        return type(obj)(_rewrite(v, text, memo) for v in obj)
    return obj


def deidentify(obj: T, pseudonyms: Pseudonyms) -> T:
    """A copy of ``obj`` with patient IDs, names, dates and UIDs replaced.

    ``deidentify(result, pseudonyms)`` returns a copy of any result tree (a scan, a
    report, a single plan result: frozen dataclasses, tuples, lists, dicts) in which

    - patient IDs become ``PAT-`` + 10 hex digits, patient names ``NAME-`` + 8,
    - dates (fields named ``date`` or ``*_date``, and any ``datetime.date`` value; their
      YYYYMMDD and YYYY-MM-DD forms in text) become ``DATE-`` + 8 hex digits; a
      ``datetime.date`` value becomes a ``PseudonymDate``, that text with the
      ``isoformat()`` and ``strftime()`` renderers call (date arithmetic on it fails),
    - UIDs (fields named ``*_uid``/``*_uids``, and anything in text shaped like a DICOM
      UID with five or more components, e.g. in a file name) become ``2.25.`` UIDs,

    everywhere: in the fields themselves and inside every other string (paths, findings,
    flags, notes, error messages). Pseudonyms are keyed hashes (HMAC-SHA256): the same
    input and key always give the same pseudonym, so one patient's plans still group
    together, and without the key nobody can test a guessed ID against a pseudonym.
    The key comes from ``RTCODE_DEIDENTIFY_KEY``; without it a random key is drawn for
    the run (pseudonyms then hold within one output only).

    Patient IDs of one or two characters, and single parts of a patient name, are
    replaced only where they stand alone (a whole field or a whole path segment), not
    inside other words; whole names (``SMITH^JOHN``, ``Smith John``, ``John_Smith``)
    are replaced wherever they appear, in any case. Free text that nobody marked as
    identifying (ROI names, plan labels) is otherwise kept.

    Rows of an input that could not be read (charges rows the audit rejected) are not
    pseudonymised but withheld: their raw text is emptied and the values their reason
    quotes become ``(withheld)``, since no field says which of their cells identify a
    patient. Their line numbers stay.

    Other commands (``inspect``, ``audit``) call it the same way, on whatever they
    render: ``deidentify(thing, Pseudonyms.from_environment())``.
    """
    found = _Found()
    _collect(obj, found, set())
    replace = _text_replacer(found, pseudonyms)
    rewritten: T = _rewrite(obj, replace, {})  # the same shape, strings replaced
    return rewritten
