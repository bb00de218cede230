"""The isodose rules: what makes a plan complex (77307) rather than simple (77306).

One function per criterion, each returning its ``Evidence`` (fired: the criterion
holds); ``ISODOSE_RULES`` lists them in the order they are reported. Any fired
criterion makes the plan complex. The thresholds are the policy's ``[isodose]``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

from rtcode.coding.policy import Policy
from rtcode.coding.ports import beam_name, plan_cp_keyword
from rtcode.coding.techniques import mlc_shapes_field
from rtcode.model.codes import ARCS, BeamAssessment, Evidence, Technique
from rtcode.model.facts import Beam, Plan

IsodoseRule = Callable[[Plan, list[BeamAssessment], Policy], "Evidence | None"]


def port_count(plan: Plan, ports: list[BeamAssessment], policy: Policy) -> Evidence:
    max_ports = policy.isodose.max_simple_ports
    return Evidence(
        "isodose.port_count",
        len(ports) > max_ports,
        f"{len(ports)} treatment port(s)"
        + (f", more than {max_ports}" if len(ports) > max_ports else ""),
        dicom_path=f"{plan.path}::FractionGroupSequence",
        observed=len(ports),
        threshold=max_ports,
        setting="isodose.max_simple_ports",
    )


def treatment_areas(plan: Plan, ports: list[BeamAssessment], policy: Policy) -> Evidence:
    isos = [(b, b.beam.isocenter_mm) for b in ports]
    known = [i for _, i in isos if i is not None]
    limit = policy.isodose.same_area_isocentre_distance_mm
    if len(known) < len(isos):
        return Evidence(
            "isodose.treatment_areas",
            None,
            "cannot determine treatment areas: isocentre missing for beam(s) "
            + ", ".join(beam_name(b.beam) for b, i in isos if i is None),
            setting="isodose.same_area_isocentre_distance_mm",
        )
    spread = 0.0
    for a, b in itertools.combinations(known, 2):
        spread = max(spread, math.dist(a, b))
    distinct = _cluster_count(known, limit)
    return Evidence(
        "isodose.treatment_areas",
        distinct > 1,
        f"{distinct} treatment area(s): isocentres up to {spread:.0f} mm apart",
        dicom_path=f"{plan.path}::{plan.beam_sequence_keyword}[*].{plan_cp_keyword(plan)}[0]"
        ".IsocenterPosition",
        observed=round(spread, 1),
        threshold=limit,
        setting="isodose.same_area_isocentre_distance_mm",
    )


def wedge(plan: Plan, ports: list[BeamAssessment], policy: Policy) -> Evidence:
    wedged = []
    for b in ports:
        for wd in b.beam.wedges:
            dynamic = (wd.wedge_type or "").upper() == "DYNAMIC"
            if dynamic and not policy.isodose.dynamic_wedge_is_modifier:
                continue
            wedged.append((b, wd))
    listed = ", ".join(
        f"{beam_name(b.beam)} {wd.wedge_type or ''} {wd.angle_deg:g} deg".replace("  ", " ")
        if wd.angle_deg is not None
        else f"{beam_name(b.beam)} {wd.wedge_type or 'wedge'}"
        for b, wd in wedged
    )
    return Evidence(
        "isodose.wedge",
        bool(wedged),
        ("wedge(s): " + listed) if wedged else "no wedge on any port",
        dicom_path=wedged[0][1].dicom_path if wedged else None,
        observed=len(wedged),
        setting="isodose.dynamic_wedge_is_modifier",
    )


def block_or_cutout(plan: Plan, ports: list[BeamAssessment], policy: Policy) -> Evidence:
    cutouts = policy.isodose.electron_cutout_is_modifier
    blocked = [
        b for b in ports if b.beam.blocks and (cutouts or b.beam.radiation_type != "ELECTRON")
    ]
    return Evidence(
        "isodose.block_or_cutout",
        bool(blocked),
        (
            "blocks or cutouts: "
            + ", ".join(f"{beam_name(b.beam)} ({_block_kind(b.beam)})" for b in blocked)
        )
        if blocked
        else "no block or cutout",
        dicom_path=blocked[0].beam.blocks[0].dicom_path if blocked else None,
        observed=len(blocked),
        setting="isodose.electron_cutout_is_modifier",
    )


def compensator(plan: Plan, ports: list[BeamAssessment], policy: Policy) -> Evidence:
    comp = [b for b in ports if (b.beam.number_of_compensators or 0) > 0]
    return Evidence(
        "isodose.compensator",
        bool(comp),
        ("compensator on " + ", ".join(beam_name(b.beam) for b in comp))
        if comp
        else "no compensator",
        observed=len(comp),
    )


def bolus(plan: Plan, ports: list[BeamAssessment], policy: Policy) -> Evidence:
    boli = [b for b in ports if (b.beam.number_of_boli or 0) > 0]
    counts = policy.isodose.bolus_is_modifier
    return Evidence(
        "isodose.bolus",
        bool(boli) and counts,
        ("bolus on " + ", ".join(beam_name(b.beam) for b in boli))
        + ("" if counts else " (not a modifier under this policy)")
        if boli
        else "no bolus",
        observed=len(boli),
        setting="isodose.bolus_is_modifier",
    )


def shaped_mlc(plan: Plan, ports: list[BeamAssessment], policy: Policy) -> Evidence:
    rect_ok = policy.isodose.rectangular_mlc_is_unmodified
    shaped = [
        (b, b.metrics.aperture_irregularity_mm)
        for b in ports
        if b.metrics.has_mlc
        and b.technique is not Technique.UNKNOWN
        and (mlc_shapes_field(b.metrics, policy) or not rect_ok)
    ]
    listed = ", ".join(
        f"{beam_name(b.beam)} (edges vary {irr:.0f} mm)" if irr is not None else beam_name(b.beam)
        for b, irr in shaped
    )
    return Evidence(
        "isodose.shaped_mlc",
        bool(shaped),
        ("MLC shapes the field: " + listed)
        if shaped
        else "no MLC-shaped port (jaws or rectangular MLC only)",
        observed=[round(i, 1) if i is not None else None for _, i in shaped],
        threshold=policy.isodose.rectangle_tolerance_mm,
        setting="isodose.rectangular_mlc_is_unmodified",
    )


def field_in_field(plan: Plan, ports: list[BeamAssessment], policy: Policy) -> Evidence:
    segmented = [b for b in ports if b.technique is Technique.FIELD_IN_FIELD]
    return Evidence(
        "isodose.field_in_field",
        bool(segmented),
        ("field-in-field segments on " + ", ".join(beam_name(b.beam) for b in segmented))
        if segmented
        else "no field-in-field segments",
        observed=len(segmented),
        setting="modulation.fif_max_segments",
    )


def arc(plan: Plan, ports: list[BeamAssessment], policy: Policy) -> Evidence:
    arcs = [b for b in ports if b.technique in ARCS]
    return Evidence(
        "isodose.arc",
        bool(arcs),
        ("rotational (arc) beam(s): " + ", ".join(beam_name(b.beam) for b in arcs))
        if arcs
        else "no arc",
        observed=len(arcs),
        setting="modulation.arc_min_gantry_travel_deg",
    )


def couch_rotation(plan: Plan, ports: list[BeamAssessment], policy: Policy) -> Evidence:
    min_couch = policy.isodose.couch_rotation_min_deg
    rotated = []
    for b in ports:
        couch = [c for c in b.beam.control_points.couch_deg if not math.isnan(c)]
        worst = max((min(c % 360, 360 - c % 360) for c in couch), default=0.0)
        if worst >= min_couch:
            rotated.append((b, worst))
    return Evidence(
        "isodose.couch_rotation",
        bool(rotated),
        ("couch rotated: " + ", ".join(f"{beam_name(b.beam)} ({c:.0f} deg)" for b, c in rotated))
        if rotated
        else "no couch rotation",
        observed=[round(c, 1) for _, c in rotated],
        threshold=min_couch,
        setting="isodose.couch_rotation_min_deg",
    )


def tangential(plan: Plan, ports: list[BeamAssessment], policy: Policy) -> Evidence:
    pairs = _tangent_pairs(ports, policy)
    return Evidence(
        "isodose.tangential",
        bool(pairs),
        ("tangential pair: " + ", ".join(f"{a} / {b}" for a, b in pairs))
        if pairs
        else "no tangential pair",
        observed=[list(p) for p in pairs],
        threshold={
            "opposed_within_deg": policy.isodose.tangent_opposed_tolerance_deg,
            "oblique_at_least_deg": policy.isodose.tangent_min_oblique_deg,
        },
        setting="isodose.tangent_min_oblique_deg",
    )


def particle_beam(plan: Plan, ports: list[BeamAssessment], policy: Policy) -> Evidence | None:
    """Reported only when there are particle beams."""
    particles = [b for b in ports if b.beam.is_ion]
    if not particles:
        return None
    return Evidence(
        "isodose.particle_beam",
        True,
        "particle (ion) beams: a special beam set-up",
        observed=len(particles),
    )


# In the order they are reported.
ISODOSE_RULES: tuple[IsodoseRule, ...] = (
    port_count,
    treatment_areas,
    wedge,
    block_or_cutout,
    compensator,
    bolus,
    shaped_mlc,
    field_in_field,
    arc,
    couch_rotation,
    tangential,
    particle_beam,
)


def isodose_evidence(
    plan: Plan, ports: list[BeamAssessment], policy: Policy
) -> tuple[Evidence, ...]:
    """Every isodose criterion weighed; the plan is complex when any one fired."""
    found = (rule(plan, ports, policy) for rule in ISODOSE_RULES)
    return tuple(e for e in found if e is not None)


def _block_kind(beam: Beam) -> str:
    return "electron cutout" if beam.radiation_type == "ELECTRON" else "block"


def _tangent_pairs(ports: list[BeamAssessment], policy: Policy) -> list[tuple[str, str]]:
    tol = policy.isodose.tangent_opposed_tolerance_deg
    oblique = policy.isodose.tangent_min_oblique_deg
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
        out.append((beam_name(a.beam), beam_name(b.beam)))
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
