"""What real exports do that the DICOM standard does not describe: the known quirks.

Postel's rule for files other systems wrote: accept what can be read unambiguously,
record the oddity as a flag with its DICOM path (``facts.Oddity``), refuse only what
cannot be trusted, and never let a plan that was found disappear from the output.

Tables with their source (like pynetdicom's status tables), and what the coding step
does with vendor and machine names (``is_tomotherapy``, ``is_gamma_knife``,
``gamma_knife_plan_names``, ``gamma_plan_flags``); the code that acts on a row names
the row's ``flag``. To add the next quirk: add a row to ``QUIRKS`` (vendor, what the
file does, how rtcode reads it, the flag), handle it where the row's ``where`` says (a
name match: here), and add a synthetic case that shows it (a test builder, or a sample
case in ``scripts/make_sample_data.py``).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import NamedTuple

from rtcode.model.codes import Flag
from rtcode.model.facts import Beam, Modality, Oddity, Plan


class KnownClass(NamedTuple):
    """A SOP Class UID that is not one of the four RT objects' standard classes."""

    vendor: str
    what: str  # what the object is, in a physicist's words
    modality: Modality | None  # what it is read as (None: skipped)
    note: str  # what differs from the standard object, or why it is skipped


# Private SOP classes that vendors use for ordinary RT objects. Files are recognised by
# their content (Modality, BeamSequence, ...), whatever their class; this table only
# names the vendor and what differs, for the flag and for `rtcode listen`, which must
# accept these classes to receive them.
PRIVATE_SOP_CLASSES: dict[str, KnownClass] = {
    "1.2.246.352.70.1.70": KnownClass(
        "Varian (Halcyon, Ethos)",
        "RT Plan in Varian's private class",
        Modality.RTPLAN,
        "a two-layer MLC (MLCX1 and MLCX2): the aperture is what both layers leave open",
    ),
    "2.16.840.1.114493.1.2.1.4.1.1.481.5": KnownClass(
        "ViewRay (MRIdian)",
        "RT Plan in ViewRay's private class",
        Modality.RTPLAN,
        "two MLC layers both typed MLCX, with different pair counts (e.g. 34 and 35)",
    ),
}

# Standard classes (PS3.4 Annex B.5) of objects that are not used for coding: skipped
# from the file meta, with the reason in the skipped list.
OTHER_STANDARD_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.481.1": "RT Image (portal or DRR image): not used for coding",
    "1.2.840.10008.5.1.4.1.1.481.4": "RT Beams Treatment Record: delivery, not planning",
    "1.2.840.10008.5.1.4.1.1.481.6": "RT Brachy Treatment Record: delivery, not planning",
    "1.2.840.10008.5.1.4.1.1.481.7": "RT Treatment Summary Record: not used for coding",
    "1.2.840.10008.5.1.4.1.1.481.9": "RT Ion Beams Treatment Record: delivery, not planning",
    "1.2.840.10008.5.1.4.1.1.66": "Raw Data: not used for coding",
    "1.2.840.10008.5.1.4.1.1.66.1": "Spatial Registration: not used for coding",
    "1.2.840.10008.5.1.4.1.1.66.3": "Deformable Spatial Registration: not used for coding",
    "1.2.840.10008.5.1.4.1.1.104.1": "Encapsulated PDF: not used for coding",
}


class Quirk(NamedTuple):
    vendor: str
    what_the_file_does: str
    how_rtcode_reads_it: str
    flag: str  # the Oddity/Flag id raised
    where: str  # the module that acts on it


