"""How each beam delivers its dose (``Technique``), and what counts as modulated.

``beam_technique`` walks ``TECHNIQUE_RULES`` in order, first match wins; the numbers
come from ``measure.metrics`` and the thresholds from the policy's ``[modulation]`` and
``[isodose]`` sections. ``MODULATED`` and ``codes_as_imrt`` are the one place that says
which techniques are intensity modulated: the IMRT rule (rules.py), the decision table
(decisions.py) and the related codes (related.py) all ask here.
"""

from __future__ import annotations

from collections.abc import Callable

from rtcode.coding.policy import Policy
from rtcode.dicom import vendors
from rtcode.measure.metrics import BeamMetrics
from rtcode.model.codes import ARCS, BeamAssessment, Technique
from rtcode.model.facts import Beam

# Deliveries that modulate the intensity across the field (coding-rules: step-and-shoot,
# sliding window, VMAT, helical tomotherapy, compensator IMRT).
MODULATED = frozenset(
    {
        Technique.COMPENSATOR_IMRT,
        Technique.STEP_AND_SHOOT_IMRT,
        Technique.SLIDING_WINDOW_IMRT,
        Technique.VMAT,
        Technique.HELICAL_TOMOTHERAPY,
    }
)
# Beams shaped to a target (beam's-eye-view design) by their technique alone.
SHAPED = frozenset(
    {
        Technique.CONFORMAL,
        Technique.FIELD_IN_FIELD,
        Technique.STEP_AND_SHOOT_IMRT,
        Technique.SLIDING_WINDOW_IMRT,
        Technique.ION_PASSIVE_SCATTERING,
        Technique.ION_PENCIL_BEAM_SCANNING,
        Technique.GAMMA_KNIFE,
        Technique.STEREOTACTIC_CONE,
        *ARCS,
    }
)


def modulates_intensity(technique: Technique) -> bool:
    """Whether the delivery itself modulates the intensity (an IMRT delivery)."""
    return technique in MODULATED


def codes_as_imrt(technique: Technique, policy: Policy) -> bool:
    """Whether a port with this technique makes the plan IMRT (77301): a modulated
    delivery, or pencil-beam scanning where the policy codes it as IMRT."""
    if technique in MODULATED:
        return True
    return (
        technique is Technique.ION_PENCIL_BEAM_SCANNING
        and policy.modulation.pencil_beam_scanning_code == "77301"
    )


# ------------------------------------------------------------- the technique rules

Found = tuple[Technique, str] | None
TechniqueRule = Callable[[Beam, BeamMetrics, Policy], Found]


def _ion(beam: Beam, m: BeamMetrics, policy: Policy) -> Found:
    if not (beam.is_ion or (beam.radiation_type or "") in ("PROTON", "ION")):
        return None
    mode = beam.scan_mode
    if mode in ("MODULATED", "MODULATED_SPEC"):
        return Technique.ION_PENCIL_BEAM_SCANNING, f"ScanMode {mode}: pencil-beam scanning"
    if mode in ("NONE", "UNIFORM"):
        return Technique.ION_PASSIVE_SCATTERING, f"ScanMode {mode}: passive or uniform scanning"
    return Technique.UNKNOWN, "ion beam without ScanMode: delivery cannot be determined"


def _electron(beam: Beam, m: BeamMetrics, policy: Policy) -> Found:
    if beam.radiation_type != "ELECTRON":
        return None
    parts = [f"applicator {a.applicator_id or a.applicator_type}" for a in beam.applicators]
    parts += [f"{k.block_type or 'block'} {k.name or ''}".strip() for k in beam.blocks]
    return Technique.ELECTRON, "electron beam" + (" with " + ", ".join(parts) if parts else "")


