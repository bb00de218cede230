"""Step 5, classifying: a pure function of the facts, the metrics and the policy.

``classify(linked_plan, policy)`` returns the planning code with every rule that
was weighed: its id, what was found in plain words, the DICOM path, the observed
value, the threshold and the policy setting it came from. Rules are applied in the
policy's order, first match wins, but all of them are evaluated and reported so a
reviewer sees why the others did not decide.

Nothing here reads files; thresholds come only from the policy.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from rtcode.coding.policy import Policy
from rtcode.link import LinkedPlan
from rtcode.measure.metrics import BeamMetrics, beam_metrics
from rtcode.model.codes import (
    ARCS,
    CODE_CATEGORY,
    LABELS,
    MODULATED,
    Alternative,
    BeamAssessment,
    Category,
    Classification,
    Evidence,
    Flag,
    Technique,
)
from rtcode.model.facts import SEED_RULE, Beam, Roi, StructureSet

# ------------------------------------------------------------------------ ROIs


def roi_role(roi: Roi, policy: Policy) -> tuple[str, str]:
    """('target' | 'organ_at_risk' | 'external' | 'helper' | 'other', how it was decided:
    "type", "name" or "none"). ``role_reason`` says it in words."""
    return _role(roi.name, roi.interpreted_type, _role_settings(policy))[:2]


def role_reason(roi: Roi, policy: Policy) -> str:
    """Why the ROI has its role, in words ("typed ORGAN, named like a target")."""
    return _role(roi.name, roi.interpreted_type, _role_settings(policy))[2]


def _role_settings(policy: Policy) -> tuple[tuple[str, ...], ...]:
    return tuple(
        tuple(policy[f"roles.{key}"])
        for key in (
            "target_name_patterns",
            "target_types",
            "organ_types",
            "external_types",
            "organ_name_patterns",
            "helper_name_patterns",
            "name_may_promote_types",
        )
    )


@lru_cache(maxsize=4096)
def _role(
    name: str | None, interpreted_type: str | None, settings: tuple[tuple[str, ...], ...]
) -> tuple[str, str, str]:
    """(role, how, why) from the ROI's name and type and the policy's role settings: a
    pure function of them, cached (a scan asks for the same few names again and again,
    in the rules and in the report).

    An explicit type decides, except that a name may promote an ROI whose type is
    missing or generic (``name_may_promote_types``: Monaco types every ROI ORGAN, PTVs
    included); a type such as ISOCENTER, MARKER, CONTROL or BOLUS is never overridden by
    a name. Helper structures (rings, walls, optimisation copies, expansions: the
    ``helper_name_patterns``) are neither targets nor organs at risk, whatever their type.
    """
    target_names, target_types, organ_types, external_types, organ_names, helpers, generic = (
        settings
    )
    name = (name or "").strip()
    rtype = (interpreted_type or "").upper()
    typed = f"typed {rtype}" if rtype else "no type"
    if any(re.search(p, name, re.IGNORECASE) for p in helpers):
        return (
            "helper",
            "name",
            f"{typed}, named like a helper structure (ring, wall, optimisation)",
        )
    if rtype in target_types:
        return "target", "type", typed
    promotable = not rtype or rtype in generic
    target_like = any(re.match(p, name, re.IGNORECASE) for p in target_names)
    if target_like and promotable:
        return "target", "name", f"{typed}, named like a target"
    if rtype in organ_types:
        return "organ_at_risk", "type", typed
    if rtype in external_types:
        return "external", "type", typed
    if promotable and any(re.match(p, name, re.IGNORECASE) for p in organ_names):
        return "organ_at_risk", "name", f"{typed}, named like an organ at risk"
    if target_like:
        return "other", "type", f"{typed}: a name does not override this type"
    return "other", "type" if rtype else "none", typed


def _rois_with_role(ss: StructureSet, role: str, policy: Policy) -> tuple[Roi, ...]:
    return tuple(
        r for r in ss.rois if r.has_contours is not False and roi_role(r, policy)[0] == role
    )


# ------------------------------------------------------------------------ beams


def _beam_technique(beam: Beam, m: BeamMetrics, policy: Policy) -> tuple[Technique, str]:
    radiation = beam.radiation_type or ""
    system = " ".join(filter(None, [beam.manufacturer, beam.machine])).lower()
    if beam.is_ion or radiation in ("PROTON", "ION"):
        mode = beam.scan_mode
        if mode in ("MODULATED", "MODULATED_SPEC"):
            return Technique.ION_PENCIL_BEAM_SCANNING, f"ScanMode {mode}: pencil-beam scanning"
        if mode in ("NONE", "UNIFORM"):
            return Technique.ION_PASSIVE_SCATTERING, f"ScanMode {mode}: passive or uniform scanning"
        return Technique.UNKNOWN, "ion beam without ScanMode: delivery cannot be determined"
    if radiation == "ELECTRON":
        parts = [f"applicator {a.applicator_id or a.applicator_type}" for a in beam.applicators]
        parts += [f"{k.block_type or 'block'} {k.name or ''}".strip() for k in beam.blocks]
        return Technique.ELECTRON, "electron beam" + (" with " + ", ".join(parts) if parts else "")
    if (beam.number_of_compensators or 0) > 0 and policy["modulation.compensator_is_imrt"]:
        return Technique.COMPENSATOR_IMRT, (
            f"{beam.number_of_compensators} compensator(s) modulate the intensity"
        )
    if "tomo" in system:
        return Technique.HELICAL_TOMOTHERAPY, "TomoTherapy machine: helical intensity modulation"
    if "gamma" in system or _GAMMA_KNIFE.search(system):
        return Technique.GAMMA_KNIFE, "Gamma Knife: collimated cobalt sources, no linac geometry"
    if any((a.applicator_type or "").upper() == "STEREOTACTIC" for a in beam.applicators):
        return Technique.STEREOTACTIC_CONE, "stereotactic cone applicator"
    if m.leaf_data_stripped:
        return Technique.UNKNOWN, "every MLC leaf position is 0: leaf data stripped from export"
    if not m.weights_valid and m.control_points >= 2:
        return Technique.UNKNOWN, "cumulative meterset weights missing or decreasing"
    if m.gantry_beam_on_travel_deg >= policy["modulation.arc_min_gantry_travel_deg"]:
        span = f"arc of {m.gantry_beam_on_travel_deg:.0f} deg"
        change = m.mean_aperture_change_mm
        if m.beam_on_leaf_motion_mm > policy["modulation.arc_aperture_change_mm"]:
            cv = m.mu_per_degree_cv
            if cv is not None and cv >= policy["modulation.vmat_min_mu_per_degree_cv"]:
                return Technique.VMAT, (
                    f"{span}, aperture changes {change:.1f} mm per control point"
                    f" and MU/degree varies (CV {cv:.2f})"
                )
            cv_text = "unknown" if cv is None else f"{cv:.2f}"
            convex = m.convexity
            if convex is not None and convex < policy["modulation.dca_min_convexity"]:
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
        return Technique.STATIC_ARC, f"{span} with a fixed aperture"
    if m.beam_on_leaf_travel_mm > policy["modulation.dynamic_leaf_travel_mm"]:
        return Technique.SLIDING_WINDOW_IMRT, (
            f"leaves travel up to {m.beam_on_leaf_travel_mm:.1f} mm while the beam is on"
            " at a fixed gantry angle"
        )
    if len(m.segments) >= 2:
        verdict, why = fif_verdict(m, policy)
        if verdict == "modulated":
            return Technique.STEP_AND_SHOOT_IMRT, why + ": step-and-shoot modulation"
        if verdict == "borderline":
            return Technique.FIELD_IN_FIELD, why + ": field-in-field, borderline"
        if verdict == "unknown":
            return Technique.UNKNOWN, why + ": field-in-field or step-and-shoot cannot be told"
        return Technique.FIELD_IN_FIELD, why + ": field-in-field"
    irregular = m.aperture_irregularity_mm
    if mlc_shapes_field(m, policy):
        return Technique.CONFORMAL, f"one MLC-shaped aperture (edges vary by {irregular:.0f} mm)"
    if beam.blocks:
        return Technique.CONFORMAL, f"{len(beam.blocks)} block(s) shape the field"
    if m.has_mlc and irregular is None:
        return Technique.UNKNOWN, "MLC present but its aperture cannot be computed"
    share, extent = m.corner_leaf_area_share, m.corner_leaf_extent_share
    if m.has_mlc and irregular is not None and irregular > policy["isodose.rectangle_tolerance_mm"]:
        assert share is not None and extent is not None  # (else mlc_shapes_field)
        return Technique.OPEN, (
            f"rectangular field with leaves standing in at its corners only: edges vary by"
            f" {irregular:.0f} mm, but the leaves cover {share:.1%} of the rectangle (at most"
            f" {policy['isodose.corner_leaves_max_area_share']:.1%}) within {extent:.0%} of"
            f" its length from either end (at most"
            f" {policy['isodose.corner_leaves_max_extent_share']:.0%})"
        )
    return Technique.OPEN, "rectangular field (jaws or rectangular MLC)"


def mlc_shapes_field(m: BeamMetrics, policy: Policy) -> bool:
    """Whether an MLC shapes the beam's aperture(s): its open edges vary by more than
    the rectangle tolerance, unless the aperture is a rectangle whose leaves stand in
    only at its corners, covering no more than the corner tolerance of its area (the
    rounded corners of a machine's largest field)."""
    irregular = m.aperture_irregularity_mm
    if not m.has_mlc or irregular is None or irregular <= policy["isodose.rectangle_tolerance_mm"]:
        return False
    share, extent = m.corner_leaf_area_share, m.corner_leaf_extent_share
    return (
        share is None
        or extent is None
        or share > policy["isodose.corner_leaves_max_area_share"]
        or extent > policy["isodose.corner_leaves_max_extent_share"]
    )


def fif_verdict(m: BeamMetrics, policy: Policy) -> tuple[str, str]:
    """For a beam of two or more static segments: "field_in_field" (sub-segments nested
    in the main aperture), "borderline" (partly outside it: coded as field-in-field, with
    IMRT as the alternative), "modulated" (step-and-shoot IMRT), or "unknown" (few
    segments, most MU in the main one, but no apertures to compare); and the numbers
    that decided, in words."""
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
    max_segments = policy["modulation.fif_max_segments"]
    if n > max_segments:
        return "modulated", f"{text}; more than {max_segments} segments"
    min_main = policy["modulation.fif_min_main_segment_mu_fraction"]
    if main is None or main < min_main:
        return "modulated", f"{text}; main segment below {min_main:.0%} of MU"
    if share is None:
        return "unknown", text
    nested = policy["modulation.fif_nested_max_outside_share"]
    modulated = policy["modulation.fif_modulated_min_outside_share"]
    if share <= nested:
        return "field_in_field", f"{text}; nested (at most {nested:.0%} outside)"
    if share >= modulated:
        return "modulated", f"{text}; not nested (at least {modulated:.0%} outside)"
    return "borderline", f"{text}; partly outside (between {nested:.0%} and {modulated:.0%})"


def _assess_beams(lp: LinkedPlan, policy: Policy) -> tuple[list[BeamAssessment], list[Flag]]:
    plan = lp.plan
    flags: list[Flag] = []
    referenced: dict[int | None, tuple[float | None, int | None]] = {}
    for fg in plan.fraction_groups:
        for ref in fg.referenced_beams:
            prev = referenced.get(ref.beam_number)
            mu = ref.meterset_mu
            if prev is not None and prev[0] is not None and mu is not None:
                mu += prev[0]
            referenced[ref.beam_number] = (mu, fg.number)
            if plan.beam(ref.beam_number) is None:
                flags.append(
                    Flag(
                        "missing_beam",
                        "warning",
                        f"fraction group {fg.number} references beam {ref.beam_number},"
                        f" which is not in {plan.beam_sequence_keyword}",
                    )
                )
    no_fg = not plan.fraction_groups
    if no_fg and plan.beams:
        flags.append(
            Flag(
                "no_fraction_group",
                "warning",
                "no FractionGroupSequence: treatment beams taken from the beam sequence and"
                " their MU cannot be read",
            )
        )
    # Fraction groups that say they deliver beams but reference none (GammaPlan): the
    # beams are taken from the beam sequence too (the plan's count_mismatch flag says so).
    no_fg = no_fg or plan.fraction_groups_reference_no_beam
    types = [t.upper() for t in policy["beams.treatment_delivery_types"]]
    min_mu = policy["beams.min_meterset_mu"]
    out = []
    for beam in plan.beams:
        m = beam_metrics(
            beam,
            policy["modulation.segment_tolerance_mm"],
            policy["modulation.small_aperture_width_mm"],
            policy["modulation.closed_leaf_gap_mm"],
            policy["modulation.fif_inside_tolerance_mm"],
            policy["isodose.rectangle_tolerance_mm"],
        )
        technique, why = _beam_technique(beam, m, policy)
        mu, fg_number = referenced.get(beam.number, (None, None))
        reason = None
        if not no_fg and beam.number not in referenced:
            reason = "not referenced by any fraction group"
        elif beam.effective_delivery_type not in types:
            reason = f"TreatmentDeliveryType {beam.effective_delivery_type}"
        elif not no_fg and mu is None:
            reason = "BeamMeterset absent: cannot tell whether it delivers dose"
        elif not no_fg and mu is not None and mu <= min_mu:
            reason = f"meterset {mu:g} MU (not above {min_mu:g} MU): imaging or placeholder beam"
        out.append(BeamAssessment(beam, m, mu, fg_number, reason is None, reason, technique, why))
    return out, flags


# ------------------------------------------------------------------ the rules


@dataclass
class _Work:
    """Accumulates evidence while the rules are weighed."""

    evidence: list[Evidence] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)
    alternatives: list[Alternative] = field(default_factory=list)

    def add(self, rule: str, fired: bool | None, finding: str, **kw: Any) -> bool | None:
        self.evidence.append(Evidence(rule, fired, finding, **kw))
        return fired


