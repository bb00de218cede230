"""The plan-level rules, each a function returning its evidence: intent, brachytherapy
tier, treatment ports, modulation (IMRT), Leksell Gamma Knife, special dosimetry; and
the flags every plan gets (approval, fraction groups, linking, oddities).

The 3-D and isodose rule groups are in three_d.py and isodose.py; classify.py weighs
them all in a fixed order and decisions.py turns what they found into the code.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

from rtcode.coding.policy import Policy
from rtcode.coding.ports import beam_name, cp_keyword
from rtcode.coding.roles import rois_with_role
from rtcode.coding.techniques import codes_as_imrt, technique_numbers, technique_thresholds
from rtcode.link import LinkedPlan
from rtcode.model.codes import LABELS, BeamAssessment, Evidence, Flag, Technique
from rtcode.model.facts import SEED_RULE, Plan

# ------------------------------------------------------------------ intent


def intent_rule(plan: Plan, policy: Policy) -> Evidence:
    """Rule 1: a non-clinical PlanIntent (verification, QA, research) is never billed."""
    not_billable = plan.intent in [i.upper() for i in policy.intent.not_billable]
    return Evidence(
        "intent.not_billable",
        not_billable,
        f"PlanIntent is {plan.intent_raw!r}"
        + (": a non-clinical plan, not billed" if not_billable else "")
        if plan.intent_raw is not None
        else "PlanIntent is absent (treated as clinical)",
        dicom_path=f"{plan.path}::PlanIntent",
        observed=plan.intent_raw,
        threshold=list(policy.intent.not_billable),
        setting="intent.not_billable",
    )


def verification_flags(plan: Plan) -> list[Flag]:
    return [
        Flag(
            "verification_plan",
            "info",
            f"this plan verifies plan {ref.sop_instance_uid}; verification plans are"
            " never billed on their own",
        )
        for ref in plan.referenced_plans
        if (ref.relationship or "").upper() == "VERIFIED_PLAN"
    ]


def general_flags(lp: LinkedPlan, policy: Policy) -> list[Flag]:
    """Approval status, several fraction groups, linking notes and the oddities the
    files were read despite (rtcode/dicom/vendors.py): the plan's own, then its
    companions'."""
    plan = lp.plan
    flags = []
    status = (plan.approval_status or "").upper()
    if status in [s.upper() for s in policy.approval.flag_statuses]:
        not_billable = plan.intent in [i.upper() for i in policy.intent.not_billable]
        flags.append(
            Flag(
                "approval",
                "warning",
                f"plan ApprovalStatus is {status}: "
                + (
                    "a non-clinical plan, not billed whatever its approval"
                    if not_billable
                    else "the code stands, but bill only the approved version"
                ),
            )
        )
    elif plan.approval_status is None:
        flags.append(Flag("approval", "warning", "plan ApprovalStatus is absent"))
    if len(plan.fraction_groups) > 1:
        flags.append(
            Flag(
                "fraction_groups",
                "info",
                f"{len(plan.fraction_groups)} fraction groups (e.g. initial and boost phases):"
                " one planning code per course unless a new planning CT was used",
            )
        )
    flags += [Flag("linking", "warning", note) for note in lp.notes]
    for facts in (plan, lp.structure_set, *lp.doses):
        for odd in getattr(facts, "oddities", ()):
            flags.append(Flag(odd.flag, odd.severity, odd.message, odd.dicom_path))
    return flags


# ------------------------------------------------------------------ brachytherapy


class Tier(NamedTuple):
    evidence: Evidence
    code: str | None  # 77316-77318, None when the count cannot be told


def brachy_rule(lp: LinkedPlan, policy: Policy) -> Tier:
    """Rule 2, the brachytherapy tier, as the codes define it: remote afterloading (HDR,
    PDR) by channels; other plans (LDR, permanent seed implants, manual) by the sources
    placed (seeds), never by SourceSequence, which lists source types. Both counts are
    reported with the one that decided; a count the file cannot give is "cannot
    determine"."""
    brachy = lp.plan.brachy
    assert brachy is not None
    bt = policy.brachytherapy
    kind = brachy.treatment_type or "brachytherapy"
    technique = brachy.technique or "technique not stated"
    channels, seeds, types = (
        brachy.number_of_channels,
        brachy.number_of_seeds,
        brachy.number_of_source_types,
    )
    listed = f"SourceSequence lists {types} source type(s) (types, not sources placed)"
    if brachy.treatment_type in ("HDR", "PDR"):
        count: int | None = channels
        unit, decided = "channel", "channels"
        simple, mid = bt.simple_max_channels, bt.intermediate_max_channels
        setting = "brachytherapy.intermediate_max_channels"
        why = "remote afterloading is tiered by channels"
        others = listed + (f"; {seeds} dwell position(s)" if seeds is not None else "")
    else:
        count, unit, decided = seeds, "source", "sources_placed"
        simple, mid = bt.simple_max_sources, bt.intermediate_max_sources
        setting = "brachytherapy.intermediate_max_sources"
        why = f"{kind} plans are tiered by the sources placed (seeds): {SEED_RULE}"
        others = f"{channels} channel(s); {listed}"
    # (an afterloader's one source dwells at positions: they are not sources placed)
    placed = "dwell_positions" if decided == "channels" else "sources_placed"
    observed = {"channels": channels, placed: seeds, "source_types": types, "decided_by": decided}

    def tier(fired: bool | None, finding: str) -> Evidence:
        return Evidence(
            "brachy.tier",
            fired,
            finding,
            dicom_path=f"{lp.plan.path}::ApplicationSetupSequence",
            observed=observed,
            threshold={"simple_max": simple, "intermediate_max": mid},
            setting=setting,
        )

    head = f"{kind} plan ({technique})"
    if count is None:
        return Tier(
            tier(
                None,
                f"{head}: cannot determine how many sources were placed"
                f" ({brachy.seeds_unknown_why}); {why}. {others}",
            ),
            None,
        )
    if count == 0:
        return Tier(tier(None, f"{head} with no {unit}s found; {why}. {others}"), None)
    code = "77316" if count <= simple else "77317" if count <= mid else "77318"
    finding = f"{head} with {count} {unit}(s): {LABELS[code]}; {why}. {others}"
    return Tier(tier(True, finding), code)


