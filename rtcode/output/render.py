"""Rendering coded plans: the JSON contract's pieces (plans, beams, the scan document),
CSV rows and the text table (written by ``rtcode.output.formats``), and ``inspect``."""

from __future__ import annotations

import csv
import io
import math
import re
import textwrap
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rtcode import __version__
from rtcode.coding.policy import Policy
from rtcode.model.facts import Plan, Skipped, Tally
from rtcode.model.results import ScanResult
from rtcode.output.terminal import (
    DEFAULT_COLUMNS,
    clip,
    common_folder,
    lines_text,
    one_line,
    plural,
    relative,
    shorten_path,
)

if TYPE_CHECKING:
    from rtcode.link import LinkedPlan
    from rtcode.model.codes import BeamAssessment, Classification
    from rtcode.model.results import PlanResult

ADVISORY = (
    "rtcode is advisory: it suggests codes with their evidence;"
    " it never approves a plan or submits a claim."
)


# ------------------------------------------------------------------------- JSON


def _num(value: float | None, digits: int = 3) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), digits)


def beam_json(b: BeamAssessment) -> dict[str, Any]:
    beam, m = b.beam, b.metrics
    cps = beam.control_points
    couch = next((c for c in cps.couch_deg if not math.isnan(c)), None)  # the first known
    return {
        "number": beam.number,
        "name": beam.name,
        "beam_type": beam.beam_type,
        "radiation_type": beam.radiation_type,
        "nominal_energy": _num(beam.nominal_energy),
        "delivery_type": beam.delivery_type,
        "treatment_port": b.counted,
        "excluded_reason": b.excluded_reason,
        "fraction_group": b.fraction_group,
        "meterset_mu": _num(b.meterset_mu),
        "technique": b.technique.value,
        "technique_reason": b.technique_reason,
        "machine": beam.machine,
        "number_of_control_points": m.control_points,
        "segments": len(m.segments),
        "largest_segment_mu_fraction": _num(m.largest_segment_mu_fraction),
        "subsegment_max_outside_main_mm": _num(m.subsegment_max_outside_main_mm, 1),
        "leaves_move_while_beam_on": m.beam_on_leaf_travel_mm > 0.0,
        "beam_on_leaf_travel_mm": _num(m.beam_on_leaf_travel_mm, 2),
        "leaf_travel_mm": _num(m.leaf_travel_mm, 1),
        "aperture_irregularity_mm": _num(m.aperture_irregularity_mm, 2),
        "mean_aperture_area_mm2": _num(m.mean_area_mm2, 1),
        "leaf_data_stripped": m.leaf_data_stripped,
        "gantry_start_deg": _num(beam.gantry_start_deg, 2),
        "gantry_stop_deg": _num(beam.gantry_stop_deg, 2),
        "gantry_direction": beam.gantry_direction,
        "gantry_span_deg": _num(m.arc_span_deg, 2),
        "mu_per_degree_cv": _num(m.mu_per_degree_cv),
        "collimator_deg": _num(cps.collimator_deg[0] if cps.count else None, 2),
        "couch_deg": _num(couch, 2),
        "isocenter_mm": [_num(v, 2) for v in beam.isocenter_mm] if beam.isocenter_mm else None,
        "beam_limiting_devices": [
            {"type": d.device_type, "pairs": d.number_of_pairs} for d in beam.devices
        ],
        "wedges": [
            {"type": w.wedge_type, "id": w.wedge_id, "angle_deg": _num(w.angle_deg, 1)}
            for w in beam.wedges
        ],
        "blocks": [
            {"type": k.block_type, "name": k.name, "material": k.material} for k in beam.blocks
        ],
        "applicators": [
            {"id": a.applicator_id, "type": a.applicator_type} for a in beam.applicators
        ],
        "compensators": beam.number_of_compensators,
        "boli": beam.number_of_boli,
        "scan_mode": beam.scan_mode,
        "mcs": _num(m.mcs),
        "small_aperture_score": _num(m.small_aperture_score),
        "convexity": _num(m.convexity),
    }