def classify(lp: LinkedPlan, policy: Policy) -> Classification:
    plan = lp.plan
    w = _Work()
    beams, beam_flags = _assess_beams(lp, policy)
    w.flags.extend(beam_flags)
    gamma_knife = _gamma_knife_names(plan)
    if gamma_knife is not None:  # its beams are placeholders: say what they stand for
        beams = [_gamma_knife_beam(b) for b in beams]
    ports = [b for b in beams if b.counted]
    path = plan.path

    # Rule 1: intent.
    intent = plan.intent
    not_billable = intent in [i.upper() for i in policy["intent.not_billable"]]
    w.add(
        "intent.not_billable",
        not_billable,
        f"PlanIntent is {plan.intent_raw!r}"
        + (" : a non-clinical plan, not billed" if not_billable else "")
        if plan.intent_raw is not None
        else "PlanIntent is absent (treated as clinical)",
        dicom_path=f"{path}::PlanIntent",
        observed=plan.intent_raw,
        threshold=policy["intent.not_billable"],
        setting="intent.not_billable",
    )
    for ref in plan.referenced_plans:
        if (ref.relationship or "").upper() == "VERIFIED_PLAN":
            w.flags.append(
                Flag(
                    "verification_plan",
                    "info",
                    f"this plan verifies plan {ref.sop_instance_uid}; verification plans are"
                    " never billed on their own",
                )
            )

    _general_flags(lp, policy, w)
    if gamma_knife is not None:
        # GammaPlan's fraction group counts a beam it does not reference: its normal
        # output (rtcode/dicom/vendors.py), not damage; the flag stays, as information.
        w.flags = [
            replace(f, severity="info")
            if f.flag == "count_mismatch" and (f.dicom_path or "").endswith(".NumberOfBeams")
            else f
            for f in w.flags
        ]

    # Rule 2: brachytherapy.
    # A brachytherapy plan (application setups, no beams) is coded by its tier alone:
    # the external-beam rules (ports, modulation, 3-D, isodose) say nothing about it,
    # and their rows ("no wedge on any port") would only bury the one that decides.
    brachy_only = plan.brachy is not None and not plan.beams
    brachy_code = _brachy_rule(lp, policy, w) if brachy_only else None

    modulated: list[BeamAssessment] = []
    unknown: list[BeamAssessment] = []
    three_d, missing_only, three_d_missing = False, False, []
    complex_reasons: list[str] = []
    if not brachy_only:
        # Rule 3 and 4: treatment beams.
        excluded = [b for b in beams if not b.counted]
        w.add(
            "beams.treatment_ports",
            bool(ports),
            f"{len(ports)} treatment port(s) of {len(beams)} beam(s)"
            + (
                "; not counted: "
                + "; ".join(f"beam {_beam_name(b.beam)} ({b.excluded_reason})" for b in excluded)
                if excluded
                else ""
            ),
            dicom_path=f"{path}::FractionGroupSequence",
            observed=len(ports),
            threshold=f"delivery type in {policy['beams.treatment_delivery_types']},"
            f" meterset > {policy['beams.min_meterset_mu']:g} MU",
            setting="beams.treatment_delivery_types",
        )

        # Rule 5: modulation.
        pbs_as_imrt = policy["modulation.pencil_beam_scanning_code"] == "77301"
        modulated = [
            b
            for b in ports
            if b.technique in MODULATED
            or (b.technique is Technique.ION_PENCIL_BEAM_SCANNING and pbs_as_imrt)
        ]
        for b in ports:
            is_mod = b in modulated
            w.add(
                "imrt.modulated_beam",
                None if b.technique is Technique.UNKNOWN else is_mod,
                f"beam {_beam_name(b.beam)}: {b.technique.value} ({b.technique_reason})",
                dicom_path=f"{b.beam.dicom_path}.{_cp_kw(b.beam)}",
                observed=_technique_numbers(b),
                threshold=_technique_thresholds(policy),
                setting="modulation",
            )
        unknown = [b for b in ports if b.technique is Technique.UNKNOWN]

        # Rule 6: 3-D.
        three_d, missing_only, three_d_missing = _three_d_rules(lp, ports, policy, w)

        # Rule 7: isodose.
        complex_reasons = _isodose_rules(lp, ports, policy, w)

    # Leksell GammaPlan: stereotactic radiosurgery, whatever its placeholder beam looks like.
    gamma_knife_code = None
    if gamma_knife is not None:
        gamma_knife_code = _gamma_knife_rule(lp, gamma_knife, policy, w)

    # 77331 is never inferred.
    w.add(
        "special_dosimetry.77331",
        None,
        "special dosimetry (TLD, diodes, film) cannot be determined from plan files: it needs"
        " a physician order and a signed measurement report",
    )

    # Decide, in the policy's order.
    code: str | None
    if not_billable:
        code, category = None, Category.NOT_BILLABLE
    elif brachy_code is not None:
        code, category = brachy_code, Category.BRACHYTHERAPY
    elif plan.brachy is not None and not plan.beams:
        code, category = None, Category.UNDETERMINED
    elif gamma_knife is not None:
        code = gamma_knife_code
        category = Category.UNDETERMINED if code is None else CODE_CATEGORY[code]
    elif not ports:
        code, category = None, Category.UNDETERMINED
        w.flags.append(
            Flag("no_treatment_beam", "warning", "no treatment beam: nothing to code from")
        )
    elif modulated:
        code, category = "77301", Category.IMRT
        techniques = sorted({b.technique.value for b in modulated})
        w.flags.append(
            Flag(
                "inverse_planning_not_recorded",
                "info",
                "DICOM does not record inverse vs forward planning; only the delivery pattern"
                f" ({', '.join(techniques)}) was read",
            )
        )
        if policy["imrt.require_inverse_planning_evidence"]:
            w.flags.append(
                Flag(
                    "inverse_planning_evidence_required",
                    "warning",
                    "this policy requires inverse planning for IMRT (e.g. Medicare LCD L36711):"
                    " keep the optimisation record (objectives, optimiser report) with the chart",
                )
            )
    elif three_d:
        code, category = "77295", Category.THREE_D
    else:
        code = "77307" if complex_reasons else "77306"
        category = CODE_CATEGORY[code]
        if missing_only:
            absent = " and ".join(three_d_missing)
            verb = "are" if len(three_d_missing) > 1 else "is"
            if policy["three_d.missing_companion_demotes"]:
                code, category = "77307", Category.COMPLEX_ISODOSE
                w.alternatives.append(
                    Alternative(
                        "77295",
                        Category.THREE_D.value,
                        f"if the {absent} of this plan {verb} in the planning system but"
                        " not in this export",
                    )
                )
                w.flags.append(
                    Flag(
                        "companion_missing",
                        "warning",
                        f"3-D evidence incomplete only because the {absent} {verb} not in the"
                        " export (setting three_d.missing_companion_demotes)",
                    )
                )
            else:
                code, category = "77295", Category.THREE_D
                w.flags.append(
                    Flag(
                        "companion_missing",
                        "warning",
                        f"coded 3-D although the {absent} {verb} not in the export"
                        " (setting three_d.missing_companion_demotes = false)",
                    )
                )
        elif code == "77307" and three_d_missing and _shaped(ports, policy):
            w.alternatives.append(
                Alternative(
                    "77295",
                    Category.THREE_D.value,
                    "if a 3-D plan was done: needs " + " and ".join(three_d_missing),
                )
            )
    electrons = [b for b in ports if b.beam.radiation_type == "ELECTRON"]
    if (
        code in ("77306", "77307")
        and electrons
        and len(electrons) == len(ports)
        and policy["electron.plan_code"] == "77321"
    ):
        w.add(
            "electron.plan_code",
            True,
            "electron-only plan coded as a special teletherapy port plan under this policy",
            observed=len(electrons),
            threshold="77321",
            setting="electron.plan_code",
        )
        code, category = "77321", Category.SPECIAL_PORT
    borderline = [
        b
        for b in ports
        if b.technique is Technique.FIELD_IN_FIELD
        and fif_verdict(b.metrics, policy)[0] == "borderline"
    ]
    if borderline and code in ("77306", "77307", "77295"):
        names = ", ".join(_beam_name(b.beam) for b in borderline)
        worst = max(
            b.metrics.subsegment_outside_share
            for b in borderline
            if b.metrics.subsegment_outside_share is not None
        )
        nested = policy["modulation.fif_nested_max_outside_share"]
        modulated = policy["modulation.fif_modulated_min_outside_share"]
        w.flags.append(
            Flag(
                "fif_borderline",
                "warning",
                f"sub-segments of beam(s) {names} lie partly outside their main aperture (up to"
                f" {worst:.1%} of a sub-segment's area, between the {nested:.0%} of nested"
                f" field-in-field and the {modulated:.0%} of step-and-shoot IMRT): coded as"
                " field-in-field; check the planning record for inverse optimisation"
                " (settings modulation.fif_nested_max_outside_share,"
                " modulation.fif_modulated_min_outside_share)",
                f"{borderline[0].beam.dicom_path}.{_cp_kw(borderline[0].beam)}",
            )
        )
        w.alternatives.append(
            Alternative(
                "77301",
                Category.IMRT.value,
                f"if the segments of beam(s) {names} were inverse planned (step-and-shoot IMRT)"
                " rather than forward-planned field-in-field",
            )
        )
    if unknown and code in ("77306", "77307", "77295"):
        w.alternatives.append(
            Alternative(
                "77301",
                Category.IMRT.value,
                "if the beams whose technique could not be read ("
                + ", ".join(_beam_name(b.beam) for b in unknown)
                + ") are intensity modulated",
            )
        )

    demoted = missing_only and code in ("77306", "77307", "77295") and not three_d
    confidence = _confidence(category, w.flags, unknown, demoted)
    targets = _rois_with_role(lp.structure_set, "target", policy) if lp.structure_set else ()
    oars = _rois_with_role(lp.structure_set, "organ_at_risk", policy) if lp.structure_set else ()
    return Classification(
        code=code,
        category=category,
        confidence=confidence,
        evidence=tuple(w.evidence),
        flags=tuple(w.flags),
        alternatives=tuple(w.alternatives),
        beams=tuple(beams),
        targets=targets,
        organs_at_risk=oars,
    )