QUIRKS: tuple[Quirk, ...] = (
    Quirk(
        "Varian Halcyon/Ethos, ViewRay MRIdian",
        "an ordinary RT Plan under a private SOP Class UID",
        "recognised by Modality and content (BeamSequence), read as an RT Plan",
        "private_sop_class",
        "read.py (kind by content), extract.py (the flag)",
    ),
    Quirk(
        "any",
        "a file whose SOP class rtcode does not know, with Modality RTPLAN, RTDOSE or"
        " RTSTRUCT or their content",
        "read as that object",
        "unknown_sop_class",
        "read.py (kind by content), extract.py (the flag)",
    ),
    Quirk(
        "ViewRay MRIdian",
        "two MLC layers in BeamLimitingDeviceSequence both typed MLCX (e.g. 35 and 34"
        " pairs), and two MLCX position items in each control point",
        "the later layer is keyed MLCX#2; each position item goes to the first layer, in"
        " order, not yet positioned at that control point whose pair count fits its number"
        " of values (none fits: an error); the aperture is what both layers leave open",
        "mlc_layers_share_a_type",
        "extract.py (extract_bulk.py steps aside)",
    ),
    Quirk(
        "Leksell GammaPlan",
        "NumberOfBeams 1 in the fraction group, ReferencedBeamSequence empty; the one beam"
        " is a placeholder (one jaw pair, no positions): the shots are not in the RT Plan",
        "recognised when Manufacturer, ManufacturerModelName or a beam's Manufacturer or"
        " TreatmentMachineName names Leksell, GammaPlan, Gamma Knife, Perfexion, LGK,"
        " Elekta Instrument or Elekta with Icon, and no beam has an MLC or any leaf or jaw"
        " position; the count is flagged (count_mismatch) and the beam taken from"
        " BeamSequence; the plan is stereotactic radiosurgery: 3-D when its structure set"
        " (a contoured target) and dose (3-D grid or DVH) link, else undetermined, never an"
        " isodose plan",
        "gamma_knife_plan",
        "extract.py (the count), vendors.py (the names), coding/rules.py (the code)",
    ),
    Quirk(
        "any",
        "a count that disagrees with the sequence it counts: a fraction group's"
        " NumberOfBeams, a beam's or a brachytherapy channel's NumberOfControlPoints",
        "the sequence is read; a fraction group's references are trusted, and when no"
        " fraction group references a beam although one declares some, the beams are taken"
        " from BeamSequence (as without fraction groups); counts beyond the policy's"
        " [limits] are still refused",
        "count_mismatch",
        "extract.py (extract_bulk.py steps aside), coding/ports.py (the fallback)",
    ),
    Quirk(
        "Elekta (Monaco), any forward plan",
        "closed leaf pairs parked at the machine's minimum gap anywhere inside the jaws;"
        " a jaw that moves 1 mm between field-in-field segments exposes a sliver of a"
        " leaf pair",
        "sub-segments are compared with the main aperture by jaw-clipped open area:"
        " openings narrower than modulation.closed_leaf_gap_mm count as closed, parts"
        " reaching no further than modulation.fif_inside_tolerance_mm past the main edge"
        " (the sliver) as inside; the share of a sub-segment's area outside decides, a"
        " share between the nested and the modulated thresholds is field-in-field with"
        " 77301 as the alternative",
        "fif_borderline",
        "metrics.py, coding/techniques.py",
    ),
    Quirk(
        "Elekta (Monaco)",
        "a large open field whose outermost leaf pairs stand in from the jaws only to"
        " round the field's corners",
        "an aperture that is its jaw rectangle but for leaves at its ends covering at most"
        " isodose.corner_leaves_max_area_share of it, over at most"
        " isodose.corner_leaves_max_extent_share of its length, is rectangular (no 77334)",
        "",
        "metrics.py, coding/techniques.py, coding/related.py",
    ),
)


_STANDARD_NAMES = {
    Modality.RTPLAN: "RT Plan Storage class (1.2.840.10008.5.1.4.1.1.481.5)",
    Modality.RTIONPLAN: "RT Ion Plan Storage class (1.2.840.10008.5.1.4.1.1.481.8)",
    Modality.RTDOSE: "RT Dose Storage class (1.2.840.10008.5.1.4.1.1.481.2)",
    Modality.RTSTRUCT: "RT Structure Set Storage class (1.2.840.10008.5.1.4.1.1.481.3)",
}


