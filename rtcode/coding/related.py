"""Codes that go with a plan, from the same files: a pure function of facts and policy.

Beside the planning code a department reports basic dosimetry (77300), the MLC
device for IMRT (77338), treatment devices (77332-77334), special port plans
(77321) and, as suggestions only, stereotactic and proton delivery hints. Some
codes can never be read from plan files (77331, 77370, 77470): they are listed
with the evidence that would settle them, never as a code.

Every code carries the date range it is valid in (policy ``[validity]``); the date
of service (the plan date unless given) selects what applies.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace

from rtcode.coding.policy import Policy
from rtcode.coding.techniques import mlc_shapes_field, modulates_intensity
from rtcode.link import LinkedPlan
from rtcode.model.codes import ARCS, BeamAssessment, Category, Classification, Technique


@dataclass(frozen=True)
class RelatedCode:
    code: str
    units: int | None  # None when the code is not asserted (cannot determine)
    kind: str  # "code", "suggestion" (a hint the files cannot prove) or "cannot_determine"
    reason: str
    setting: str | None = None  # the policy key that decided, if any


def date_of_service(lp: LinkedPlan, override: dt.date | None) -> dt.date | None:
    """The date the rules are keyed to: the override, else RTPlanDate, else None."""
    if override is not None:
        return override
    text = lp.plan.date
    if text and len(text) >= 8 and text[:8].isdigit():
        try:
            return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
        except ValueError:
            return None
    return None


def valid_on(code: str, day: dt.date | None, policy: Policy) -> tuple[bool, str]:
    """(valid, why) for a code on a date, from the policy's [validity] table."""
    window = policy.validity.get(code)
    if window is None:
        return True, "no validity range in the policy"
    start, end = window
    if day is None:
        return True, "date of service unknown: validity not checked"
    if start is not None and day < start:
        return False, f"{code} starts {start.isoformat()}"
    if end is not None and day > end:
        return False, f"{code} ended {end.isoformat()}"
    return True, f"{code} valid on {day.isoformat()}"


def related_codes(
    lp: LinkedPlan, c: Classification, policy: Policy, day: dt.date | None = None
) -> tuple[RelatedCode, ...]:
    if c.category in (Category.NOT_BILLABLE, Category.UNDETERMINED):
        return ()
    ports = [b for b in c.beams if b.counted]
    out = _basic_dosimetry(c, ports, policy)
    out += _mlc_device(c, ports)
    out += _devices(ports, c, policy)
    # 77321: special teletherapy port plan (particles, hemibody, total body).
    ions = [b for b in ports if b.beam.is_ion]
    if ions:
        out.append(
            RelatedCode(
                "77321",
                None,
                "suggestion",
                "particle (ion) beams: some payers expect a special teletherapy port plan;"
                " check the payer's rule",
            )
        )
    out += _stereotactic_hints(lp, c, policy)
    if ions:
        out.append(_proton_delivery(lp, ions))
    out += _delivery_hints(c, policy, day)
    out += NEVER_FROM_FILES
    if c.category is Category.IMRT:
        out = [_bundled(r, policy) for r in out]
    # Keep only what is valid on the date of service; say what was dropped.
    kept = []
    for r in out:
        ok, why = valid_on(r.code, day, policy)
        if ok:
            kept.append(r)
        else:
            kept.append(RelatedCode(r.code, None, "not_valid", f"not valid: {why}", "validity"))
    return dedupe(kept, c.code)


# Codes the plan files can never settle: listed with the evidence that would.
NEVER_FROM_FILES = (
    RelatedCode(
        "77331",
        None,
        "cannot_determine",
        "special dosimetry (TLD, diodes, film): needs the physician's order and a signed"
        " measurement report",
    ),
    RelatedCode(
        "77370",
        None,
        "cannot_determine",
        "special medical physics consultation: needs the physician's request and the"
        " physicist's documented report",
    ),
    RelatedCode(
        "77470",
        None,
        "cannot_determine",
        "special treatment procedure (e.g. total body, intraoperative, concurrent"
        " chemotherapy): needs the physician's documentation of the extra work",
    ),
)


