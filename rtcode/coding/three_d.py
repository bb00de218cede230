"""The 3-D rules (77295): contoured target and organs at risk, dose-volume evidence and a
beam's-eye-view design, from the policy's ``[three_d]`` section.

Each rule returns ``Check``s: its evidence and, when it is not met, what is needed.
A rule that cannot be determined because a companion file (structure set, dose) is
not in the export (fired None) is a missing companion, not a failure: the decision
table may then demote the plan instead of ruling 3-D out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from rtcode.coding.policy import Policy
from rtcode.coding.ports import beam_name
from rtcode.coding.roles import roi_list, rois_with_role
from rtcode.coding.techniques import SHAPED
from rtcode.link import LinkedPlan
from rtcode.model.codes import BeamAssessment, Evidence


class Check(NamedTuple):
    evidence: Evidence
    needs: str | None = None  # what is missing when the rule is not met


class ThreeDVerdict(NamedTuple):
    """What the 3-D rules found."""

    met: bool
    missing_only: bool  # not met only because companion files are not in the export
    needs: tuple[str, ...]  # missing companions first, then real failures


ThreeDRule = Callable[[LinkedPlan, list[BeamAssessment], Policy], list[Check]]


def contoured_rois(lp: LinkedPlan, ports: list[BeamAssessment], policy: Policy) -> list[Check]:
    """A contoured target and organs at risk, or why that cannot be told."""
    plan, ss = lp.plan, lp.structure_set
    if ss is None:
        why = (
            f"the referenced structure set {plan.referenced_structure_set_uid} is not in the export"
            if lp.structure_set_status == "not_in_export"
            else "the plan references no structure set"
        )
        found = Evidence(
            "3d.structure_set",
            None,
            f"cannot determine contoured target and organs: {why}",
            dicom_path=f"{plan.path}::ReferencedStructureSetSequence",
            observed=lp.structure_set_status,
        )
        return [Check(found, "structure set")]
    targets = rois_with_role(ss, "target", policy)
    oars = rois_with_role(ss, "organ_at_risk", policy)
    need_t = policy.three_d.min_targets
    need_o = policy.three_d.min_organs_at_risk
    ok_t = len(targets) >= need_t
    ok_o = len(oars) >= need_o
    return [
        Check(
            Evidence(
                "3d.target_contoured",
                ok_t,
                f"{len(targets)} contoured target(s) in {ss.path}: " + roi_list(targets, policy),
                dicom_path=f"{ss.path}::RTROIObservationsSequence",
                observed=[r.name for r in targets],
                threshold=need_t,
                setting="three_d.min_targets",
            ),
            None if ok_t else f"at least {need_t} contoured target(s)",
        ),
        Check(
            Evidence(
                "3d.organs_at_risk_contoured",
                ok_o,
                f"{len(oars)} contoured organ(s) at risk: " + roi_list(oars, policy),
                dicom_path=f"{ss.path}::RTROIObservationsSequence",
                observed=[r.name for r in oars],
                threshold=need_o,
                setting="three_d.min_organs_at_risk",
            ),
            None if ok_o else f"at least {need_o} contoured organ(s) at risk",
        ),
    ]


def dose_volume(lp: LinkedPlan, ports: list[BeamAssessment], policy: Policy) -> list[Check]:
    """A stored DVH, or a 3-D dose grid where the policy accepts one."""
    dvh = [d for d in lp.doses if d.dvh_count > 0]
    grids = [d for d in lp.doses if d.grid.is_3d]
    rule = "3d.dose_volume_evidence"
    if dvh:
        return [
            Check(
                Evidence(
                    rule,
                    True,
                    f"stored DVH for {dvh[0].dvh_count} ROI(s) in {dvh[0].path}",
                    dicom_path=f"{dvh[0].path}::DVHSequence",
                    observed=dvh[0].dvh_count,
                )
            )
        ]
    setting = "three_d.accept_dose_grid_as_dvh_evidence"
    if grids and policy.three_d.accept_dose_grid_as_dvh_evidence:
        g = grids[0].grid
        found = Evidence(
            rule,
            True,
            f"3-D dose grid ({g.columns}x{g.rows}x{g.frames}) of this plan in {grids[0].path}:"
            " a DVH can be computed",
            dicom_path=f"{grids[0].path}::PixelData",
            observed=[g.columns, g.rows, g.frames],
            setting=setting,
        )
        return [Check(found)]
    if lp.doses:
        found = Evidence(
            rule,
            False,
            "dose file(s) of this plan hold neither a DVH nor a usable 3-D grid",
            dicom_path=f"{lp.doses[0].path}::DVHSequence",
            setting=setting,
        )
        return [Check(found, "a DVH")]
    found = Evidence(
        rule,
        None,
        "cannot determine dose-volume evidence: no RT Dose of this plan in the export",
    )
    return [Check(found, "dose")]


def beams_eye_view(lp: LinkedPlan, ports: list[BeamAssessment], policy: Policy) -> list[Check]:
    """At least one port shaped to the target, or arcing."""
    plan = lp.plan
    shaped = shaped_ports(ports, policy)
    found = Evidence(
        "3d.beams_eye_view_design",
        bool(shaped),
        (
            f"{len(shaped)} port(s) shaped to the target or arcing: "
            + ", ".join(f"{beam_name(b.beam)} ({b.technique.value})" for b in shaped)
        )
        if shaped
        else "no port is shaped to a target (rectangular fields, no blocks) and none arcs",
        dicom_path=f"{plan.path}::{plan.beam_sequence_keyword}",
        observed=len(shaped),
        threshold=1,
    )
    return [Check(found, None if shaped else "a beam shaped to the target")]


# In the order they are reported.
THREE_D_RULES: tuple[ThreeDRule, ...] = (contoured_rois, dose_volume, beams_eye_view)


def three_d_checks(lp: LinkedPlan, ports: list[BeamAssessment], policy: Policy) -> list[Check]:
    return [check for rule in THREE_D_RULES for check in rule(lp, ports, policy)]


def three_d_verdict(checks: list[Check]) -> ThreeDVerdict:
    """Met when nothing is needed; missing companions (fired None) listed first."""
    companions = [c.needs for c in checks if c.needs and c.evidence.fired is None]
    failures = [c.needs for c in checks if c.needs and c.evidence.fired is not None]
    return ThreeDVerdict(
        met=not companions and not failures,
        missing_only=bool(companions) and not failures,
        needs=tuple(companions + failures),
    )


def shaped_ports(ports: list[BeamAssessment], policy: Policy) -> list[BeamAssessment]:
    """Ports shaped to a target (beam's-eye-view design) or arcing.

    An electron cutout counts only when the policy treats cutouts as blocking.
    """
    cutouts = policy.isodose.electron_cutout_is_modifier
    return [
        b
        for b in ports
        if b.technique in SHAPED
        or (
            any((k.block_type or "").upper() == "APERTURE" for k in b.beam.blocks)
            and (cutouts or b.beam.radiation_type != "ELECTRON")
        )
    ]