def _device_or_machine(beam: Beam, m: BeamMetrics, policy: Policy) -> Found:
    """What a compensator, the machine (vendors.py) or a cone says before any aperture."""
    if (beam.number_of_compensators or 0) > 0 and policy.modulation.compensator_is_imrt:
        return Technique.COMPENSATOR_IMRT, (
            f"{beam.number_of_compensators} compensator(s) modulate the intensity"
        )
    system = vendors.treatment_system(beam)
    if vendors.is_tomotherapy(system):
        return Technique.HELICAL_TOMOTHERAPY, "TomoTherapy machine: helical intensity modulation"
    if vendors.is_gamma_knife(system):
        return Technique.GAMMA_KNIFE, "Gamma Knife: collimated cobalt sources, no linac geometry"
    if any((a.applicator_type or "").upper() == "STEREOTACTIC" for a in beam.applicators):
        return Technique.STEREOTACTIC_CONE, "stereotactic cone applicator"
    return None


def _unreadable(beam: Beam, m: BeamMetrics, policy: Policy) -> Found:
    if m.leaf_data_stripped:
        return Technique.UNKNOWN, "every MLC leaf position is 0: leaf data stripped from export"
    if not m.weights_valid and m.control_points >= 2:
        return Technique.UNKNOWN, "cumulative meterset weights missing or decreasing"
    return None


def _arc(beam: Beam, m: BeamMetrics, policy: Policy) -> Found:
    mod = policy.modulation
    # (comparisons written so that NaN means "no": not an arc, aperture fixed)
    if not m.gantry_beam_on_travel_deg >= mod.arc_min_gantry_travel_deg:
        return None
    span = f"arc of {m.gantry_beam_on_travel_deg:.0f} deg"
    change = m.mean_aperture_change_mm
    if not m.beam_on_leaf_motion_mm > mod.arc_aperture_change_mm:
        return Technique.STATIC_ARC, f"{span} with a fixed aperture"
    cv = m.mu_per_degree_cv
    if cv is not None and cv >= mod.vmat_min_mu_per_degree_cv:
        return Technique.VMAT, (
            f"{span}, aperture changes {change:.1f} mm per control point"
            f" and MU/degree varies (CV {cv:.2f})"
        )
    cv_text = "unknown" if cv is None else f"{cv:.2f}"
    convex = m.convexity
    if convex is not None and convex < mod.dca_min_convexity:
        return Technique.VMAT, (
            f"{span} at constant MU/degree (CV {cv_text}), but the leaves carve inside"
            f" the outline (convexity {convex:.2f}): a modulated arc"
        )
    convex_text = "unknown" if convex is None else f"{convex:.2f}"
    return Technique.DYNAMIC_CONFORMAL_ARC, (
        f"{span}, aperture changes {change:.1f} mm per control point"
        f" at constant MU/degree (CV {cv_text}) and follows a convex outline"
        f" (convexity {convex_text})"
    )


def _moving_leaves(beam: Beam, m: BeamMetrics, policy: Policy) -> Found:
    if m.beam_on_leaf_travel_mm > policy.modulation.dynamic_leaf_travel_mm:
        return Technique.SLIDING_WINDOW_IMRT, (
            f"leaves travel up to {m.beam_on_leaf_travel_mm:.1f} mm while the beam is on"
            " at a fixed gantry angle"
        )
    return None


def _segments(beam: Beam, m: BeamMetrics, policy: Policy) -> Found:
    if len(m.segments) < 2:
        return None
    verdict, why = fif_verdict(m, policy)
    if verdict == "modulated":
        return Technique.STEP_AND_SHOOT_IMRT, why + ": step-and-shoot modulation"
    if verdict == "borderline":
        return Technique.FIELD_IN_FIELD, why + ": field-in-field, borderline"
    if verdict == "unknown":
        return Technique.UNKNOWN, why + ": field-in-field or step-and-shoot cannot be told"
    return Technique.FIELD_IN_FIELD, why + ": field-in-field"


