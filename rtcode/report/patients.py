"""``rtcode report``: a scan plus DVH evidence per plan, grouped by patient, and its
text and JSON renderings (the HTML is ``rtcode.report.html``). DVH evidence reads its
datasets through ``rtcode.dicom.read.read_full``.
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from rtcode import __version__
from rtcode.dicom import read as reader
from rtcode.measure.dvh import (
    DvhAgreement,
    DvhCurve,
    DvhSettings,
    DvhStats,
    Loader,
    PlanDvh,
    RoiDvh,
    beyond_grid_pct,
    plan_dvh,
    volume_difference_pct,
)
from rtcode.model.codes import Classification, Evidence, Flag
from rtcode.model.facts import Brachy, BrachySource, Plan, Prescription
from rtcode.model.results import PlanResult, ScanResult
from rtcode.output.jsontext import dumps
from rtcode.output.render import (
    ADVISORY,
    beam_json,
    fractionation_texts,
    plan_json,
    prescription_texts,
)
from rtcode.output.terminal import cut, lines_text, one_line, shown

ROLE_LABELS = {"target": "target", "organ_at_risk": "organ at risk"}
ROLE_SHORT = {"target": "target", "organ_at_risk": "OAR"}


@dataclass(frozen=True, eq=False)
class PlanReport:
    result: PlanResult
    dvh: PlanDvh
    flags: tuple[Flag, ...] = ()  # from the DVHs against the prescription (policy)


def prescription_flags(plan: Plan, dvh: PlanDvh, max_pct: float) -> tuple[Flag, ...]:
    """``d95_far_from_prescription`` (warning): a target's stored D95 differs from its
    prescription by more than ``max_pct`` per cent of the prescription. The
    prescription of a target: the TARGET dose reference with its ReferencedROINumber;
    without one, the plan's only TARGET prescription when exactly one target has a
    stored DVH. A D95 that is a lower bound (truncated curve) is not compared."""
    rxs = [p for p in plan.prescriptions if p.is_target and p.dose_gy is not None]
    if not rxs:
        return ()
    targets = [
        (r, r.stored_stats)
        for r in dvh.rois
        if r.role == "target"
        and r.stored_stats is not None
        and "d95_gy" not in r.stored_stats.at_least
    ]
    by_roi = {p.roi_number: p for p in rxs if p.roi_number is not None}
    flags = []
    for r, stats in targets:
        rx = by_roi.get(r.roi_number) if r.roi_number is not None else None
        if rx is None and len(rxs) == 1 and len(targets) == 1 and rxs[0].roi_number is None:
            rx = rxs[0]
        if rx is None or not rx.dose_gy:
            continue
        diff = (stats.d95_gy - rx.dose_gy) / rx.dose_gy * 100
        if abs(diff) > max_pct:
            flags.append(_d95_flag(r, stats.d95_gy, diff, rx, max_pct))
    return tuple(flags)


def _d95_flag(r: RoiDvh, d95: float, diff: float, rx: Prescription, max_pct: float) -> Flag:
    assert rx.dose_gy is not None
    return Flag(
        "d95_far_from_prescription",
        "warning",
        f"target {r.roi_name or r.roi_number}: stored D95 {d95:.2f} Gy is"
        f" {diff:+.1f}% from the prescription {rx.dose_gy:g} Gy (course,"
        f" {rx.description or 'dose reference ' + str(rx.number)}): more than"
        f" {max_pct:g}% (policy setting dvh.max_d95_prescription_difference_pct);"
        " check the prescription, the fractions, and whether the DVH is per"
        " fraction",
        rx.dicom_path,
    )


@dataclass(frozen=True, eq=False)
class PatientReport:
    patient_id: str | None
    patient_name: str | None
    plans: tuple[PlanReport, ...]


@dataclass(frozen=True, eq=False)
class Report:
    scan: ScanResult
    patients: tuple[PatientReport, ...]
    compute_dvh: str  # "auto", "always" or "never" (see rtcode.measure.dvh.plan_dvh)
    dvh_settings: DvhSettings  # the policy's [dvh] section
    deidentified: bool = False

    @property
    def plans(self) -> list[PlanReport]:
        return [p for patient in self.patients for p in patient.plans]


def build_report(
    scan_result: ScanResult,
    compute_dvh: str = "auto",
    load: Loader = reader.read_full,
    dvh_settings: DvhSettings | None = None,
    *,
    jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    """DVH evidence for every plan of a scan, grouped by patient in the order found.

    ``dvh_settings`` (V-values, agreement tolerances) default to the ``[dvh]`` section
    of the policy the scan used. ``jobs`` worker processes read the doses and compute
    the DVHs (1: in this process; ``load`` must then be a module-level function);
    ``progress(done, total)`` hears each plan as its DVH evidence is ready.
    """
    if dvh_settings is None:
        dvh_settings = DvhSettings.from_policy(scan_result.policy)
    max_pct = float(scan_result.policy["dvh.max_d95_prescription_difference_pct"])
    total = len(scan_result.plans)
    groups: dict[str | None, list[PlanReport]] = {}
    names: dict[str | None, str | None] = {}
    evidence = _evidence_of(scan_result.plans, jobs, load, compute_dvh, dvh_settings, max_pct)
    for done, (result, (dvh, flags)) in enumerate(zip(scan_result.plans, evidence, strict=True), 1):
        plan = result.linked.plan
        groups.setdefault(plan.patient_id, []).append(PlanReport(result, dvh, flags))
        names[plan.patient_id] = names.get(plan.patient_id) or plan.patient_name
        if progress is not None:
            progress(done, total)
    patients = tuple(PatientReport(pid, names[pid], tuple(ps)) for pid, ps in groups.items())
    return Report(scan_result, patients, compute_dvh, dvh_settings)


_Evidence = tuple[PlanDvh, tuple[Flag, ...]]
_WORKERS_FROM = 8  # fewer plans: starting worker processes costs more than it saves


def _evidence_of(
    results: list[PlanResult],
    jobs: int,
    load: Loader,
    compute_dvh: str,
    settings: DvhSettings,
    max_pct: float,
) -> Iterator[_Evidence]:
    """Each plan's DVH evidence and prescription flags, in order: here, or in ``jobs``
    worker processes (one plan at a time each: a plan's DVHs can take seconds)."""
    if jobs <= 1 or len(results) < _WORKERS_FROM:
        yield from _plans_evidence(results, load, compute_dvh, settings, max_pct)
        return
    # here: worker processes only for a report that asks for them
    from rtcode.engine.execute import Workers

    workers = Workers(jobs, batch_size=1)
    interrupted = True
    try:
        yield from workers.map(_plans_evidence, results, load, compute_dvh, settings, max_pct)
        interrupted = False
    finally:
        workers.close(interrupted=interrupted)


def _plans_evidence(
    results: list[PlanResult],
    load: Loader,
    compute_dvh: str,
    settings: DvhSettings,
    max_pct: float,
) -> list[_Evidence]:
    """The DVH evidence and flags of each plan (module level: run by the workers)."""
    out = []
    for result in results:
        c = result.classification
        try:
            dvh = plan_dvh(result.linked, c.targets, c.organs_at_risk, load, compute_dvh, settings)
        except Exception as exc:  # a file shaped in a way nobody foresaw: keep the report
            dvh = PlanDvh((), None, None, (_dvh_failure(exc),), settings.v_values_gy)
        try:
            flags = prescription_flags(result.linked.plan, dvh, max_pct)
        except Exception:  # never lose the report over a comparison
            flags = ()
        out.append((dvh, flags))
    return out


def _dvh_failure(exc: BaseException) -> str:
    """The DVH note for a failure nobody foresaw, in plain words: never the exception's
    class or text ("ValueError: cannot convert float NaN to integer"); those go to the
    log (logger "rtcode") for whoever looks into the report."""
    logging.getLogger("rtcode").debug("DVH evidence failed", exc_info=exc)
    if isinstance(exc, OSError):
        reason = exc.strerror or "the operating system refused"
        return f"DVH evidence could not be read: a file could not be read ({reason})"
    return (
        "DVH evidence could not be read: rtcode does not handle something in this plan's"
        " structure set or dose; please report these files"
    )


# ------------------------------------------------------------------------- JSON


def _num(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def v_label(dose_gy: float) -> str:
    return f"V{dose_gy:g}Gy"


def stats_json(s: DvhStats | None, curve: DvhCurve | None = None) -> dict[str, Any] | None:
    """One DVH's statistics; with its curve, also what they cannot show: how much of the
    ROI a truncated stored DVH leaves beyond its end, and for a computed one the dose
    voxels and the contours' own volume."""
    if s is None:
        return None
    out: dict[str, Any] = {
        "volume_cm3": _num(s.volume_cm3, 2),
        "min_dose_gy": _num(s.min_dose_gy),
        "mean_dose_gy": _num(s.mean_dose_gy),
        "max_dose_gy": _num(s.max_dose_gy),
        "d95_gy": _num(s.d95_gy),
        "d2_gy": _num(s.d2_gy),
        "v_pct": {v_label(d): _num(pct, 2) for d, pct in s.v_pct},
        # lower bounds ("at least"): names as above, V-values as "V<dose>Gy"
        "at_least": [_at_least_key(k) for k in s.at_least],
        "min_mean_max_from": s.min_mean_max_from,
    }
    if curve is not None and curve.source == "stored":
        out["truncated_pct"] = _num(curve.truncated_pct, 2)
        out["truncated_at_gy"] = (
            _num(float(curve.edges_gy[-2])) if curve.truncated_pct is not None else None
        )
    if curve is not None and curve.source == "computed":
        out["dose_voxels"] = _num(curve.dose_voxels, 1)
        out["contour_volume_cm3"] = _num(curve.contour_volume_cm3, 2)
        out["volume_difference_pct"] = _num(volume_difference_pct(curve), 2)
        out["beyond_grid_cm3"] = _num(curve.beyond_grid_cm3, 2)
        out["beyond_grid_pct"] = _num(beyond_grid_pct(curve), 2)
    return out


def _at_least_key(name: str) -> str:
    """A ``DvhStats.at_least`` name as the key it has in the JSON ("v40" -> "V40Gy")."""
    return v_label(float(name[1:])) if name.startswith("v") else name


def agreement_json(a: DvhAgreement | None) -> dict[str, Any] | None:
    if a is None:
        return None
    return {
        "agrees": a.agrees,
        "volume_diff_pct": _num(a.volume_diff_pct, 2),
        "mean_dose_diff_pct": _num(a.mean_dose_diff_pct, 2),
        "d95_diff_pct": _num(a.d95_diff_pct, 2),
        "mean_dose_tolerance_pct": a.mean_dose_tolerance_pct,
        "d95_tolerance_pct": a.d95_tolerance_pct,
    }


def dvh_json(d: PlanDvh) -> dict[str, Any]:
    return {
        "stored_from": d.stored_from,
        "computed_from": (
            {"structure_set": d.computed_from[0], "dose": d.computed_from[1]}
            if d.computed_from
            else None
        ),
        "v_values_gy": list(d.v_values_gy),
        "notes": list(d.notes),
        "rois": [
            {
                "roi_number": r.roi_number,
                "name": r.roi_name,
                "role": r.role,
                "sources": list(r.sources),
                "stored": stats_json(r.stored_stats, r.stored),
                "stored_dicom_path": r.stored.dicom_path if r.stored else None,
                "computed": stats_json(r.computed_stats, r.computed),
                "agreement": agreement_json(r.agreement),
                "agreement_mean_against": _mean_against(r),
                "note": r.note,
                "warnings": list(r.warnings),
            }
            for r in d.rois
        ],
    }


def report_json(report: Report) -> dict[str, Any]:
    scan = report.scan
    inv = scan.inventory
    return {
        "rtcode_version": __version__,
        "advisory": ADVISORY,
        "policy": scan.policy.summary(),
        "deidentified": report.deidentified,
        "dvh": {
            "compute": report.compute_dvh,
            "computed_with": "dicompyler-core 0.5.6",
            "v_values_gy": list(report.dvh_settings.v_values_gy),
            "agreement_mean_dose_pct": report.dvh_settings.agreement_mean_dose_pct,
            "agreement_d95_pct": report.dvh_settings.agreement_d95_pct,
            "truncated_last_bin_pct": report.dvh_settings.truncated_last_bin_pct,
            "min_dose_voxels": report.dvh_settings.min_dose_voxels,
            "max_volume_difference_pct": report.dvh_settings.max_volume_difference_pct,
        },
        "summary": {
            "patients": len(report.patients),
            "plans": len(scan.plans),
            "files_seen": inv.files_seen,
            "errors": len(inv.errors),
        },
        "patients": [
            {
                "patient_id": patient.patient_id,
                "patient_name": patient.patient_name,
                "plans": [_plan_with_flags(p, scan) for p in patient.plans],
            }
            for patient in report.patients
        ],
        "errors": [{"path": e.path, "error": e.error} for e in inv.errors],
    }


def _plan_with_flags(p: PlanReport, scan: ScanResult) -> dict[str, Any]:
    data = plan_json(p.result, scan.policy)
    data["flags"] = data["flags"] + [
        {"flag": f.flag, "severity": f.severity, "message": f.message, "dicom_path": f.dicom_path}
        for f in p.flags
    ]
    return {**data, "dvh": dvh_json(p.dvh)}


def to_json(report: Report) -> str:
    return dumps(report_json(report), indent=2) + "\n"


# ------------------------------------------------------------------------- text


def fired_word(fired: bool | None) -> str:
    return {True: "yes", False: "no", None: "cannot determine"}[fired]


def value_text(value: Any) -> str:
    """Evidence values (numbers, lists, tables) as one short line."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {value_text(v)}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(value_text(v) for v in value) or "none"
    return str(value)


def number(value: float | None, fmt: str = ".2f", absent: str = "-") -> str:
    return absent if value is None else format(value, fmt)


def signed_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}%"


def _wrap(text: str, indent: str, more: str | None = None, width: int = 100) -> list[str]:
    return textwrap.wrap(
        one_line(text),  # escaped for the terminal before it is measured
        width,
        initial_indent=indent,
        subsequent_indent=indent + "  " if more is None else more,
        break_long_words=True,
    ) or [indent.rstrip()]


def _grid(rows: list[list[str]], indent: str = "    ") -> list[str]:
    rows = [[shown(v) for v in r] for r in rows]  # measured as shown on the terminal
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = [indent + "  ".join(v.ljust(widths[i]) for i, v in enumerate(r)).rstrip() for r in rows]
    out.insert(1, indent + "  ".join("-" * w for w in widths))
    return out


def agreement_text(a: DvhAgreement) -> str:
    verdict = {True: "agree", False: "DIFFER", None: "cannot compare"}[a.agrees]
    return (
        f"{verdict}: mean {signed_pct(a.mean_dose_diff_pct)}"
        f" (tolerance {a.mean_dose_tolerance_pct:g}%), D95 {signed_pct(a.d95_diff_pct)}"
        f" (tolerance {a.d95_tolerance_pct:g}%), volume {signed_pct(a.volume_diff_pct)}"
    )


def dvh_rows(d: PlanDvh) -> list[tuple[RoiDvh, str, DvhStats]]:
    """(roi, source, stats) for every DVH of the plan, stored before computed."""
    out = []
    for r in d.rois:
        for source, stats in (("stored", r.stored_stats), ("computed", r.computed_stats)):
            if stats is not None:
                out.append((r, source, stats))
    return out


def dvh_header(d: PlanDvh) -> list[str]:
    return ["ROI", "role", "source", "cm3", "min Gy", "mean Gy", "max Gy", "D95 Gy", "D2 Gy"] + [
        f"{v_label(v)} %" for v in d.v_values_gy
    ]


AT_LEAST = "\u2265"  # before a value that is a lower bound (a truncated stored DVH)


def dvh_cells(r: RoiDvh, source: str, s: DvhStats) -> list[str]:
    def value(name: str, v: float | None, fmt: str = ".2f") -> str:
        return (AT_LEAST if name in s.at_least else "") + number(v, fmt)

    return [
        r.roi_name or f"ROI {r.roi_number}",
        ROLE_SHORT.get(r.role, r.role),
        source,
        number(s.volume_cm3),
        number(s.min_dose_gy),
        value("mean_dose_gy", s.mean_dose_gy),
        value("max_dose_gy", s.max_dose_gy),
        value("d95_gy", s.d95_gy),
        value("d2_gy", s.d2_gy),
    ] + [value(f"v{d:g}", pct, ".1f") for d, pct in s.v_pct]


def _mean_against(r: RoiDvh) -> str | None:
    """What the agreement's mean compares the computed mean with."""
    if r.agreement is None or r.stored_stats is None:
        return None
    if r.stored_stats.min_mean_max_from == "planning system":
        return "stated mean (DVHMeanDose)"
    return "stored DVH's bins"


def agreement_line(r: RoiDvh) -> str:
    """The agreement of an ROI's computed DVH with its stored one, in words."""
    assert r.agreement is not None
    text = agreement_text(r.agreement)
    if _mean_against(r) == "stated mean (DVHMeanDose)":
        text += "; mean against the planning system's stated mean (DVHMeanDose)"
    return text


def min_mean_max_text(d: PlanDvh) -> str | None:
    """Where the table's minimum, mean and maximum come from, or None without rows."""
    rows = dvh_rows(d)
    if not rows:
        return None
    stated = [
        r.roi_name or f"ROI {r.roi_number}"
        for r, _, s in rows
        if s.min_mean_max_from == "planning system"
    ]
    bins = "from the DVH bins (mean from bin centres: approximate where bins are wide)"
    if not stated:
        return f"min, mean and max: {bins}"
    return (
        "min, mean and max: the planning system's stated values (DVHMinimumDose,"
        f" DVHMeanDose, DVHMaximumDose) for stored {', '.join(stated)}; otherwise {bins}"
    )


def patient_heading(patient: PatientReport) -> str:
    pid = patient.patient_id or "(PatientID absent)"
    return f"patient {pid}" + (f" ({patient.patient_name})" if patient.patient_name else "")


def to_text(report: Report) -> str:
    scan = report.scan
    lines = [
        f"rtcode report: {len(report.patients)} patient(s), {len(scan.plans)} plan(s);"
        f" policy {scan.policy.name} {scan.policy.version}"
        + ("; de-identified" if report.deidentified else ""),
        ADVISORY,
    ]
    for patient in report.patients:
        lines += ["", "=" * 100, patient_heading(patient), "=" * 100]
        for p in patient.plans:
            lines += [""] + _plan_text(p, scan)
    inv = scan.inventory
    if inv.errors:
        lines += ["", f"{len(inv.errors)} file(s) could not be read:"]
        for e in inv.errors:
            lines += _wrap(f"{e.path}: {e.error}", "  ")
    return lines_text(lines)


def _plan_text(p: PlanReport, scan: ScanResult) -> list[str]:
    """One plan: its facts, brachytherapy details, evidence, codes, beams and DVHs."""
    plan = p.result.linked.plan
    lines = _plan_facts_text(p.result)
    if is_brachy(plan):
        lines += _brachy_text(plan)
    lines += _evidence_text(p.result.classification)
    lines += _codes_text(p)
    lines += _beams_text(p.result.classification)
    lines += _dvh_text(p.dvh)
    return lines


def _plan_facts_text(r: PlanResult) -> list[str]:
    c, plan = r.classification, r.linked.plan
    return [
        f"plan {plan.label or '(no label)'}" + (f" ({plan.name})" if plan.name else ""),
        "-" * 100,
        f"  file        {plan.path}",
        f"  code        {c.code or 'none'} ({c.label or c.category.value}),"
        f" confidence {c.confidence}",
        f"  plan        intent {plan.intent or '-'}, {plan.approval_status or 'approval absent'},"
        f" date {date_text(plan.date)}",
        f"  fractions   {'; '.join(fractionation_texts(plan)) or 'no fraction group'}",
        *[
            f"  prescribed  {t}"
            for t in prescription_texts(plan) or ["none in the plan (no DoseReferenceSequence)"]
        ],
        f"  structures  {r.linked.structure_set_status}"
        + (f": {r.linked.structure_set.path}" if r.linked.structure_set else ""),
        f"  dose        {', '.join(d.path for d in r.linked.doses) or 'none in the export'}",
        "",
    ]


def _brachy_text(plan: Plan) -> list[str]:
    lines = ["  brachytherapy"]
    for what, text in brachy_facts(plan):
        wrapped = _wrap(text, " " * 18, " " * 18)
        lines.append("    " + one_line(what).ljust(14) + wrapped[0][18:])
        lines += wrapped[1:]
    rows = brachy_channel_rows(plan)
    if rows:
        lines += _grid([brachy_channel_header(plan), *rows])
    return [*lines, ""]


def _evidence_text(c: Classification) -> list[str]:
    """Every rule with its finding; at most two lines of values each (the HTML and JSON
    reports carry every value)."""
    lines = ["  evidence"]
    deciding = {id(e) for e in c.deciding_evidence()}
    for e, repeated in with_repeats(c):
        mark = "*" if id(e) in deciding else " "
        lines += _wrap(f"{mark} [{fired_word(e.fired)}] {e.rule}: {e.finding}", "    ", " " * 8)
        detail = [f"observed {value_text(e.observed)}"]
        if e.threshold is not None:
            detail.append(f"threshold {'as above' if repeated else value_text(e.threshold)}")
        if e.setting:
            detail.append(f"setting {e.setting}")
        if e.dicom_path:
            detail.append(f"at {e.dicom_path}")
        detail_lines = _wrap("; ".join(detail), " " * 8)
        if len(detail_lines) > 2:
            detail_lines = detail_lines[:2]
            detail_lines[-1] = cut(detail_lines[-1], 96) + " ..."
        lines += detail_lines
    lines.append("    (* the rule group that decided the code)")
    return lines


def _codes_text(p: PlanReport) -> list[str]:
    """Flags, alternative codes and related codes, each section only when it has rows."""
    r, c = p.result, p.result.classification
    lines: list[str] = []
    if c.flags or p.flags:
        lines += ["", "  flags"]
        for f in (*c.flags, *p.flags):
            lines += _wrap(f"{f.severity}: {f.message}", "    ")
    if c.alternatives:
        lines += ["", "  alternatives"]
        for a in c.alternatives:
            lines += _wrap(f"{a.code} ({a.category}) {a.condition}", "    ")
    if r.related:
        lines += ["", "  related codes"]
        for rc in r.related:
            units = f" x{rc.units}" if rc.units else ""
            lines += _wrap(f"{rc.code}{units} [{rc.kind}] {rc.reason}", "    ")
    return lines


BEAM_TEXT_HEAD = ["#", "name", "technique", "MeV/MV", "MU", "CPs", "gantry", "coll", "couch",
                  "port"]  # fmt: skip


def _beams_text(c: Classification) -> list[str]:
    if not c.beams:
        return []
    rows = [BEAM_TEXT_HEAD]
    for b in c.beams:
        j = beam_json(b)
        rows.append(
            [
                value_text(j["number"]),
                j["name"] or "-",
                j["technique"],
                value_text(j["nominal_energy"]),
                number(j["meterset_mu"], ".1f"),
                str(j["number_of_control_points"]),
                gantry_text(j),
                value_text(j["collimator_deg"]),
                value_text(j["couch_deg"]),
                "yes" if j["treatment_port"] else "no",
            ]
        )
    return ["", "  beams", *_grid(rows)]


def _dvh_text(d: PlanDvh) -> list[str]:
    lines = [""] + _wrap("dose-volume histograms" + _dvh_sources(d), "  ")
    table = dvh_rows(d)
    if table:
        lines += _grid([dvh_header(d)] + [dvh_cells(*row) for row in table])
        lines += _wrap(min_mean_max_text(d) or "", "    ")
    for roi in d.rois:
        if roi.agreement is not None:
            lines += _wrap(f"{roi.roi_name}: {agreement_line(roi)}", "    ")
        for warning in roi.warnings:
            lines += _wrap(f"{roi.roi_name}: WARNING {warning}", "    ")
        if roi.note:
            lines += _wrap(f"{roi.roi_name}: {roi.note}", "    ")
    for note in d.notes:
        lines += _wrap(note, "    ")
    return lines


def with_repeats(c: Classification) -> list[tuple[Evidence, bool]]:
    """Each evidence row, and whether its threshold repeats the row before (the same
    rule and policy setting for every beam: shown once, then "as above")."""
    out = []
    prev: Evidence | None = None
    for e in c.evidence:
        same = (
            prev is not None
            and e.threshold is not None
            and (e.rule, e.setting, e.threshold) == (prev.rule, prev.setting, prev.threshold)
        )
        out.append((e, same))
        prev = e
    return out


def date_text(value: str | None) -> str:
    """A DICOM DA value as YYYY-MM-DD (a de-identified pseudonym stays as it is)."""
    if value and len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value or "-"


def gantry_text(j: dict[str, Any]) -> str:
    start, stop = j["gantry_start_deg"], j["gantry_stop_deg"]
    if start is None:
        return "-"
    if stop is None or stop == start or not j["gantry_span_deg"]:
        return f"{start:g}"
    return f"{start:g}-{stop:g} {j['gantry_direction'] or ''}".rstrip()


def _dvh_sources(d: PlanDvh) -> str:
    parts = []
    if d.stored_from:
        parts.append(f"stored in {d.stored_from}")
    if d.computed_from:
        parts.append(
            f"computed by dicompyler-core from {d.computed_from[0]} + {d.computed_from[1]}"
        )
    return (" (" + "; ".join(parts) + ")") if parts else ""


# ------------------------------------------------------------- brachytherapy


def is_brachy(plan: Plan) -> bool:
    """A brachytherapy plan (application setups, no beams): its report shows the
    treatment, sources and channels, and no external-beam section."""
    return plan.brachy is not None and not plan.beams


def _time_text(value: str | None) -> str:
    if value and len(value) >= 6 and value[:6].isdigit():
        return f"{value[:2]}:{value[2:4]}:{value[4:6]}"
    return value or ""


def brachy_facts(plan: Plan) -> list[tuple[str, str]]:
    """(what, value) lines of a brachytherapy plan: treatment, sources, fractions and
    prescription, channels (PS3.3 C.8.8.15, as written; "absent" when not written)."""
    b = plan.brachy
    assert b is not None
    treatment = f"{b.treatment_type or 'type absent'}, {b.technique or 'technique absent'}"
    for s in b.setups:
        treatment += f"; setup {s.name or s.setup_type or '-'}"
        treatment += f" ({s.setup_type})" if s.name and s.setup_type else ""
    out = [("treatment", treatment)]
    out += [(f"source {value_text(src.number)}", _source_text(src)) for src in b.sources or ()]
    if not b.sources:
        out.append(("source", "SourceSequence absent or empty"))
    known = [
        fg.fractions_planned for fg in plan.fraction_groups if fg.fractions_planned is not None
    ]
    out.append(("fractions", " + ".join(str(f) for f in known) if known else "absent"))
    out.append(("prescription", _brachy_prescription(b, known)))
    out.append(("channels", _channels_text(b)))
    return out


def _source_text(src: BrachySource) -> str:
    strength = (
        f"reference air kerma rate {src.air_kerma_rate:g} uGy/h at 1 m"
        if src.air_kerma_rate is not None
        else "reference air kerma rate absent"
    )
    if src.strength is not None:
        strength += f"; strength {src.strength:g} {src.strength_units or ''}".rstrip()
    when = " ".join(filter(None, [date_text(src.reference_date), _time_text(src.reference_time)]))
    return (
        f"{src.isotope or 'isotope absent'}, {strength},"
        f" reference date {when if src.reference_date else 'absent'}"
    )


def _brachy_prescription(b: Brachy, fractions: list[int]) -> str:
    if not b.setup_doses_gy:
        return "BrachyApplicationSetupDose absent"
    rx = " + ".join(f"{d:g} Gy" for d in b.setup_doses_gy)
    if len(b.setup_doses_gy) == 1 and len(fractions) == 1:
        per = b.setup_doses_gy[0]
        rx = f"{per:g} Gy per fraction x {fractions[0]} = {per * fractions[0]:g} Gy"
    return f"{rx} (BrachyApplicationSetupDose)"


def _channels_text(b: Brachy) -> str:
    channels = [c for s in b.setups for c in s.channels]
    loaded = [c for c in channels if (c.dwell_positions or 0) > 0]
    times = [c.total_time_s for c in channels if c.total_time_s is not None]
    text = f"{len(channels)}, {len(loaded)} loaded"
    if b.number_of_seeds is not None:
        what = "dwell positions" if b.treatment_type in ("HDR", "PDR") else "sources placed"
        text += f"; {b.number_of_seeds} {what}"
    if times and b.treatment_type in ("HDR", "PDR"):
        text += f"; total time {sum(times):.1f} s"
    return text


def brachy_channel_header(plan: Plan) -> list[str]:
    b = plan.brachy
    remote = b is not None and b.treatment_type in ("HDR", "PDR")
    placed = "dwell positions" if remote else "sources placed"
    return ["channel", "applicator", "type", "movement", "length mm", placed,
            "total time s", "final weight", "source"]  # fmt: skip


def brachy_channel_rows(plan: Plan) -> list[list[str]]:
    """One row per channel, as written ("-": absent; a written 0 stays 0)."""
    b = plan.brachy
    assert b is not None
    return [
        [
            value_text(c.number),
            c.applicator_id or "-",
            c.applicator_type or "-",
            c.source_movement_type or "-",
            number(c.length_mm, "g"),
            value_text(c.dwell_positions),
            number(c.total_time_s, ".1f"),
            number(c.final_weight, "g"),
            value_text(c.source_number),
        ]
        for s in b.setups
        for c in s.channels
    ]
