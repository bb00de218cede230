"""Classifying one plan: a pure function of the linked facts, the metrics and the policy.

``classify(linked_plan, policy)`` weighs every rule in a fixed order (``weigh``: the
rule functions of rules.py, three_d.py and isodose.py, each returning its evidence),
then lets the decision table (decisions.py) pick the code. All rules are evaluated and
reported, so a reviewer sees why the others did not decide. Nothing here reads files;
thresholds come only from the policy's typed sections.
"""

from __future__ import annotations

from rtcode.coding import rules
from rtcode.coding.decisions import Findings, confidence, decide
from rtcode.coding.isodose import isodose_evidence
from rtcode.coding.policy import Policy
from rtcode.coding.ports import assess_beams
from rtcode.coding.roles import roi_role, rois_with_role, role_reason
from rtcode.coding.techniques import codes_as_imrt, fif_verdict, mlc_shapes_field
from rtcode.coding.three_d import ThreeDVerdict, three_d_checks, three_d_verdict
from rtcode.dicom.vendors import gamma_knife_plan_names, gamma_plan_flags
from rtcode.link import LinkedPlan
from rtcode.model.codes import BeamAssessment, Classification, Evidence, Flag, Technique

__all__ = ["classify", "fif_verdict", "mlc_shapes_field", "role_reason", "roi_role", "weigh"]


def classify(lp: LinkedPlan, policy: Policy) -> Classification:
    evidence: list[Evidence] = []
    flags: list[Flag] = []
    findings = weigh(lp, policy, evidence, flags)
    decision = decide(findings)
    evidence += decision.evidence
    flags += decision.flags
    ss = lp.structure_set
    return Classification(
        code=decision.code,
        category=decision.category,
        confidence=confidence(decision.category, flags, findings, decision),
        evidence=tuple(evidence),
        flags=tuple(flags),
        alternatives=decision.alternatives,
        beams=tuple(findings.beams),
        targets=rois_with_role(ss, "target", policy) if ss else (),
        organs_at_risk=rois_with_role(ss, "organ_at_risk", policy) if ss else (),
    )


def weigh(lp: LinkedPlan, policy: Policy, evidence: list[Evidence], flags: list[Flag]) -> Findings:
    """Evaluate every rule, in the order they are reported: intent, brachytherapy tier
    (a brachytherapy plan: only that), treatment ports, modulation, 3-D, isodose, Gamma
    Knife, special dosimetry. Appends to ``evidence`` and ``flags``; returns what the
    decision table needs."""
    plan = lp.plan
    beams, beam_flags = assess_beams(lp, policy)
    flags += beam_flags
    gamma_knife = gamma_knife_plan_names(plan)
    if gamma_knife is not None:  # its beams are placeholders: say what they stand for
        beams = [rules.gamma_knife_beam(b) for b in beams]
    ports = [b for b in beams if b.counted]

    intent = rules.intent_rule(plan, policy)
    evidence.append(intent)
    flags += rules.verification_flags(plan)
    flags += gamma_plan_flags(rules.general_flags(lp, policy), gamma_knife)

    # A brachytherapy plan (application setups, no beams) is coded by its tier alone:
    # the external-beam rules (ports, modulation, 3-D, isodose) say nothing about it,
    # and their rows ("no wedge on any port") would only bury the one that decides.
    brachy_only = plan.brachy is not None and not plan.beams
    brachy_code = None
    if brachy_only:
        tier = rules.brachy_rule(lp, policy)
        evidence.append(tier.evidence)
        brachy_code = tier.code

    modulated: list[BeamAssessment] = []
    unknown: list[BeamAssessment] = []
    three_d = ThreeDVerdict(False, False, ())
    complex_isodose = False
    if not brachy_only:
        evidence.append(rules.treatment_ports_rule(plan, beams, ports, policy))
        evidence += rules.modulation_rule(ports, policy)
        modulated = [b for b in ports if codes_as_imrt(b.technique, policy)]
        unknown = [b for b in ports if b.technique is Technique.UNKNOWN]
        checks = three_d_checks(lp, ports, policy)
        evidence += [c.evidence for c in checks]
        three_d = three_d_verdict(checks)
        isodose = isodose_evidence(plan, ports, policy)
        evidence += isodose
        complex_isodose = any(e.fired for e in isodose)

    gamma_knife_code = None
    if gamma_knife is not None:  # stereotactic radiosurgery, whatever its placeholder beam
        surgery = rules.gamma_knife_rule(lp, gamma_knife, policy)
        evidence += surgery.evidence
        flags.append(surgery.flag)
        gamma_knife_code = surgery.code
    evidence.append(rules.SPECIAL_DOSIMETRY)  # 77331 is never inferred

    return Findings(
        lp=lp,
        policy=policy,
        beams=beams,
        ports=ports,
        not_billable=bool(intent.fired),
        brachy_only=brachy_only,
        brachy_code=brachy_code,
        gamma_knife=gamma_knife,
        gamma_knife_code=gamma_knife_code,
        modulated=modulated,
        unknown=unknown,
        three_d=three_d,
        complex_isodose=complex_isodose,
    )