def class_oddity(uid: str | None, modality: Modality, path: str) -> Oddity:
    """The flag for an RT object read by its content because its SOP Class UID
    (``uid``; None: the file gives none) is not the standard class of what it is."""
    where = f"{path}::SOPClassUID"
    standard = _STANDARD_NAMES[modality]
    if uid is None:
        return Oddity(
            "sop_class_missing",
            f"no SOP Class UID: read as {modality.value} by its content (Modality and"
            f" sequences); the standard class is the {standard}",
            where,
            "warning",
        )
    known = PRIVATE_SOP_CLASSES.get(uid)
    if known is not None:
        return Oddity(
            "private_sop_class",
            f"SOP Class UID {uid} is a private class of {known.vendor} ({known.what}): read"
            f" as {modality.value} by its content; what differs: {known.note}",
            where,
        )
    return Oddity(
        "unknown_sop_class",
        f"SOP Class UID {uid} is neither the {standard} nor a vendor class rtcode knows:"
        f" read as {modality.value} by its content (Modality and sequences); check that"
        " it was read as intended",
        where,
        "warning",
    )


# ------------------------------------------------------- names the coding step matches

# Leksell Gamma Knife (QUIRKS, gamma_knife_plan): names of the planning system (Leksell
# GammaPlan, by Elekta Instrument AB) and of the machines (Leksell Gamma Knife
# Perfexion, Icon; "LGK"), matched in lower case.
_GAMMA_KNIFE = re.compile(
    r"leksell|gamma ?plan|gamma ?knife|perfexion|elekta instrument|\blgk\b"
    r"|\belekta\b.*\bicon\b|\bicon\b.*\belekta\b"
)


def treatment_system(beam: Beam) -> str:
    """The beam's Manufacturer and TreatmentMachineName, in lower case, for matching."""
    return " ".join(filter(None, [beam.manufacturer, beam.machine])).lower()


def is_tomotherapy(system: str) -> bool:
    """Whether a ``treatment_system`` is a TomoTherapy machine (helical delivery)."""
    return "tomo" in system


def is_gamma_knife(system: str) -> bool:
    """Whether a ``treatment_system`` names a Gamma Knife (cobalt sources, no linac)."""
    return "gamma" in system or _GAMMA_KNIFE.search(system) is not None


def gamma_knife_plan_names(plan: Plan) -> str | None:
    """The names that make ``plan`` a Leksell GammaPlan plan, or None. The rule: the
    planning system (Manufacturer, ManufacturerModelName) or a beam's Manufacturer or
    TreatmentMachineName names Leksell, GammaPlan, Gamma Knife, Perfexion, LGK, Elekta
    Instrument or Elekta with Icon; and no beam is more than a placeholder (no MLC, no
    leaf or jaw position at any control point): the shots are not in the RT Plan."""
    names = [plan.planning_system.manufacturer, plan.planning_system.model]
    for b in plan.beams:
        names += [b.manufacturer, b.machine]
    text = " | ".join(dict.fromkeys(n for n in names if n))
    if not _GAMMA_KNIFE.search(text.lower()):
        return None
    for b in plan.beams:
        positions = b.control_points.positions_mm.values()
        if any(d.is_mlc for d in b.devices) or any(bool((p == p).any()) for p in positions):
            return None  # a beam with a real aperture: not the placeholder of GammaPlan
    return text


def gamma_plan_flags(flags: list[Flag], gamma_knife: str | None) -> list[Flag]:
    """GammaPlan's fraction group counts a beam it does not reference: its normal output
    (QUIRKS, gamma_knife_plan), not damage; the flag stays, as information."""
    if gamma_knife is None:
        return flags
    return [
        replace(f, severity="info")
        if f.flag == "count_mismatch" and (f.dicom_path or "").endswith(".NumberOfBeams")
        else f
        for f in flags
    ]