def _one_aperture(beam: Beam, m: BeamMetrics, policy: Policy) -> Found:
    iso = policy.isodose
    irregular = m.aperture_irregularity_mm
    if mlc_shapes_field(m, policy):
        return Technique.CONFORMAL, f"one MLC-shaped aperture (edges vary by {irregular:.0f} mm)"
    if beam.blocks:
        return Technique.CONFORMAL, f"{len(beam.blocks)} block(s) shape the field"
    if m.has_mlc and irregular is None:
        return Technique.UNKNOWN, "MLC present but its aperture cannot be computed"
    share, extent = m.corner_leaf_area_share, m.corner_leaf_extent_share
    if m.has_mlc and irregular is not None and irregular > iso.rectangle_tolerance_mm:
        assert share is not None and extent is not None  # (else mlc_shapes_field)
        return Technique.OPEN, (
            f"rectangular field with leaves standing in at its corners only: edges vary by"
            f" {irregular:.0f} mm, but the leaves cover {share:.1%} of the rectangle (at most"
            f" {iso.corner_leaves_max_area_share:.1%}) within {extent:.0%} of"
            f" its length from either end (at most"
            f" {iso.corner_leaves_max_extent_share:.0%})"
        )
    return Technique.OPEN, "rectangular field (jaws or rectangular MLC)"


# In order, first match wins; the last always matches.
TECHNIQUE_RULES: tuple[TechniqueRule, ...] = (
    _ion,
    _electron,
    _device_or_machine,
    _unreadable,
    _arc,
    _moving_leaves,
    _segments,
    _one_aperture,
)


def beam_technique(beam: Beam, m: BeamMetrics, policy: Policy) -> tuple[Technique, str]:
    """The beam's technique and why, in words: the first of ``TECHNIQUE_RULES`` that
    recognises it."""
    for rule in TECHNIQUE_RULES:
        found = rule(beam, m, policy)
        if found is not None:
            return found
    raise AssertionError("_one_aperture always decides")  # pragma: no cover


def mlc_shapes_field(m: BeamMetrics, policy: Policy) -> bool:
    """Whether an MLC shapes the beam's aperture(s): its open edges vary by more than
    the rectangle tolerance, unless the aperture is a rectangle whose leaves stand in
    only at its corners, covering no more than the corner tolerance of its area (the
    rounded corners of a machine's largest field)."""
    iso = policy.isodose
    irregular = m.aperture_irregularity_mm
    if not m.has_mlc or irregular is None or irregular <= iso.rectangle_tolerance_mm:
        return False
    share, extent = m.corner_leaf_area_share, m.corner_leaf_extent_share
    return (
        share is None
        or extent is None
        or share > iso.corner_leaves_max_area_share
        or extent > iso.corner_leaves_max_extent_share
    )


def fif_verdict(m: BeamMetrics, policy: Policy) -> tuple[str, str]:
    """For a beam of two or more static segments: "field_in_field" (sub-segments nested
    in the main aperture), "borderline" (partly outside it: coded as field-in-field, with
    IMRT as the alternative), "modulated" (step-and-shoot IMRT), or "unknown" (few
    segments, most MU in the main one, but no apertures to compare); and the numbers
    that decided, in words."""
    mod = policy.modulation
    n = len(m.segments)
    main = m.largest_segment_mu_fraction
    text = f"{n} static segments, main segment " + (
        "of unknown MU" if main is None else f"{main:.0%} of MU"
    )
    area = m.subsegment_outside_area_mm2
    share = m.subsegment_outside_share
    mu = m.outside_mu_fraction
    if area is None or share is None or mu is None:
        share = None
        text += ", sub-segments cannot be compared with it"
    else:
        text += (
            f", sub-segments open up to {area:.0f} mm^2 outside it ({share:.1%} of a"
            f" sub-segment's open area; those reaching outside carry {mu:.0%} of MU)"
        )
    if n > mod.fif_max_segments:
        return "modulated", f"{text}; more than {mod.fif_max_segments} segments"
    min_main = mod.fif_min_main_segment_mu_fraction
    if main is None or main < min_main:
        return "modulated", f"{text}; main segment below {min_main:.0%} of MU"
    if share is None:
        return "unknown", text
    nested = mod.fif_nested_max_outside_share
    modulated = mod.fif_modulated_min_outside_share
    if share <= nested:
        return "field_in_field", f"{text}; nested (at most {nested:.0%} outside)"
    if share >= modulated:
        return "modulated", f"{text}; not nested (at least {modulated:.0%} outside)"
    return "borderline", f"{text}; partly outside (between {nested:.0%} and {modulated:.0%})"


