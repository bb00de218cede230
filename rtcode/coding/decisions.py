"""The decision table: from what the rules found (``Findings``) to the planning code.

``LADDER`` is the order the categories are tried in, first match wins; every rule has
already been weighed and reported (classify.py), so a reviewer sees why the rows above
the deciding one did not decide. ``AMENDMENTS`` then adjust the decision (electron
plans under ``electron.plan_code``, borderline field-in-field, unreadable techniques),
in order. To change when a plan is IMRT, change ``techniques.codes_as_imrt`` (what
counts) or the row ``imrt`` here (what it takes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from rtcode.coding.policy import Policy
from rtcode.coding.ports import beam_name, cp_keyword
from rtcode.coding.techniques import is_borderline
from rtcode.coding.three_d import ThreeDVerdict, shaped_ports
from rtcode.link import LinkedPlan
from rtcode.model.codes import CODE_CATEGORY, Alternative, BeamAssessment, Category, Evidence, Flag

_PLANNING = ("77306", "77307", "77295")  # the codes a non-IMRT external-beam plan gets


@dataclass(frozen=True)
class Findings:
    """What the rules found about one plan, as the decision table reads it."""

    lp: LinkedPlan
    policy: Policy
    beams: list[BeamAssessment]
    ports: list[BeamAssessment]
    not_billable: bool
    brachy_only: bool  # application setups and no beams: coded by the tier alone
    brachy_code: str | None
    gamma_knife: str | None  # the names that make it a Leksell GammaPlan plan
    gamma_knife_code: str | None
    modulated: list[BeamAssessment]  # ports that code as IMRT
    unknown: list[BeamAssessment]  # ports whose technique cannot be read
    three_d: ThreeDVerdict
    complex_isodose: bool  # an isodose criterion fired


@dataclass(frozen=True)
class Decision:
    code: str | None
    category: Category
    flags: tuple[Flag, ...] = ()
    alternatives: tuple[Alternative, ...] = ()
    evidence: tuple[Evidence, ...] = ()  # rows the decision itself adds (electron.plan_code)


Row = Callable[[Findings], "Decision | None"]


# ------------------------------------------------------------------ the ladder


def _not_billable(f: Findings) -> Decision | None:
    return Decision(None, Category.NOT_BILLABLE) if f.not_billable else None


def _brachytherapy(f: Findings) -> Decision | None:
    if f.brachy_code is not None:
        return Decision(f.brachy_code, Category.BRACHYTHERAPY)
    if f.brachy_only:  # a brachytherapy plan whose tier cannot be told
        return Decision(None, Category.UNDETERMINED)
    return None


def _gamma_knife(f: Findings) -> Decision | None:
    if f.gamma_knife is None:
        return None
    code = f.gamma_knife_code
    return Decision(code, Category.UNDETERMINED if code is None else CODE_CATEGORY[code])


def _no_treatment_beam(f: Findings) -> Decision | None:
    if f.ports:
        return None
    flag = Flag("no_treatment_beam", "warning", "no treatment beam: nothing to code from")
    return Decision(None, Category.UNDETERMINED, (flag,))


def _imrt(f: Findings) -> Decision | None:
    if not f.modulated:
        return None
    techniques = sorted({b.technique.value for b in f.modulated})
    flags = [
        Flag(
            "inverse_planning_not_recorded",
            "info",
            "DICOM does not record inverse vs forward planning; only the delivery pattern"
            f" ({', '.join(techniques)}) was read",
        )
    ]
    if f.policy.imrt.require_inverse_planning_evidence:
        flags.append(
            Flag(
                "inverse_planning_evidence_required",
                "warning",
                "this policy requires inverse planning for IMRT (e.g. Medicare LCD L36711):"
                " keep the optimisation record (objectives, optimiser report) with the chart",
            )
        )
    return Decision("77301", Category.IMRT, tuple(flags))


def _three_d(f: Findings) -> Decision | None:
    return Decision("77295", Category.THREE_D) if f.three_d.met else None


def _isodose(f: Findings) -> Decision | None:
    """77307 when an isodose criterion fired, else 77306; a plan that is 3-D but for
    companion files not in the export is demoted (or coded 3-D) as the policy says."""
    code = "77307" if f.complex_isodose else "77306"
    needs = f.three_d.needs
    if f.three_d.missing_only:
        return _missing_companions(f, needs)
    if code == "77307" and needs and shaped_ports(f.ports, f.policy):
        alternative = Alternative(
            "77295",
            Category.THREE_D.value,
            "if a 3-D plan was done: needs " + " and ".join(needs),
        )
        return Decision(code, CODE_CATEGORY[code], alternatives=(alternative,))
    return Decision(code, CODE_CATEGORY[code])


def _missing_companions(f: Findings, needs: tuple[str, ...]) -> Decision:
    absent = " and ".join(needs)
    verb = "are" if len(needs) > 1 else "is"
    if not f.policy.three_d.missing_companion_demotes:
        flag = Flag(
            "companion_missing",
            "warning",
            f"coded 3-D although the {absent} {verb} not in the export"
            " (setting three_d.missing_companion_demotes = false)",
        )
        return Decision("77295", Category.THREE_D, (flag,))
    alternative = Alternative(
        "77295",
        Category.THREE_D.value,
        f"if the {absent} of this plan {verb} in the planning system but not in this export",
    )
    flag = Flag(
        "companion_missing",
        "warning",
        f"3-D evidence incomplete only because the {absent} {verb} not in the"
        " export (setting three_d.missing_companion_demotes)",
    )
    return Decision("77307", Category.COMPLEX_ISODOSE, (flag,), (alternative,))


# In order, first match wins; the last always matches.
LADDER: tuple[tuple[str, Row], ...] = (
    ("not_billable", _not_billable),
    ("brachytherapy", _brachytherapy),
    ("gamma_knife", _gamma_knife),
    ("no_treatment_beam", _no_treatment_beam),
    ("imrt", _imrt),
    ("3d", _three_d),
    ("isodose", _isodose),
)


# ------------------------------------------------------------------ amendments

Amendment = Callable[[Findings, Decision], Decision]


def _electron_plan_code(f: Findings, d: Decision) -> Decision:
    """An electron-only isodose plan coded 77321 where the policy says so."""
    electrons = [b for b in f.ports if b.beam.radiation_type == "ELECTRON"]
    if not (
        d.code in ("77306", "77307")
        and electrons
        and len(electrons) == len(f.ports)
        and f.policy.electron.plan_code == "77321"
    ):
        return d
    found = Evidence(
        "electron.plan_code",
        True,
        "electron-only plan coded as a special teletherapy port plan under this policy",
        observed=len(electrons),
        threshold="77321",
        setting="electron.plan_code",
    )
    return replace(d, code="77321", category=Category.SPECIAL_PORT, evidence=(*d.evidence, found))


def _borderline_field_in_field(f: Findings, d: Decision) -> Decision:
    """Sub-segments partly outside their main aperture: coded as field-in-field, with
    IMRT as the alternative (never the other way round: coding-rules)."""
    borderline = [b for b in f.ports if is_borderline(b, f.policy)]
    if not borderline or d.code not in _PLANNING:
        return d
    names = ", ".join(beam_name(b.beam) for b in borderline)
    worst = max(
        b.metrics.subsegment_outside_share
        for b in borderline
        if b.metrics.subsegment_outside_share is not None
    )
    nested = f.policy.modulation.fif_nested_max_outside_share
    modulated = f.policy.modulation.fif_modulated_min_outside_share
    flag = Flag(
        "fif_borderline",
        "warning",
        f"sub-segments of beam(s) {names} lie partly outside their main aperture (up to"
        f" {worst:.1%} of a sub-segment's area, between the {nested:.0%} of nested"
        f" field-in-field and the {modulated:.0%} of step-and-shoot IMRT): coded as"
        " field-in-field; check the planning record for inverse optimisation"
        " (settings modulation.fif_nested_max_outside_share,"
        " modulation.fif_modulated_min_outside_share)",
        f"{borderline[0].beam.dicom_path}.{cp_keyword(borderline[0].beam)}",
    )
    alternative = Alternative(
        "77301",
        Category.IMRT.value,
        f"if the segments of beam(s) {names} were inverse planned (step-and-shoot IMRT)"
        " rather than forward-planned field-in-field",
    )
    return replace(d, flags=(*d.flags, flag), alternatives=(*d.alternatives, alternative))


def _unreadable_technique(f: Findings, d: Decision) -> Decision:
    if not f.unknown or d.code not in _PLANNING:
        return d
    alternative = Alternative(
        "77301",
        Category.IMRT.value,
        "if the beams whose technique could not be read ("
        + ", ".join(beam_name(b.beam) for b in f.unknown)
        + ") are intensity modulated",
    )
    return replace(d, alternatives=(*d.alternatives, alternative))


AMENDMENTS: tuple[Amendment, ...] = (
    _electron_plan_code,
    _borderline_field_in_field,
    _unreadable_technique,
)


def decide(f: Findings) -> Decision:
    """Walk ``LADDER`` (first match wins), then apply every amendment in order."""
    for _, row in LADDER:
        decision = row(f)
        if decision is not None:
            break
    else:  # pragma: no cover
        raise AssertionError("the isodose row always decides")
    for amend in AMENDMENTS:
        decision = amend(f, decision)
    return decision


def confidence(category: Category, flags: list[Flag], f: Findings, d: Decision) -> str:
    """high, medium or low: low when undetermined or a port's technique is unreadable;
    medium when a warning (other than approval) stands, or when the 3-D rules failed only
    for want of companion files and the plan is coded 77306/77307/77295."""
    if category is Category.UNDETERMINED or f.unknown:
        return "low"
    if category is Category.NOT_BILLABLE:
        return "high"  # the plan says so itself
    demoted = f.three_d.missing_only and d.code in _PLANNING and not f.three_d.met
    if demoted or any(x.severity == "warning" and x.flag != "approval" for x in flags):
        return "medium"
    return "high"