def _basic_dosimetry(
    c: Classification, ports: list[BeamAssessment], policy: Policy
) -> list[RelatedCode]:
    """77300: one per treatment field or arc with 3-D and IMRT; never with isodose plans.
    A Gamma Knife plan's one beam is a placeholder: its shots are not in the RT Plan."""
    planning = c.category in (Category.THREE_D, Category.IMRT)
    gamma_knife = bool(ports) and all(b.technique is Technique.GAMMA_KNIFE for b in ports)
    if planning and gamma_knife:
        return [
            RelatedCode(
                "77300",
                None,
                "cannot_determine",
                "basic dosimetry per field or arc: a Gamma Knife RT Plan holds a placeholder"
                " beam, not the shots; count the calculations from the planning report",
            )
        ]
    if planning and ports:
        cap = policy.related.max_basic_dosimetry_per_date
        units = min(len(ports), cap)
        capped = f" (capped at {cap} per date of service)" if len(ports) > cap else ""
        return [
            RelatedCode(
                "77300",
                units,
                "code",
                f"basic dosimetry calculation: one per treatment field or arc,"
                f" {len(ports)} port(s){capped}",
                "related.max_basic_dosimetry_per_date",
            )
        ]
    if c.category in (Category.SIMPLE_ISODOSE, Category.COMPLEX_ISODOSE):
        return [
            RelatedCode(
                "77300",
                0,
                "included",
                "basic dosimetry is included in the isodose plan (77306/77307): not reported",
            )
        ]
    return []


def _mlc_device(c: Classification, ports: list[BeamAssessment]) -> list[RelatedCode]:
    """77338: once per IMRT plan, MLC-based IMRT only (never compensator IMRT)."""
    if c.category is not Category.IMRT:
        return []
    mlc_imrt = [b for b in ports if modulates_intensity(b.technique) and b.metrics.has_mlc]
    if mlc_imrt:
        return [
            RelatedCode(
                "77338",
                1,
                "code",
                f"MLC device for IMRT: once per IMRT plan ({len(mlc_imrt)} MLC-modulated beam(s))",
            )
        ]
    if any((b.beam.number_of_compensators or 0) > 0 for b in ports):
        return [RelatedCode("77338", 0, "code", "compensator-based IMRT: 77338 does not apply")]
    return []


def dedupe(codes: Sequence[RelatedCode], planning_code: str | None) -> tuple[RelatedCode, ...]:
    """Each code once, where it was first listed.

    A code listed again is merged into its first entry, which keeps its kind, units
    and setting; a different reason is added to the first one's. A code or suggestion
    that repeats the plan's own planning code is dropped: the planning code already
    stands, with its evidence (an electron plan coded 77321 under
    ``electron.plan_code`` is not also "with 77321 x1").
    """
    first: dict[str, RelatedCode] = {}
    reasons: dict[str, list[str]] = {}
    for r in codes:
        if r.code == planning_code and r.kind in ("code", "suggestion"):
            continue
        if r.code not in first:
            first[r.code], reasons[r.code] = r, [r.reason]
        elif r.reason not in reasons[r.code]:
            reasons[r.code].append(r.reason)
    return tuple(replace(r, reason="; also: ".join(reasons[code])) for code, r in first.items())


def _in_ranges(code: str, ranges: Sequence[str]) -> bool:
    if not code.isdigit():
        return False
    for item in ranges:
        low, _, high = item.partition("-")
        if low.isdigit() and int(low) <= int(code) <= int(high or low):
            return True
    return False


def _bundled(r: RelatedCode, policy: Policy) -> RelatedCode:
    """With IMRT planning, codes in the bundle list are not reported separately."""
    if r.kind in ("code", "suggestion") and _in_ranges(r.code, policy.bundling.imrt_bundles):
        return RelatedCode(
            r.code,
            0,
            "bundled",
            f"bundled into IMRT planning 77301 (Medicare Claims Processing Manual ch. 4"
            f" s. 200.3.1): {r.reason}",
            "bundling.imrt_bundles",
        )
    return r