def is_borderline(b: BeamAssessment, policy: Policy) -> bool:
    """A field-in-field port whose sub-segments lie partly outside the main aperture."""
    return (
        b.technique is Technique.FIELD_IN_FIELD
        and fif_verdict(b.metrics, policy)[0] == "borderline"
    )


# ------------------------------------------------------- what the evidence shows

# BeamMetrics that a technique's evidence shows when known, with their decimals.
_TECHNIQUE_NUMBERS = (
    ("largest_segment_mu_fraction", 3),
    ("subsegment_outside_area_mm2", 1),
    ("subsegment_outside_share", 4),
    ("outside_mu_fraction", 3),
    ("aperture_irregularity_mm", 2),
    ("corner_leaf_area_share", 4),
    ("corner_leaf_extent_share", 4),
    ("mu_per_degree_cv", 3),
    ("convexity", 3),
)


def technique_numbers(b: BeamAssessment) -> dict[str, float | int]:
    """The measurements a beam's technique was decided on (the evidence's ``observed``)."""
    m = b.metrics
    out: dict[str, float | int] = {
        "segments": len(m.segments),
        "control_points": m.control_points,
        "beam_on_leaf_travel_mm": round(m.beam_on_leaf_travel_mm, 2),
        "gantry_beam_on_travel_deg": round(m.gantry_beam_on_travel_deg, 1),
    }
    for name, digits in _TECHNIQUE_NUMBERS:  # those the data could say
        value = getattr(m, name)
        if value is not None:
            out[name] = round(value, digits)
    if m.gantry_beam_on_travel_deg > 0:
        out["mean_aperture_change_mm"] = round(m.mean_aperture_change_mm, 2)
    return out


def technique_thresholds(policy: Policy) -> dict[str, float | int]:
    """The thresholds techniques are decided with (the evidence's ``threshold``)."""
    mod, iso = policy.modulation, policy.isodose
    return {
        "dynamic_leaf_travel_mm": mod.dynamic_leaf_travel_mm,
        "segment_tolerance_mm": mod.segment_tolerance_mm,
        "fif_max_segments": mod.fif_max_segments,
        "fif_min_main_segment_mu_fraction": mod.fif_min_main_segment_mu_fraction,
        "closed_leaf_gap_mm": mod.closed_leaf_gap_mm,
        "fif_inside_tolerance_mm": mod.fif_inside_tolerance_mm,
        "fif_nested_max_outside_share": mod.fif_nested_max_outside_share,
        "fif_modulated_min_outside_share": mod.fif_modulated_min_outside_share,
        "arc_min_gantry_travel_deg": mod.arc_min_gantry_travel_deg,
        "vmat_min_mu_per_degree_cv": mod.vmat_min_mu_per_degree_cv,
        "arc_aperture_change_mm": mod.arc_aperture_change_mm,
        "dca_min_convexity": mod.dca_min_convexity,
        # a single aperture: shaped, or a rectangle (corners rounded or not)
        "rectangle_tolerance_mm": iso.rectangle_tolerance_mm,
        "corner_leaves_max_area_share": iso.corner_leaves_max_area_share,
        "corner_leaves_max_extent_share": iso.corner_leaves_max_extent_share,
    }