def fraction_groups_json(plan: Plan) -> list[dict[str, Any]]:
    """Per fraction group: "meterset_mu" (kept for compatibility) and
    "meterset_mu_per_fraction" are the same number, BeamMeterset summed over the beams it
    references (MU of one fraction); "course_meterset_mu" is that times "fractions"
    (None when the fractions are unknown)."""
    out = []
    for fg in plan.fraction_groups:
        per_fraction = fg.meterset_mu_per_fraction
        out.append(
            {
                "number": fg.number,
                "fractions": fg.fractions_planned,
                "beams": [r.beam_number for r in fg.referenced_beams],
                "meterset_mu": _num(per_fraction if per_fraction is not None else 0.0, 2),
                "meterset_mu_per_fraction": _num(per_fraction, 2),
                "course_meterset_mu": _num(fg.course_meterset_mu, 1),
                "dose_references": list(fg.referenced_dose_reference_numbers),
            }
        )
    return out


def prescriptions_json(plan: Plan) -> list[dict[str, Any]]:
    """DoseReferenceSequence items: doses in Gy, None when absent; "dose_gy" is the
    course's TargetPrescriptionDose, "dose_per_fraction_gy" derived from the fractions
    of the one fraction group that delivers it."""
    return [
        {
            "number": p.number,
            "type": p.reference_type,
            "structure_type": p.structure_type,
            "description": p.description,
            "roi_number": p.roi_number,
            "dose_gy": _num(p.dose_gy, 4),
            "dose_per_fraction_gy": _num(p.dose_per_fraction_gy, 4),
            "fractions": p.fractions,
            "fraction_group": p.fraction_group,
            "minimum_dose_gy": _num(p.minimum_dose_gy, 4),
            "maximum_dose_gy": _num(p.maximum_dose_gy, 4),
            "delivery_maximum_dose_gy": _num(p.delivery_maximum_dose_gy, 4),
            "dicom_path": p.dicom_path,
        }
        for p in plan.prescriptions
    ]


def prescription_text(p: dict[str, Any]) -> str:
    """One prescription in words: "TARGET PTV_Breast: 40.05 Gy in 15 fractions (2.67 Gy
    per fraction)"."""
    what = " ".join(v for v in (p.get("type") or "dose reference", p.get("description") or "") if v)
    if p.get("roi_number") is not None:
        what += f" (ROI {p['roi_number']})"
    if p.get("dose_gy") is None:
        return f"{what}: no TargetPrescriptionDose"
    text = f"{what}: {p['dose_gy']:g} Gy"
    if p.get("fractions"):
        text += f" in {p['fractions']} fraction(s)"
    if p.get("dose_per_fraction_gy") is not None:
        text += f" ({p['dose_per_fraction_gy']:.4g} Gy per fraction)"
    else:
        text += " (course; per fraction not derivable)"
    return text


def fractionation_texts(plan: Plan) -> list[str]:
    """Per fraction group: "group 1: 15 fraction(s) x 467 MU = 7005.0 MU" (MU per
    fraction, course MU); none for a plan without fraction groups."""
    out = []
    for fg in fraction_groups_json(plan):
        per, course = fg["meterset_mu_per_fraction"], fg["course_meterset_mu"]
        text = (
            f"group {_cell_text(fg['number'])}: {_cell_text(fg['fractions'])} fraction(s)"
            f" x {_cell_text(per)} MU"
        )
        text += f" = {course:.1f} MU in the course" if course is not None else " (course unknown)"
        out.append(text)
    return out


def prescription_texts(plan: Plan) -> list[str]:
    """Each DoseReferenceSequence item in words (``prescription_text``)."""
    return [prescription_text(p) for p in prescriptions_json(plan)]