def _confidence(category: Category, flags: list[Flag], unknown: list, demoted: bool) -> str:
    if category is Category.UNDETERMINED or unknown:
        return "low"
    if category is Category.NOT_BILLABLE:
        return "high"  # the plan says so itself
    if demoted or any(f.severity == "warning" and f.flag != "approval" for f in flags):
        return "medium"
    return "high"


def _general_flags(lp: LinkedPlan, policy: Policy, w: _Work) -> None:
    plan = lp.plan
    status = (plan.approval_status or "").upper()
    if status in [s.upper() for s in policy["approval.flag_statuses"]]:
        w.flags.append(
            Flag(
                "approval",
                "warning",
                f"plan ApprovalStatus is {status}: the code stands, but bill only the approved"
                " version",
            )
        )
    elif plan.approval_status is None:
        w.flags.append(Flag("approval", "warning", "plan ApprovalStatus is absent"))
    if len(plan.fraction_groups) > 1:
        w.flags.append(
            Flag(
                "fraction_groups",
                "info",
                f"{len(plan.fraction_groups)} fraction groups (e.g. initial and boost phases):"
                " one planning code per course unless a new planning CT was used",
            )
        )
    for note in lp.notes:
        w.flags.append(Flag("linking", "warning", note))
    # Quirks and contradictions the files were read despite (rtcode/dicom/vendors.py): the
    # plan's own, then its companions'.
    for facts in (plan, lp.structure_set, *lp.doses):
        for odd in getattr(facts, "oddities", ()):
            w.flags.append(Flag(odd.flag, odd.severity, odd.message, odd.dicom_path))