# ------------------------------------------------------------------ beams


def treatment_ports_rule(
    plan: Plan, beams: list[BeamAssessment], ports: list[BeamAssessment], policy: Policy
) -> Evidence:
    """Rules 3 and 4: the treatment ports, and why the other beams do not count."""
    excluded = [b for b in beams if not b.counted]
    return Evidence(
        "beams.treatment_ports",
        bool(ports),
        f"{len(ports)} treatment port(s) of {len(beams)} beam(s)"
        + (
            "; not counted: "
            + "; ".join(f"beam {beam_name(b.beam)} ({b.excluded_reason})" for b in excluded)
            if excluded
            else ""
        ),
        dicom_path=f"{plan.path}::FractionGroupSequence",
        observed=len(ports),
        threshold=f"delivery type in {list(policy.beams.treatment_delivery_types)},"
        f" meterset > {policy.beams.min_meterset_mu:g} MU",
        setting="beams.treatment_delivery_types",
    )


def modulation_rule(ports: list[BeamAssessment], policy: Policy) -> list[Evidence]:
    """Rule 5, IMRT: one row per port, fired when its technique codes as IMRT
    (techniques.codes_as_imrt), undetermined when the technique cannot be read."""
    thresholds = technique_thresholds(policy)
    return [
        Evidence(
            "imrt.modulated_beam",
            None if b.technique is Technique.UNKNOWN else codes_as_imrt(b.technique, policy),
            f"beam {beam_name(b.beam)}: {b.technique.value} ({b.technique_reason})",
            dicom_path=f"{b.beam.dicom_path}.{cp_keyword(b.beam)}",
            observed=technique_numbers(b),
            threshold=dict(thresholds),
            setting="modulation",
        )
        for b in ports
    ]


# ------------------------------------------------------------------ Gamma Knife


def gamma_knife_beam(b: BeamAssessment) -> BeamAssessment:
    """A beam of a Leksell GammaPlan plan, as what it stands for."""
    return replace(
        b,
        technique=Technique.GAMMA_KNIFE,
        technique_reason="placeholder beam of a Leksell GammaPlan plan (no MLC, no leaf or"
        " jaw positions): the Gamma Knife's shots are not in the RT Plan",
    )


class Radiosurgery(NamedTuple):
    evidence: tuple[Evidence, Evidence]
    flag: Flag
    code: str | None  # 77295, or None when its companions do not link


def gamma_knife_rule(lp: LinkedPlan, names: str, policy: Policy) -> Radiosurgery:
    """A Leksell GammaPlan plan (vendors.gamma_knife_plan_names) is stereotactic
    radiosurgery, never an isodose plan: 3-D (77295) when its structure set (a
    contoured target) and its dose (a 3-D grid or a DVH) link, else undetermined, with
    the flag ``gamma_knife_plan`` saying why."""
    plan = lp.plan
    where = f"{plan.path}::{plan.beam_sequence_keyword}"
    recognised = Evidence(
        "beams.gamma_knife_plan",
        True,
        f"Leksell Gamma Knife plan ({names}): its {len(plan.beams)} beam(s) are placeholders"
        " and the shots are not in the RT Plan; stereotactic radiosurgery, coded 3-D when its"
        " structure set (contoured target) and dose link, never an isodose plan",
        dicom_path=where,
        observed=names,
    )
    ss = lp.structure_set
    need = policy.three_d.min_targets
    targets = rois_with_role(ss, "target", policy) if ss is not None else ()
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
    companions = Evidence(
        "3d.gamma_knife_companions",
        True if not missing else (False if failed else None),
        (
            f"{len(targets)} contoured target(s) in {ss.path if ss else '-'} and a dose in"
            f" {doses[0].path}: the radiosurgery plan is 3-D"
            if not missing
            else "cannot code the radiosurgery plan: " + "; ".join(missing)
        ),
        dicom_path=f"{ss.path}::RTROIObservationsSequence" if ss is not None else None,
        observed={"targets": [r.name for r in targets], "doses": [d.path for d in doses]},
        threshold=need,
        setting="three_d.min_targets",
    )
    if not missing:
        flag = Flag(
            "gamma_knife_plan",
            "info",
            "Leksell GammaPlan plan: its beam is a placeholder and the shots are not in"
            " the RT Plan; coded 3-D from its contoured target(s) and dose",
            where,
        )
        return Radiosurgery((recognised, companions), flag, "77295")
    flag = Flag(
        "gamma_knife_plan",
        "warning",
        "Leksell GammaPlan plan: its beam is a placeholder and the shots are not in the"
        " RT Plan, and " + "; ".join(missing) + ": stereotactic radiosurgery (never an"
        " isodose plan) whose code cannot be determined from this export",
        where,
    )
    return Radiosurgery((recognised, companions), flag, None)


# ------------------------------------------------------------------ never inferred

SPECIAL_DOSIMETRY = Evidence(
    "special_dosimetry.77331",
    None,
    "special dosimetry (TLD, diodes, film) cannot be determined from plan files: it needs"
    " a physician order and a signed measurement report",
)