def _cell_text(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def plan_json(result: PlanResult, policy: Policy) -> dict[str, Any]:
    """One coded plan as the JSON contract has it (a plan of ``rtcode scan --format
    json``, a plan record of jsonl)."""
    lp, c = result.linked, result.classification
    plan = lp.plan
    day = result.date_of_service
    return {
        "path": plan.path,
        "sop_instance_uid": plan.sop_instance_uid,
        "patient_id": plan.patient_id,
        "plan_label": plan.label,
        "plan_name": plan.name,
        "plan_date": plan.date,
        "intent": plan.intent,
        "approval_status": plan.approval_status,
        "planning_system": {
            "manufacturer": plan.planning_system.manufacturer,
            "model": plan.planning_system.model,
            "software_versions": plan.planning_system.software_versions,
        },
        **_coding_json(c),
        "date_of_service": day.isoformat() if day else None,
        "related_codes": [
            {
                "code": r.code,
                "units": r.units,
                "kind": r.kind,
                "reason": r.reason,
                "setting": r.setting,
            }
            for r in result.related
        ],
        "fraction_groups": fraction_groups_json(plan),
        "prescriptions": prescriptions_json(plan),
        "beams": [beam_json(b) for b in c.beams],
        "brachytherapy": _brachy_json(plan),
        "structure_set": _structure_set_json(lp, c, policy),
        "dose": _doses_json(lp),
    }


def _coding_json(c: Classification) -> dict[str, Any]:
    """The code and why: category, confidence, evidence, flags, alternatives."""
    return {
        "code": c.code,
        "label": c.label,
        "category": c.category.value,
        "confidence": c.confidence,
        "evidence": [
            {
                "rule": e.rule,
                "fired": e.fired,
                "finding": e.finding,
                "dicom_path": e.dicom_path,
                "observed": e.observed,
                "threshold": e.threshold,
                "setting": e.setting,
            }
            for e in c.evidence
        ],
        "flags": [
            {"flag": f.flag, "severity": f.severity, "message": f.message}
            | ({"dicom_path": f.dicom_path} if f.dicom_path is not None else {})
            for f in c.flags
        ],
        "alternatives": [
            {"code": a.code, "category": a.category, "condition": a.condition}
            for a in c.alternatives
        ],
    }


def _brachy_json(plan: Plan) -> dict[str, Any] | None:
    if plan.brachy is None:
        return None
    return {
        "treatment_type": plan.brachy.treatment_type,
        "technique": plan.brachy.technique,
        "channels": plan.brachy.number_of_channels,
        "sources": plan.brachy.number_of_sources,  # SourceSequence items: source types
        "source_types": plan.brachy.number_of_source_types,
        "sources_placed": plan.brachy.number_of_seeds,  # seeds; None: cannot be read
        "isotopes": list(plan.brachy.isotopes),
    }


def _structure_set_json(lp: LinkedPlan, c: Classification, policy: Policy) -> dict[str, Any]:
    """The linked structure set with each ROI's role and where the role came from."""
    # here: the classifier (and numpy) is loaded only when a plan is rendered, never by
    # a rescan that writes rows from the cache
    from rtcode.coding.classify import roi_role, role_reason

    ss = lp.structure_set
    if ss is None:
        return {
            "status": lp.structure_set_status,
            "path": None,
            "sop_instance_uid": lp.plan.referenced_structure_set_uid,
            "targets": [],
            "organs_at_risk": [],
            "rois": [],
        }
    rois = []
    for r in ss.rois:
        role, how = roi_role(r, policy)
        rois.append(
            {
                "number": r.number,
                "name": r.name,
                "interpreted_type": r.interpreted_type,
                "role": role,
                "role_from": how,
                "role_reason": role_reason(r, policy),
                "contoured": r.has_contours,
            }
        )
    return {
        "status": lp.structure_set_status,
        "path": ss.path,
        "sop_instance_uid": ss.sop_instance_uid,
        "targets": [r.name for r in c.targets],
        "organs_at_risk": [r.name for r in c.organs_at_risk],
        "rois": rois,
    }


def _doses_json(lp: LinkedPlan) -> list[dict[str, Any]]:
    """The linked doses; DVH ROIs by name where the dose refers to the linked structure
    set, else by number."""
    ss = lp.structure_set
    names = {r.number: r.name for r in ss.rois} if ss is not None else {}
    return [
        {
            "path": d.path,
            "sop_instance_uid": d.sop_instance_uid,
            "summation_type": d.summation_type,
            "grid": {
                "columns": d.grid.columns,
                "rows": d.grid.rows,
                "frames": d.grid.frames,
                "has_pixel_data": d.grid.has_pixel_data,
            },
            "has_dvh": d.dvh_count > 0,
            "dvh_rois": [
                names.get(n, n)
                if d.referenced_structure_set_uid == (ss and ss.sop_instance_uid)
                else n
                for n in d.dvh_roi_numbers
            ],
        }
        for d in lp.doses
    ]


def scan_json(result: ScanResult) -> dict[str, Any]:
    return scan_document(
        [plan_json(p, result.policy) for p in result.plans],
        result.inventory.tally(),
        result.interrupted,
        result.policy,
    )


def scan_summary(tally: Tally, plans: int, interrupted: bool) -> dict[str, Any]:
    return {
        "files_seen": tally.files_seen,
        "plans": plans,
        "structure_sets": tally.structure_sets,
        "doses": tally.doses,
        "images_skipped": tally.images_skipped,
        "other_dicom_skipped": tally.other_dicom_skipped,
        "non_dicom_skipped": tally.non_dicom_skipped,
        "errors": len(tally.errors),
        "interrupted": interrupted,
    }


def scan_document(
    plans: list[dict[str, Any]], tally: Tally, interrupted: bool, policy: Policy
) -> dict[str, Any]:
    """The JSON document of a scan, from its plans already rendered by ``plan_json``."""
    return {
        "rtcode_version": __version__,
        "advisory": ADVISORY,
        "policy": policy.summary(),
        "summary": scan_summary(tally, len(plans), interrupted),
        "plans": plans,
        "errors": [{"path": e.path, "error": e.error} for e in tally.errors],
        "skipped": [skipped_json(s) for s in tally.skipped],
    }


def skipped_json(s: Skipped) -> dict[str, Any]:
    """A file that was neither read as an RT object nor counted as an image."""
    return {
        "path": s.path,
        "sop_class_uid": s.sop_class_uid,
        "modality": s.modality,
        "reason": s.reason,
    }


# -------------------------------------------------------------------------- CSV

CSV_COLUMNS = [
    "path",
    "patient_id",
    "plan_label",
    "sop_instance_uid",
    "code",
    "label",
    "category",
    "confidence",
    "treatment_ports",
    "techniques",
    "reasons",
    "flags",
    "alternatives",
    # added later, at the end so that the columns before keep their places
    "related_codes",
    "date_of_service",
    "policy_name",
    "policy_version",
]


# Plain decimal numbers, one or more separated by single spaces ("-45", "-45 45",
# "+1.5e3"): a spreadsheet reads them as numbers, not formulas. Anything more ("-2+3",
# "+1-555-0100") is an expression a spreadsheet would compute.
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_NUMBERS = re.compile(rf"^{_NUMBER}(?: {_NUMBER})*$")


def safe_cell(value: Any) -> str:
    """Neutralise spreadsheet formulas: a cell starting with = + - @ (or a tab or carriage
    return) gets a leading quote, unless it is only numbers (a negative jaw position)."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _NUMBERS.match(text):
        return "'" + text
    return text


def _reasons(c: Classification) -> list[str]:
    return [e.finding for e in c.deciding_evidence()]


def _techniques(c: Classification) -> str:
    seen: dict[str, int] = {}
    for b in c.beams:
        if b.counted:
            seen[b.technique.value] = seen.get(b.technique.value, 0) + 1
    return ", ".join(f"{k} x{v}" if v > 1 else k for k, v in seen.items())


def related_text(p: PlanResult) -> str:
    """The related codes the files support, with their units when more than one:
    "77300x4 77338 77334x2"."""
    return " ".join(code if units == 1 else f"{code}x{units}" for code, units in related_billed(p))


def csv_row(p: PlanResult, policy: Policy) -> list[str]:
    """One plan's CSV row (``CSV_COLUMNS``), spreadsheet-safe."""
    plan, c = p.linked.plan, p.classification
    day = p.date_of_service
    row = [
        plan.path,
        plan.patient_id,
        plan.label,
        plan.sop_instance_uid,
        c.code or "",
        c.label or "",
        c.category.value,
        c.confidence,
        sum(1 for b in c.beams if b.counted),
        _techniques(c),
        "; ".join(_reasons(c)),
        "; ".join(f.message for f in c.flags if f.severity == "warning"),
        "; ".join(f"{a.code} {a.condition}" for a in c.alternatives),
        related_text(p),
        day.isoformat() if day else "",
        policy.name,
        policy.version,
    ]
    return [safe_cell(v) for v in row]


def csv_text(rows: Iterable[list[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    return buf.getvalue()


# ------------------------------------------------------------------------ table


def _clip(text: str, width: int) -> str:
    return clip(text, width)  # escaped for the terminal (rtcode.output.terminal)


def _wrap(text: str, width: int = 100) -> list[str]:
    text = one_line(text)  # escaped for the terminal before it is measured
    if len(text) <= width - 4:  # fits on the first line: what textwrap would make of it
        return ["    " + text] if text else []
    return textwrap.wrap(text, width, initial_indent="    ", subsequent_indent="      ")


def brachy_technique(plan: Plan) -> str | None:
    """A brachytherapy plan's technique in a few words, by the count that tiers it:
    "HDR 13 channels", "LDR 108 seeds"; None for a plan with beams."""
    b = plan.brachy
    if b is None or plan.beams:
        return None
    kind = b.treatment_type or "brachy"
    channels = b.number_of_channels
    if b.treatment_type in ("HDR", "PDR") or b.number_of_seeds is None:
        return f"{kind} {channels} channel{'s' if channels != 1 else ''}"
    seeds = b.number_of_seeds
    return f"{kind} {seeds} seed{'s' if seeds != 1 else ''}"


def table_row(p: PlanResult) -> tuple[str, ...]:
    """One plan's line in the table (``TABLE_HEAD``); the plan file first, as it is
    (``table_text`` shortens it), the techniques last."""
    plan, c = p.linked.plan, p.classification
    return (
        plan.path,
        plan.patient_id or "-",
        plan.label or "-",
        c.code or "-",
        c.category.value,
        c.confidence,
        brachy_technique(plan) or _techniques(c) or "-",
    )


CHECK = "check: "  # how a details line of a warning starts


def related_billed(p: PlanResult) -> list[tuple[str, int]]:
    """The related codes the plan's files support, with their units: (code, units)."""
    return [(r.code, r.units) for r in p.related if r.kind == "code" and r.units]


def table_details(p: PlanResult) -> list[str]:
    """One plan's paragraph after the table: its heading, then every reason the code
    rests on, the alternatives, the related codes and the checks, one line each
    (``table_text`` wraps them)."""
    c = p.classification
    lines = [
        one_line(f"{p.linked.plan.path}: {c.code or 'no code'} ({c.label or c.category.value})")
    ]
    lines += [f"because {r}" for r in _reasons(c)]
    lines += [f"alternative {a.code} {a.condition}" for a in c.alternatives]
    billed = related_billed(p)
    if billed:
        lines.append("with " + ", ".join(f"{code} x{units}" for code, units in billed))
    lines += [CHECK + f.message for f in c.flags if f.severity == "warning"]
    return lines


TABLE_HEAD = ("plan file", "patient", "label", "code", "category", "conf.", "techniques")
_PATH, _PATIENT, _LABEL, _TECHNIQUES = 0, 1, 2, 6
_GAP = 2  # spaces between columns
# When the table is wider than its width, these columns give way in this order, each
# down to the width given (never below its heading); the patient ID, code, category
# and confidence are never cut. What is still too wide then runs over.
_SHRINK = (
    (_PATH, 28),
    (_TECHNIQUES, 22),
    (_LABEL, 12),
    (_PATH, 20),
    (_TECHNIQUES, 14),
    (_LABEL, 8),
    (_PATH, 12),
    (_TECHNIQUES, 12),  # "step_an~ x12": 80 columns hold the sample data
    (_PATH, 0),  # down to the headings
    (_TECHNIQUES, 0),
)
_COUNT = re.compile(r" x\d+$")  # "vmat x2": how many beams


def column_widths(rows: list[tuple[str, ...]], width: int) -> list[int]:
    """Each column as wide as its widest value, then narrowed (``_SHRINK``) until the
    table fits in ``width`` characters or may give no more."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE_HEAD))]
    excess = sum(widths) + _GAP * (len(widths) - 1) - width
    for column, floor in _SHRINK:
        if excess <= 0:
            break
        floor = max(floor, len(TABLE_HEAD[column]))
        given = min(excess, max(widths[column] - floor, 0))
        widths[column] -= given
        excess -= given
    return widths


def _table_cell(column: int, text: str, width: int) -> str:
    """One shown value in its column: a path shortened in its middle (the file name
    kept), a technique count kept ("step_and_shoot_~ x12"), else clipped with "~"."""
    if len(text) <= width:
        return text
    if column == _PATH:
        return shorten_path(text, width)
    count = _COUNT.search(text) if column == _TECHNIQUES else None
    if count is not None and width > len(count.group()) + 2:
        return clip(text[: count.start()], width - len(count.group())) + count.group()
    return clip(text, width)


def table_text(
    rows: list[tuple[str, ...]],
    details: list[list[str]],
    tally: Tally,
    interrupted: bool,
    policy: Policy,
    *,
    width: int = DEFAULT_COLUMNS,
    show_details: bool = True,
) -> str:
    """The scan as text: the table in ``width`` columns (plan files shown below their
    common folder), each plan's details when ``show_details`` (else how to see them and
    how many checks they hold), then the counts, errors and policy."""
    # Values are measured as shown: escaped, one line (rtcode.output.terminal).
    shown_rows = [tuple(one_line(v) for v in r) for r in rows]
    folder = common_folder(r[_PATH] for r in shown_rows)
    shown_rows = [(relative(r[0], folder), *r[1:]) for r in shown_rows]
    table = [TABLE_HEAD, *shown_rows]
    widths = column_widths(table, width)
    lines = []
    for i, r in enumerate(table):
        cells = (_table_cell(j, v, widths[j]).ljust(widths[j]) for j, v in enumerate(r))
        lines.append((" " * _GAP).join(cells).rstrip())
        if i == 0:
            lines.append((" " * _GAP).join("-" * w for w in widths))
    if folder:
        lines.append(f"plan files under {folder}/")
    lines.append("")
    wrap = max(min(width, DEFAULT_COLUMNS), 40)  # prose: no wider than it reads well
    if show_details:
        for paragraph in details:  # rows kept in the scan cache are made safe by lines_text
            lines.extend(paragraph[:1])
            for item in paragraph[1:]:
                lines.extend(_wrap(item, wrap))
        if details:
            lines.append("")
    elif details:
        checks = [sum(one_line(x).startswith(CHECK) for x in d[1:]) for d in details]
        lines += _prose(
            "--details shows why each plan has its code"
            + (
                f", and the {plural(sum(checks), 'check')} to make on"
                f" {plural(sum(1 for n in checks if n), 'plan')}"
                if any(checks)
                else ""
            ),
            wrap,
        )
        lines.append("")
    skipped = tally.non_dicom_skipped + tally.other_dicom_skipped
    lines += _prose(
        f"{plural(tally.files_seen, 'file')}: {plural(len(rows), 'plan')},"
        f" {plural(tally.structure_sets, 'structure set')}, {plural(tally.doses, 'dose')},"
        f" {plural(tally.images_skipped, 'image')} skipped,"
        f" {plural(skipped, 'other file')} skipped, {plural(len(tally.errors), 'error')}",
        wrap,
    )
    # one line each, however long: "error: PATH: why" is a record to grep for
    for reason, count in tally.skipped_by_reason():
        lines.append(f"{count} skipped: {reason}")
    for e in tally.errors:
        lines.append(f"error: {e.path}: {e.error}")
    if interrupted:
        lines += _prose(
            "interrupted (Ctrl-C): only the files read before it are reported; a plan whose"
            " structure set or dose was not read yet may be coded lower",
            wrap,
        )
    lines += _prose(f"policy {policy.name} {policy.version}. {ADVISORY}", wrap)
    return lines_text(lines)


def _prose(text: str, width: int) -> list[str]:
    """A sentence after the table in lines of ``width``; a path or a word longer than
    that is never broken."""
    return textwrap.wrap(
        one_line(text),
        width,
        subsequent_indent="  ",
        break_long_words=False,
        break_on_hyphens=False,
    )


# ---------------------------------------------------------------------- inspect


def control_points_json(b: BeamAssessment) -> list[dict[str, Any]]:
    """Every control point of a beam, values carried forward, with its aperture."""
    beam, m = b.beam, b.metrics
    cps = beam.control_points
    from rtcode.measure.metrics import apertures  # here: numpy, never loaded by a rescan

    ap = apertures(beam)
    mu = b.meterset_mu
    weights = cps.cumulative_meterset_weight
    final = beam.final_cumulative_meterset_weight
    rows = []
    for i in range(cps.count):
        w = float(weights[i])
        row: dict[str, Any] = {
            "index": i,
            "gantry_deg": _num(cps.gantry_deg[i], 2),
            "collimator_deg": _num(cps.collimator_deg[i], 2),
            "couch_deg": _num(cps.couch_deg[i], 2),
            "cumulative_meterset_weight": _num(w, 6),
            "cumulative_meterset_mu": (
                _num(w / final * mu, 3) if mu is not None and final and not math.isnan(w) else None
            ),
            # MU delivered from this control point to the next
            "meterset_mu": _num(m.cp_mu_fraction[i] * mu, 3) if mu is not None else None,
            "aperture_area_mm2": _num(m.area_mm2[i], 1) if m.area_mm2 is not None else None,
            "aperture_perimeter_mm": (
                _num(m.perimeter_mm[i], 1) if m.perimeter_mm is not None else None
            ),
            "lsv": _num(m.lsv[i]) if m.lsv is not None else None,
            "aav": _num(m.aav[i]) if m.aav is not None else None,
        }
        if ap is not None:
            row["jaw_travel_mm"] = [_num(v, 2) for v in ap.jaw_travel_mm[i]]
            row["jaw_across_mm"] = [_num(v, 2) for v in ap.jaw_strip_mm[i]]
        rows.append(row)
    return rows


def inspect_json(
    result: PlanResult, policy: Policy, control_points: bool = False
) -> dict[str, Any]:
    lp, c = result.linked, result.classification
    plan = lp.plan
    ports = [b for b in c.beams if b.counted]
    from rtcode.measure.metrics import plan_metrics  # here: numpy (see above)

    agg = plan_metrics(
        [(b.metrics, b.meterset_mu) for b in ports],
        [plan.beam_course_mu(b.beam.number) for b in ports],
    )
    beams = []
    for b in c.beams:
        item = beam_json(b)
        if control_points:
            item["control_points"] = control_points_json(b)
        beams.append(item)
    return {
        "rtcode_version": __version__,
        "policy": policy.summary(),
        "path": plan.path,
        "sop_instance_uid": plan.sop_instance_uid,
        "patient_id": plan.patient_id,
        "plan_label": plan.label,
        "plan_name": plan.name,
        "intent": plan.intent,
        "approval_status": plan.approval_status,
        "fraction_groups": fraction_groups_json(plan),
        "prescriptions": prescriptions_json(plan),
        "plan_metrics": {
            "treatment_beams": agg.beams,
            # the beams' MU as given: per fraction, summed over the fraction groups
            "meterset_mu": _num(agg.meterset_mu, 2),
            # MU x fractions over the fraction groups; None when fractions are unknown
            "course_meterset_mu": _num(agg.course_meterset_mu, 1),
            "metrics_weighted_by": agg.weighted_by,
            "control_points": agg.control_points,
            "segments": agg.segments,
            "mcs": _num(agg.mcs),
            "small_aperture_score": _num(agg.small_aperture_score),
            "mean_aperture_area_mm2": _num(agg.mean_area_mm2, 1),
        },
        "beams": beams,
    }


_BEAM_COLUMNS = [
    ("number", "#"),
    ("name", "name"),
    ("technique", "technique"),
    ("meterset_mu", "MU"),
    ("number_of_control_points", "CPs"),
    ("segments", "segs"),
    ("mcs", "MCS"),
    ("small_aperture_score", "SAS"),
    ("gantry_start_deg", "gantry"),
    ("gantry_stop_deg", "to"),
    ("collimator_deg", "coll"),
    ("couch_deg", "couch"),
    ("treatment_port", "port"),
]
_CP_COLUMNS = [
    ("index", "cp"),
    ("gantry_deg", "gantry"),
    ("cumulative_meterset_weight", "cum. weight"),
    ("meterset_mu", "MU to next"),
    ("aperture_area_mm2", "area mm2"),
    ("aperture_perimeter_mm", "perim. mm"),
    ("lsv", "LSV"),
    ("aav", "AAV"),
    ("jaw_travel_mm", "jaws along leaves"),
    ("jaw_across_mm", "jaws across"),
]


def _cell(value: Any, absent: str = "-") -> str:
    if value is None:
        return absent
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return " ".join(_cell(v, absent) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _grid(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> list[str]:
    table = [[title for _, title in columns]]
    table += [[_clip(_cell(r.get(key)), 30) for key, _ in columns] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(widths[i]) for i, v in enumerate(row)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _mu_headline(data: dict[str, Any]) -> str:
    """The course total (MU x fractions over the fraction groups) and, per group, the MU
    of one fraction: never per-fraction MU summed over groups of different fractions."""
    pm = data["plan_metrics"]
    groups = data["fraction_groups"]
    per = [g["meterset_mu_per_fraction"] for g in groups]
    course = pm.get("course_meterset_mu")
    if not groups:
        return f"{_cell(pm['meterset_mu'])} MU (no fraction group)"
    if len(groups) == 1:
        text = f"{_cell(per[0])} MU per fraction"
    else:
        text = "MU per fraction " + " / ".join(_cell(v) for v in per) + " (groups)"
    if course is not None:
        text += f", {course:.1f} MU in the course"
    else:
        text += ", course MU unknown (fractions not stated)"
    return text


def inspect_table(data: dict[str, Any]) -> str:
    pm = data["plan_metrics"]
    lines = [
        f"{data['path']} (for the planning code, run rtcode scan on the whole export)",
        f"plan {data['plan_label'] or '-'} ({data['plan_name'] or '-'}), patient"
        f" {data['patient_id'] or '-'}, intent {data['intent'] or '-'},"
        f" {data['approval_status'] or 'approval status absent'}",
        f"{pm['treatment_beams']} treatment beam(s), {_mu_headline(data)},"
        f" {pm['control_points']} control points,"
        f" {pm['segments']} segments, MCS {_cell(pm['mcs'])}",
        "",
    ]
    for fg in data["fraction_groups"]:
        course = fg["course_meterset_mu"]
        lines.append(
            f"fraction group {fg['number']}: {_cell(fg['fractions'])} fraction(s), beams"
            f" {', '.join(str(n) for n in fg['beams'])},"
            f" {_cell(fg['meterset_mu_per_fraction'])} MU per fraction"
            + (f", {course:.1f} MU in the course" if course is not None else "")
        )
    for p in data.get("prescriptions", []):
        lines.append(f"prescription {_cell(p['number'])}: {prescription_text(p)}")
    lines.append("")
    lines += _grid(data["beams"], _BEAM_COLUMNS)
    lines.append("")
    for beam in data["beams"]:
        lines.extend(
            _wrap(f"beam {beam['number']} {beam['name'] or ''}: {beam['technique_reason']}")
        )
        if not beam["treatment_port"]:
            lines.extend(_wrap(f"not a treatment port: {beam['excluded_reason']}"))
    for beam in data["beams"]:
        if isinstance(beam.get("control_points"), list):
            lines += ["", f"beam {beam['number']} {beam['name'] or ''}: control points"]
            lines += _grid(beam["control_points"], _CP_COLUMNS)
    return lines_text(lines)


def inspect_csv(data: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    with_cps = any(isinstance(b.get("control_points"), list) for b in data["beams"])
    if with_cps:
        keys = [k for k, _ in _CP_COLUMNS] + ["cumulative_meterset_mu", "lsv", "aav"]
        writer.writerow(["beam_number", "beam_name", *keys])
        for beam in data["beams"]:
            for cp in beam.get("control_points", []):
                writer.writerow(
                    [safe_cell(v) for v in (beam["number"], beam["name"])]
                    + [safe_cell(_cell(cp.get(k), "")) for k in keys]
                )
    else:
        keys = [k for k, _ in _BEAM_COLUMNS] + ["technique_reason", "excluded_reason", "convexity"]
        writer.writerow(keys)
        for beam in data["beams"]:
            writer.writerow([safe_cell(_cell(beam.get(k), "")) for k in keys])
    return buf.getvalue()