def _brachy_rule(lp: LinkedPlan, policy: Policy, w: _Work) -> str | None:
    """The brachytherapy tier, as the codes define it: remote afterloading (HDR, PDR) by
    channels; other plans (LDR, permanent seed implants, manual) by the sources placed
    (seeds), never by SourceSequence, which lists source types. Both counts are reported
    with the one that decided; a count the file cannot give is "cannot determine"."""
    brachy = lp.plan.brachy
    assert brachy is not None
    kind = brachy.treatment_type or "brachytherapy"
    technique = brachy.technique or "technique not stated"
    channels, seeds, types = (
        brachy.number_of_channels,
        brachy.number_of_seeds,
        brachy.number_of_source_types,
    )
    listed = f"SourceSequence lists {types} source type(s) (types, not sources placed)"
    if brachy.treatment_type in ("HDR", "PDR"):
        count, unit, decided = channels, "channel", "channels"
        simple = policy["brachytherapy.simple_max_channels"]
        mid = policy["brachytherapy.intermediate_max_channels"]
        setting = "brachytherapy.intermediate_max_channels"
        why = "remote afterloading is tiered by channels"
        others = listed + (f"; {seeds} dwell position(s)" if seeds is not None else "")
    else:
        count, unit, decided = seeds, "source", "sources_placed"
        simple = policy["brachytherapy.simple_max_sources"]
        mid = policy["brachytherapy.intermediate_max_sources"]
        setting = "brachytherapy.intermediate_max_sources"
        why = f"{kind} plans are tiered by the sources placed (seeds): {SEED_RULE}"
        others = f"{channels} channel(s); {listed}"
    # (an afterloader's one source dwells at positions: they are not sources placed)
    placed = "dwell_positions" if decided == "channels" else "sources_placed"
    observed = {"channels": channels, placed: seeds, "source_types": types, "decided_by": decided}
    common = {
        "dicom_path": f"{lp.plan.path}::ApplicationSetupSequence",
        "observed": observed,
        "threshold": {"simple_max": simple, "intermediate_max": mid},
        "setting": setting,
    }
    if count is None:
        w.add(
            "brachy.tier",
            None,
            f"{kind} plan ({technique}): cannot determine how many sources were placed"
            f" ({brachy.seeds_unknown_why}); {why}. {others}",
            **common,
        )
        return None
    if count == 0:
        w.add(
            "brachy.tier",
            None,
            f"{kind} plan ({technique}) with no {unit}s found; {why}. {others}",
            **common,
        )
        return None
    code = "77316" if count <= simple else "77317" if count <= mid else "77318"
    w.add(
        "brachy.tier",
        True,
        f"{kind} plan ({technique}) with {count} {unit}(s): {LABELS[code]}; {why}. {others}",
        **common,
    )
    return code


