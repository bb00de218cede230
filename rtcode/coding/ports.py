"""Which beams are treatment ports, each measured and given its technique.

The ports are the treatment beams a fraction group references (all beams when no
fraction group references any), of a delivery type the policy's ``[beams]`` section
counts, with a meterset above its minimum. Also the names and DICOM paths the rules'
evidence uses for beams.
"""

from __future__ import annotations

from rtcode.coding.policy import Policy
from rtcode.coding.techniques import beam_technique
from rtcode.link import LinkedPlan
from rtcode.measure.metrics import beam_metrics
from rtcode.model.codes import BeamAssessment, Flag
from rtcode.model.facts import Beam, Plan

# Each beam's meterset (summed over the fraction groups that reference it) and the last
# fraction group that references it, by beam number.
_References = dict[int | None, tuple[float | None, int | None]]


def assess_beams(lp: LinkedPlan, policy: Policy) -> tuple[list[BeamAssessment], list[Flag]]:
    """Every beam of the plan, measured, with its technique and whether it is a port;
    and the flags the fraction groups raise (a missing beam, no fraction group)."""
    plan = lp.plan
    referenced, flags = _referenced_beams(plan)
    # Fraction groups that say they deliver beams but reference none (GammaPlan): the
    # beams are taken from the beam sequence too (the plan's count_mismatch flag says so).
    no_fg = not plan.fraction_groups or plan.fraction_groups_reference_no_beam
    mod = policy.modulation
    out = []
    for beam in plan.beams:
        m = beam_metrics(
            beam,
            mod.segment_tolerance_mm,
            mod.small_aperture_width_mm,
            mod.closed_leaf_gap_mm,
            mod.fif_inside_tolerance_mm,
            policy.isodose.rectangle_tolerance_mm,
        )
        technique, why = beam_technique(beam, m, policy)
        mu, fg_number = referenced.get(beam.number, (None, None))
        reason = _not_a_port(beam, beam.number in referenced, mu, no_fg, policy)
        out.append(BeamAssessment(beam, m, mu, fg_number, reason is None, reason, technique, why))
    return out, flags


def _referenced_beams(plan: Plan) -> tuple[_References, list[Flag]]:
    flags: list[Flag] = []
    referenced: _References = {}
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
    if not plan.fraction_groups and plan.beams:
        flags.append(
            Flag(
                "no_fraction_group",
                "warning",
                "no FractionGroupSequence: treatment beams taken from the beam sequence and"
                " their MU cannot be read",
            )
        )
    return referenced, flags


def _not_a_port(
    beam: Beam, referenced: bool, mu: float | None, no_fg: bool, policy: Policy
) -> str | None:
    """Why the beam is not a treatment port, or None when it is one."""
    types = [t.upper() for t in policy.beams.treatment_delivery_types]
    min_mu = policy.beams.min_meterset_mu
    if not no_fg and not referenced:
        return "not referenced by any fraction group"
    if beam.effective_delivery_type not in types:
        return f"TreatmentDeliveryType {beam.effective_delivery_type}"
    if not no_fg and mu is None:
        return "BeamMeterset absent: cannot tell whether it delivers dose"
    if not no_fg and mu is not None and mu <= min_mu:
        return f"meterset {mu:g} MU (not above {min_mu:g} MU): imaging or placeholder beam"
    return None


def beam_name(beam: Beam) -> str:
    """The beam as the evidence names it: number and name."""
    if beam.name:
        return f"{beam.number} {beam.name!r}" if beam.number is not None else repr(beam.name)
    return str(beam.number)


def cp_keyword(beam: Beam) -> str:
    return "IonControlPointSequence" if beam.is_ion else "ControlPointSequence"


def plan_cp_keyword(plan: Plan) -> str:
    return (
        "IonControlPointSequence"
        if plan.beam_sequence_keyword == "IonBeamSequence"
        else "ControlPointSequence"
    )
