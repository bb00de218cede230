"""The fast path's item walker (``views._elements``) against the byte layer's walker.

``_elements`` is ``elements.Elements`` written out as one loop (for speed): on the
items of real sample plans, whole and with bytes changed or cut, it must find the same
elements at the same places, or find the same items unusual.
"""

from __future__ import annotations

import copy
import io
import random
import warnings

import pydicom
import pytest
from conftest import SAMPLE_DATA, undefined_lengths
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from rtcode.dicom import views
from rtcode.dicom.elements import CHARSET, ITEM_END, BadHeader, Elements
from rtcode.dicom.views import Unusual

PLANS = [
    SAMPLE_DATA / "06_four_field_box_3d" / "RP.dcm",
    SAMPLE_DATA / "11_vmat_two_arcs" / "RP.dcm",
]
SYNTAXES = {"explicit": ExplicitVRLittleEndian, "implicit": ImplicitVRLittleEndian}


def _reference_elements(buf: bytes, start: int, end: int | None, implicit: bool, depth: int):
    """What ``_elements`` must return, walked by ``elements.Elements`` (nested
    sequences through ``views._items``, as the fast path walks them)."""
    found = {}

    def sequence(buf, pos, k, vr):
        if (vr != "SQ" and not (implicit and views._is_sequence(k))) or k == CHARSET:
            raise Unusual
        items, after = views._items(buf, pos, None, implicit, depth + 1)
        return buf, items, after

    walk = Elements(buf, start, end, implicit, sequence=sequence)
    try:
        for k, vr, begin, stop in walk:
            if k in found:
                raise Unusual
            if k == CHARSET:
                views._check_charset(vr, buf[begin:stop], implicit)
            found[k] = (vr, begin, stop)
        if walk.stopped is None:
            if end is None:
                raise Unusual
            return found, walk.pos
        pos = walk.pos
        if walk.stopped != ITEM_END or end is not None or pos + 8 > len(buf):
            raise Unusual
        if int.from_bytes(buf[pos + 4 : pos + 8], "little") != 0:  # the delimiter's length
            raise Unusual
    except BadHeader:
        raise Unusual from None
    return found, pos + 8


def _plain(found) -> object:
    """Elements as comparable values: walked sequences as their items' elements."""
    out = {}
    for k, (vr, start, stop) in found.items():
        if start is None:
            stop = [_plain(item.elements) for item in stop]
        out[k] = (vr, start, stop)
    return out


def _outcome(walker, buf: bytes, start: int, end: int | None, implicit: bool):
    try:
        found, pos = walker(buf, start, end, implicit, 1)
    except Unusual:
        return "unusual"
    return _plain(found), pos


def _beam_sequence(path, syntax: str, undefined: bool) -> tuple[bytes, int, int | None]:
    """(bytes, where the first beam item's elements start, where they end: None for an
    undefined length) of a sample plan written in ``syntax``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = copy.deepcopy(pydicom.dcmread(path, force=True))
        if undefined:
            undefined_lengths(ds)
        ds.file_meta.TransferSyntaxUID = SYNTAXES[syntax]
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
    data = out.getvalue()
    tag = b"\x0a\x30\xb0\x00"  # BeamSequence (300A,00B0), little endian
    at = data.index(tag)
    header = 8 if syntax == "implicit" else 12
    item = at + header  # the first item's header
    length = int.from_bytes(data[item + 4 : item + 8], "little")
    return data, item + 8, None if length == 0xFFFFFFFF else item + 8 + length


@pytest.mark.parametrize("path", PLANS, ids=lambda p: p.parent.name)
@pytest.mark.parametrize("syntax", sorted(SYNTAXES))
@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined"])
def test_the_item_walker_finds_what_the_byte_layer_finds(path, syntax, undefined):
    data, start, end = _beam_sequence(path, syntax, undefined)
    implicit = syntax == "implicit"
    whole = _outcome(views._elements, data, start, end, implicit)
    assert whole != "unusual"  # a plain beam item: every element found
    assert whole == _outcome(_reference_elements, data, start, end, implicit)
    rng = random.Random(f"{path.parent.name}-{syntax}-{undefined}")
    stop = end if end is not None else min(len(data), start + 4096)
    unusual = 0
    for _ in range(300):
        changed = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            changed[rng.randrange(start, stop)] = rng.randrange(256)
        cut = rng.choice([len(changed), rng.randrange(start, len(changed))])
        buf = bytes(changed[:cut])
        limit = None if end is None else min(end, len(buf))
        fast = _outcome(views._elements, buf, start, limit, implicit)
        assert fast == _outcome(_reference_elements, buf, start, limit, implicit)
        unusual += fast == "unusual"
    assert unusual > 0  # the changes did reach the checks