def _devices(ports: list[BeamAssessment], c: Classification, policy: Policy) -> list[RelatedCode]:
    """Treatment devices (77332 simple, 77333 intermediate, 77334 complex), one per device
    per port, tiered by the policy's [devices] table."""
    tiers = policy.devices.tier
    counts: dict[str, list[str]] = {}

    def add(kind: str, beam: BeamAssessment) -> None:
        code = tiers.get(kind)
        if code:
            counts.setdefault(code, []).append(f"{kind} on beam {beam.beam.number}")

    for b in ports:
        for _ in b.beam.wedges:
            add("wedge", b)
        for _ in b.beam.blocks:
            add("electron_cutout" if b.beam.radiation_type == "ELECTRON" else "block", b)
        if (b.beam.number_of_compensators or 0) > 0:
            add("compensator", b)
        if (b.beam.number_of_boli or 0) > 0:
            add("bolus", b)
        shaped = mlc_shapes_field(b.metrics, policy)
        # MLC apertures of IMRT beams are covered by 77338, not 77334.
        if shaped and not modulates_intensity(b.technique) and c.category is not Category.IMRT:
            add("mlc_aperture", b)
    out = []
    for code in sorted(counts):
        items = counts[code]
        out.append(
            RelatedCode(
                code,
                len(items),
                "code",
                "treatment devices: " + ", ".join(items),
                "devices.tier",
            )
        )
    return out


def _stereotactic_hints(lp: LinkedPlan, c: Classification, policy: Policy) -> list[RelatedCode]:
    ports = [b for b in c.beams if b.counted]
    fractions = [fg.fractions_planned for fg in lp.plan.fraction_groups if fg.fractions_planned]
    cones = [
        b for b in ports if b.technique in (Technique.STEREOTACTIC_CONE, Technique.GAMMA_KNIFE)
    ]
    # Stereotactic treatments are conformal photon treatments in few fractions.
    conformal = [
        b
        for b in ports
        if b.beam.radiation_type == "PHOTON"
        and b.technique not in (Technique.OPEN, Technique.UNKNOWN)
    ]
    few = bool(fractions) and max(fractions) <= policy.related.sbrt_max_fractions
    if not (cones or (few and conformal)):
        return []
    parts = []
    if few:
        parts.append(f"{max(fractions)} fraction(s)")
    if cones:
        parts.append("cones or Gamma Knife")
    arcs = any(b.technique in ARCS for b in ports)
    if cones and all(b.technique is Technique.GAMMA_KNIFE for b in cones):
        return [
            RelatedCode(
                "77371",
                None,
                "suggestion",
                "radiosurgery on a cobalt-based unit (Gamma Knife): the files cannot prove the"
                " course was delivered as planned: check the treatment record",
                "related.sbrt_max_fractions",
            )
        ]
    return [
        RelatedCode(
            "77371-77373",
            None,
            "suggestion",
            "stereotactic delivery is possible ("
            + ", ".join(parts)
            + (", arcs" if arcs else "")
            + "); the files cannot prove stereotactic intent: check the prescription",
            "related.sbrt_max_fractions",
        )
    ]


def _proton_delivery(lp: LinkedPlan, ions: list[BeamAssessment]) -> RelatedCode:
    isocentres = {b.beam.isocenter_mm for b in ions if b.beam.isocenter_mm is not None}
    compensated = any((b.beam.number_of_compensators or 0) > 0 for b in ions)
    if len(ions) >= 2 and len(isocentres) >= 2:
        code, why = "77525", "two or more ports and isocentres"
    elif len(ions) >= 2:
        code, why = "77523", "two or more ports"
    elif compensated:
        code, why = "77522", "one port with compensation"
    else:
        code, why = "77520", "one port without compensation"
    return RelatedCode(
        code,
        None,
        "suggestion",
        f"proton delivery per session, {why}: a hint from the plan, confirm against the"
        " payer's definitions (77520-77525)",
    )


def _delivery_hints(c: Classification, policy: Policy, day: dt.date | None) -> list[RelatedCode]:
    """IMRT delivery codes, to show the date rule: 77385/77386 ended 2025-12-31."""
    if c.category is not Category.IMRT:
        return []
    out = []
    for code in ("77385", "77386"):
        ok, why = valid_on(code, day, policy)
        if ok:
            out.append(
                RelatedCode(
                    code,
                    None,
                    "suggestion",
                    f"IMRT delivery ({'simple' if code == '77385' else 'complex'}) per"
                    f" session; {why}",
                    "validity",
                )
            )
    if not out:
        out.append(
            RelatedCode(
                "77385/77386",
                None,
                "not_valid",
                "IMRT delivery codes 77385/77386 were deleted on 2026-01-01; report delivery"
                " with the codes in force on the date of service (not in this policy)",
                "validity",
            )
        )
    return out