# Leksell Gamma Knife (rtcode/dicom/vendors.py, gamma_knife_plan): names of the planning system
# (Leksell GammaPlan, by Elekta Instrument AB) and of the machines (Leksell Gamma Knife
# Perfexion, Icon; "LGK"), matched in lower case.
_GAMMA_KNIFE = re.compile(
    r"leksell|gamma ?plan|gamma ?knife|perfexion|elekta instrument|\blgk\b"
    r"|\belekta\b.*\bicon\b|\bicon\b.*\belekta\b"
)


def _gamma_knife_names(plan) -> str | None:
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


def _gamma_knife_beam(b: BeamAssessment) -> BeamAssessment:
    return replace(
        b,
        technique=Technique.GAMMA_KNIFE,
        technique_reason="placeholder beam of a Leksell GammaPlan plan (no MLC, no leaf or"
        " jaw positions): the Gamma Knife's shots are not in the RT Plan",
    )


def _gamma_knife_rule(lp: LinkedPlan, names: str, policy: Policy, w: _Work) -> str | None:
    """A Leksell GammaPlan plan is stereotactic radiosurgery, never an isodose plan: 3-D
    (77295) when its structure set (a contoured target) and its dose (a 3-D grid or a
    DVH) link, else undetermined, with the flag ``gamma_knife_plan`` saying why."""
    plan = lp.plan
    where = f"{plan.path}::{plan.beam_sequence_keyword}"
    w.add(
        "beams.gamma_knife_plan",
        True,
        f"Leksell Gamma Knife plan ({names}): its {len(plan.beams)} beam(s) are placeholders"
        " and the shots are not in the RT Plan; stereotactic radiosurgery, coded 3-D when its"
        " structure set (contoured target) and dose link, never an isodose plan",
        dicom_path=where,
        observed=names,
    )
    ss = lp.structure_set
    need = policy["three_d.min_targets"]
    targets = _rois_with_role(ss, "target", policy) if ss is not None else ()
    doses = [d for d in lp.doses if d.grid.is_3d or d.dvh_count > 0]
    absent, failed = [], []
    if ss is None:
        absent.append(
            f"its structure set {plan.referenced_structure_set_uid} is not in the export"
            if lp.structure_set_status == "not_in_export"
            else "it references no structure set"
        )
    elif len(targets) < need:
        failed.append(f"{ss.path} holds {len(targets)} contoured target(s), fewer than {need}")
    if not lp.doses:
        absent.append("no RT Dose of this plan is in the export")
    elif not doses:
        failed.append("its RT Dose holds neither a 3-D dose grid nor a DVH")
    missing = absent + failed
    w.add(
        "3d.gamma_knife_companions",
        True if not missing else (False if failed else None),
        (
            f"{len(targets)} contoured target(s) in {ss.path if ss else '-'} and a dose in"
            f" {doses[0].path}: the radiosurgery plan is 3-D"
            if not missing
            else "cannot code the radiosurgery plan: " + "; ".join(missing)
        ),
        dicom_path=f"{ss.path}::RTROIObservationsSequence" if ss is not None else None,
        observed={
            "targets": [r.name for r in targets],
            "doses": [d.path for d in doses],
        },
        threshold=need,
        setting="three_d.min_targets",
    )
    if not missing:
        w.flags.append(
            Flag(
                "gamma_knife_plan",
                "info",
                "Leksell GammaPlan plan: its beam is a placeholder and the shots are not in"
                " the RT Plan; coded 3-D from its contoured target(s) and dose",
                where,
            )
        )
        return "77295"
    w.flags.append(
        Flag(
            "gamma_knife_plan",
            "warning",
            "Leksell GammaPlan plan: its beam is a placeholder and the shots are not in the"
            " RT Plan, and " + "; ".join(missing) + ": stereotactic radiosurgery (never an"
            " isodose plan) whose code cannot be determined from this export",
            where,
        )
    )
    return None


def _shaped(ports: list[BeamAssessment], policy: Policy) -> list[BeamAssessment]:
    """Ports shaped to a target (beam's-eye-view design) or arcing.

    An electron cutout counts only when the policy treats cutouts as blocking.
    """
    cutouts = policy["isodose.electron_cutout_is_modifier"]
    shaped_techniques = {
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
    return [
        b
        for b in ports
        if b.technique in shaped_techniques
        or (
            any((k.block_type or "").upper() == "APERTURE" for k in b.beam.blocks)
            and (cutouts or b.beam.radiation_type != "ELECTRON")
        )
    ]


def _three_d_rules(
    lp: LinkedPlan, ports: list[BeamAssessment], policy: Policy, w: _Work
) -> tuple[bool, bool, list[str]]:
    """(3-D satisfied, failed only for missing companions, what is missing)."""
    plan = lp.plan
    ss = lp.structure_set
    missing_companions: list[str] = []
    real_failures: list[str] = []
    if ss is None:
        why = (
            f"the referenced structure set {plan.referenced_structure_set_uid} is not in the export"
            if lp.structure_set_status == "not_in_export"
            else "the plan references no structure set"
        )
        w.add(
            "3d.structure_set",
            None,
            f"cannot determine contoured target and organs: {why}",
            dicom_path=f"{plan.path}::ReferencedStructureSetSequence",
            observed=lp.structure_set_status,
        )
        missing_companions.append("structure set")
    else:
        targets = _rois_with_role(ss, "target", policy)
        oars = _rois_with_role(ss, "organ_at_risk", policy)
        need_t = policy["three_d.min_targets"]
        need_o = policy["three_d.min_organs_at_risk"]
        ok_t = len(targets) >= need_t
        ok_o = len(oars) >= need_o
        w.add(
            "3d.target_contoured",
            ok_t,
            f"{len(targets)} contoured target(s) in {ss.path}: " + _roi_list(targets, policy),
            dicom_path=f"{ss.path}::RTROIObservationsSequence",
            observed=[r.name for r in targets],
            threshold=need_t,
            setting="three_d.min_targets",
        )
        w.add(
            "3d.organs_at_risk_contoured",
            ok_o,
            f"{len(oars)} contoured organ(s) at risk: " + _roi_list(oars, policy),
            dicom_path=f"{ss.path}::RTROIObservationsSequence",
            observed=[r.name for r in oars],
            threshold=need_o,
            setting="three_d.min_organs_at_risk",
        )
        if not ok_t:
            real_failures.append(f"at least {need_t} contoured target(s)")
        if not ok_o:
            real_failures.append(f"at least {need_o} contoured organ(s) at risk")

    dvh = [d for d in lp.doses if d.dvh_count > 0]
    grids = [d for d in lp.doses if d.grid.is_3d]
    accept_grid = policy["three_d.accept_dose_grid_as_dvh_evidence"]
    if dvh:
        w.add(
            "3d.dose_volume_evidence",
            True,
            f"stored DVH for {dvh[0].dvh_count} ROI(s) in {dvh[0].path}",
            dicom_path=f"{dvh[0].path}::DVHSequence",
            observed=dvh[0].dvh_count,
        )
    elif grids and accept_grid:
        g = grids[0].grid
        w.add(
            "3d.dose_volume_evidence",
            True,
            f"3-D dose grid ({g.columns}x{g.rows}x{g.frames}) of this plan in {grids[0].path}:"
            " a DVH can be computed",
            dicom_path=f"{grids[0].path}::PixelData",
            observed=[g.columns, g.rows, g.frames],
            setting="three_d.accept_dose_grid_as_dvh_evidence",
        )
    elif lp.doses:
        w.add(
            "3d.dose_volume_evidence",
            False,
            "dose file(s) of this plan hold neither a DVH nor a usable 3-D grid",
            dicom_path=f"{lp.doses[0].path}::DVHSequence",
            setting="three_d.accept_dose_grid_as_dvh_evidence",
        )
        real_failures.append("a DVH")
    else:
        w.add(
            "3d.dose_volume_evidence",
            None,
            "cannot determine dose-volume evidence: no RT Dose of this plan in the export",
        )
        missing_companions.append("dose")

    shaped = _shaped(ports, policy)
    w.add(
        "3d.beams_eye_view_design",
        bool(shaped),
        (
            f"{len(shaped)} port(s) shaped to the target or arcing: "
            + ", ".join(f"{_beam_name(b.beam)} ({b.technique.value})" for b in shaped)
        )
        if shaped
        else "no port is shaped to a target (rectangular fields, no blocks) and none arcs",
        dicom_path=f"{plan.path}::{plan.beam_sequence_keyword}",
        observed=len(shaped),
        threshold=1,
    )
    if not shaped:
        real_failures.append("a beam shaped to the target")
    ok = not missing_companions and not real_failures
    missing_only = bool(missing_companions) and not real_failures
    return ok, missing_only, missing_companions + real_failures


def _roi_list(rois: tuple[Roi, ...], policy: Policy) -> str:
    if not rois:
        return "none"
    parts = []
    for r in rois:
        _, how = roi_role(r, policy)
        parts.append(
            f"{r.name} ({role_reason(r, policy)})"
            if how == "name"
            else f"{r.name} ({r.interpreted_type or 'no type'})"
        )
    return ", ".join(parts)


def _isodose_rules(
    lp: LinkedPlan, ports: list[BeamAssessment], policy: Policy, w: _Work
) -> list[str]:
    """Evaluate every 77306-vs-77307 criterion; return the reasons for 77307."""
    plan = lp.plan
    reasons: list[str] = []

    def rule(rule_id: str, fired: bool | None, finding: str, **kw: Any) -> None:
        w.add(rule_id, fired, finding, **kw)
        if fired:
            reasons.append(finding)

    max_ports = policy["isodose.max_simple_ports"]
    rule(
        "isodose.port_count",
        len(ports) > max_ports,
        f"{len(ports)} treatment port(s)"
        + (f", more than {max_ports}" if len(ports) > max_ports else ""),
        dicom_path=f"{plan.path}::FractionGroupSequence",
        observed=len(ports),
        threshold=max_ports,
        setting="isodose.max_simple_ports",
    )

    isos = [(b, b.beam.isocenter_mm) for b in ports]
    known = [(b, i) for b, i in isos if i is not None]
    limit = policy["isodose.same_area_isocentre_distance_mm"]
    spread = 0.0
    for (_, a), (_, b) in itertools.combinations(known, 2):
        spread = max(spread, math.dist(a, b))
    if len(known) < len(isos):
        rule(
            "isodose.treatment_areas",
            None,
            "cannot determine treatment areas: isocentre missing for beam(s) "
            + ", ".join(_beam_name(b.beam) for b, i in isos if i is None),
            setting="isodose.same_area_isocentre_distance_mm",
        )
    else:
        distinct = _cluster_count([i for _, i in known], limit)
        rule(
            "isodose.treatment_areas",
            distinct > 1,
            f"{distinct} treatment area(s): isocentres up to {spread:.0f} mm apart",
            dicom_path=f"{plan.path}::{plan.beam_sequence_keyword}[*].{_cp_kw_plan(plan)}[0].IsocenterPosition",
            observed=round(spread, 1),
            threshold=limit,
            setting="isodose.same_area_isocentre_distance_mm",
        )

    wedged = []
    for b in ports:
        for wd in b.beam.wedges:
            dynamic = (wd.wedge_type or "").upper() == "DYNAMIC"
            if dynamic and not policy["isodose.dynamic_wedge_is_modifier"]:
                continue
            wedged.append((b, wd))
    rule(
        "isodose.wedge",
        bool(wedged),
        (
            "wedge(s): "
            + ", ".join(
                f"{_beam_name(b.beam)} {wd.wedge_type or ''} {wd.angle_deg:g} deg".replace(
                    "  ", " "
                )
                if wd.angle_deg is not None
                else f"{_beam_name(b.beam)} {wd.wedge_type or 'wedge'}"
                for b, wd in wedged
            )
        )
        if wedged
        else "no wedge on any port",
        dicom_path=wedged[0][1].dicom_path if wedged else None,
        observed=len(wedged),
        setting="isodose.dynamic_wedge_is_modifier",
    )

    blocked = []
    for b in ports:
        if not b.beam.blocks:
            continue
        if (
            b.beam.radiation_type == "ELECTRON"
            and not policy["isodose.electron_cutout_is_modifier"]
        ):
            continue
        blocked.append(b)
    rule(
        "isodose.block_or_cutout",
        bool(blocked),
        (
            "blocks or cutouts: "
            + ", ".join(f"{_beam_name(b.beam)} ({_block_kind(b.beam)})" for b in blocked)
        )
        if blocked
        else "no block or cutout",
        dicom_path=blocked[0].beam.blocks[0].dicom_path if blocked else None,
        observed=len(blocked),
        setting="isodose.electron_cutout_is_modifier",
    )

    comp = [b for b in ports if (b.beam.number_of_compensators or 0) > 0]
    rule(
        "isodose.compensator",
        bool(comp),
        ("compensator on " + ", ".join(_beam_name(b.beam) for b in comp))
        if comp
        else "no compensator",
        observed=len(comp),
    )

    boli = [b for b in ports if (b.beam.number_of_boli or 0) > 0]
    bolus_counts = policy["isodose.bolus_is_modifier"]
    w.add(
        "isodose.bolus",
        bool(boli) and bolus_counts,
        ("bolus on " + ", ".join(_beam_name(b.beam) for b in boli))
        + ("" if bolus_counts else " (not a modifier under this policy)")
        if boli
        else "no bolus",
        observed=len(boli),
        setting="isodose.bolus_is_modifier",
    )
    if boli and bolus_counts:
        reasons.append("bolus")

    tol = policy["isodose.rectangle_tolerance_mm"]
    rect_ok = policy["isodose.rectangular_mlc_is_unmodified"]
    shaped = []
    for b in ports:
        m = b.metrics
        if not m.has_mlc or b.technique is Technique.UNKNOWN:
            continue
        if mlc_shapes_field(m, policy) or not rect_ok:
            shaped.append((b, m.aperture_irregularity_mm))
    rule(
        "isodose.shaped_mlc",
        bool(shaped),
        (
            "MLC shapes the field: "
            + ", ".join(
                f"{_beam_name(b.beam)} (edges vary {irr:.0f} mm)"
                if irr is not None
                else _beam_name(b.beam)
                for b, irr in shaped
            )
        )
        if shaped
        else "no MLC-shaped port (jaws or rectangular MLC only)",
        observed=[round(i, 1) if i is not None else None for _, i in shaped],
        threshold=tol,
        setting="isodose.rectangular_mlc_is_unmodified",
    )

    segmented = [b for b in ports if b.technique is Technique.FIELD_IN_FIELD]
    rule(
        "isodose.field_in_field",
        bool(segmented),
        ("field-in-field segments on " + ", ".join(_beam_name(b.beam) for b in segmented))
        if segmented
        else "no field-in-field segments",
        observed=len(segmented),
        setting="modulation.fif_max_segments",
    )

    arcs = [b for b in ports if b.technique in ARCS]
    rule(
        "isodose.arc",
        bool(arcs),
        ("rotational (arc) beam(s): " + ", ".join(_beam_name(b.beam) for b in arcs))
        if arcs
        else "no arc",
        observed=len(arcs),
        setting="modulation.arc_min_gantry_travel_deg",
    )

    min_couch = policy["isodose.couch_rotation_min_deg"]
    rotated = []
    for b in ports:
        couch = [c for c in b.beam.control_points.couch_deg if not math.isnan(c)]
        worst = max((min(c % 360, 360 - c % 360) for c in couch), default=0.0)
        if worst >= min_couch:
            rotated.append((b, worst))
    rule(
        "isodose.couch_rotation",
        bool(rotated),
        ("couch rotated: " + ", ".join(f"{_beam_name(b.beam)} ({c:.0f} deg)" for b, c in rotated))
        if rotated
        else "no couch rotation",
        observed=[round(c, 1) for _, c in rotated],
        threshold=min_couch,
        setting="isodose.couch_rotation_min_deg",
    )

    pairs = _tangent_pairs(ports, policy)
    rule(
        "isodose.tangential",
        bool(pairs),
        ("tangential pair: " + ", ".join(f"{a} / {b}" for a, b in pairs))
        if pairs
        else "no tangential pair",
        observed=[list(p) for p in pairs],
        threshold={
            "opposed_within_deg": policy["isodose.tangent_opposed_tolerance_deg"],
            "oblique_at_least_deg": policy["isodose.tangent_min_oblique_deg"],
        },
        setting="isodose.tangent_min_oblique_deg",
    )

    particles = [b for b in ports if b.beam.is_ion]
    if particles:
        rule(
            "isodose.particle_beam",
            True,
            "particle (ion) beams: a special beam set-up",
            observed=len(particles),
        )
    return reasons


def _block_kind(beam: Beam) -> str:
    return "electron cutout" if beam.radiation_type == "ELECTRON" else "block"


def _tangent_pairs(ports: list[BeamAssessment], policy: Policy) -> list[tuple[str, str]]:
    tol = policy["isodose.tangent_opposed_tolerance_deg"]
    oblique = policy["isodose.tangent_min_oblique_deg"]
    static = [b for b in ports if b.technique not in ARCS and b.beam.gantry_start_deg is not None]
    out = []
    for a, b in itertools.combinations(static, 2):
        ga, gb = a.beam.gantry_start_deg, b.beam.gantry_start_deg
        assert ga is not None and gb is not None
        diff = abs((ga - gb + 180) % 360 - 180)
        if abs(diff - 180) > tol:
            continue
        if min(_from_cardinal(ga), _from_cardinal(gb)) < oblique:
            continue
        out.append((_beam_name(a.beam), _beam_name(b.beam)))
    return out


def _from_cardinal(angle: float) -> float:
    r = angle % 90
    return min(r, 90 - r)


def _cluster_count(points: list[tuple[float, float, float]], limit: float) -> int:
    """Number of groups of isocentres, linking any two closer than ``limit``."""
    groups: list[list[tuple[float, float, float]]] = []
    for p in points:
        near = [g for g in groups if any(math.dist(p, q) <= limit for q in g)]
        merged = [p]
        for g in near:
            merged.extend(g)
            groups.remove(g)
        groups.append(merged)
    return len(groups)


def _beam_name(beam: Beam) -> str:
    if beam.name:
        return f"{beam.number} {beam.name!r}" if beam.number is not None else repr(beam.name)
    return str(beam.number)


def _cp_kw(beam: Beam) -> str:
    return "IonControlPointSequence" if beam.is_ion else "ControlPointSequence"


def _cp_kw_plan(plan) -> str:
    return (
        "IonControlPointSequence"
        if plan.beam_sequence_keyword == "IonBeamSequence"
        else "ControlPointSequence"
    )


def _technique_numbers(b: BeamAssessment) -> dict[str, Any]:
    m = b.metrics
    out: dict[str, Any] = {
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


def _technique_thresholds(policy: Policy) -> dict[str, Any]:
    keys = (
        "dynamic_leaf_travel_mm",
        "segment_tolerance_mm",
        "fif_max_segments",
        "fif_min_main_segment_mu_fraction",
        "closed_leaf_gap_mm",
        "fif_inside_tolerance_mm",
        "fif_nested_max_outside_share",
        "fif_modulated_min_outside_share",
        "arc_min_gantry_travel_deg",
        "vmat_min_mu_per_degree_cv",
        "arc_aperture_change_mm",
        "dca_min_convexity",
    )
    out = {k: policy[f"modulation.{k}"] for k in keys}
    # a single aperture: shaped, or a rectangle (corners rounded or not)
    for k in (
        "rectangle_tolerance_mm",
        "corner_leaves_max_area_share",
        "corner_leaves_max_extent_share",
    ):
        out[k] = policy[f"isodose.{k}"]
    return out
