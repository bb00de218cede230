"""Rendering ``rtcode results``: what the listener received and how it coded it.

Input is the dictionary of ``results_db.query``; output is a table for people,
JSON (everything, each plan's ``result`` as in ``rtcode scan --format json``) or
CSV (one row per plan, then one per stored file that could not be coded: category
``error``, the sentence under ``reasons``).
"""

from __future__ import annotations

import csv
import io
import textwrap
from collections import Counter
from typing import Any

from rtcode import __version__
from rtcode.output.jsontext import dumps
from rtcode.output.render import ADVISORY, safe_cell
from rtcode.output.terminal import clip, lines_text, one_line

CSV_COLUMNS = [
    "coded_at",
    "patient_id",
    "plan_label",
    "sop_instance_uid",
    "code",
    "label",
    "category",
    "confidence",
    "structure_set_status",
    "doses",
    "times_coded",
    "first_coded_at",
    "policy_name",
    "policy_version",
    "stored_path",
    "reasons",
]


def results_json(data: dict[str, Any]) -> str:
    out = {"rtcode_version": __version__, "advisory": ADVISORY, **data}
    return dumps(out, indent=2) + "\n"


def results_csv(data: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for p in data["plans"]:
        row = [p.get(k) for k in CSV_COLUMNS[:-1]] + ["; ".join(p["reasons"])]
        writer.writerow([safe_cell(v) for v in row])
    for e in data.get("errors", []):
        error_row = {
            "coded_at": e["at"],
            "patient_id": e["patient_id"],
            "sop_instance_uid": e["sop_instance_uid"],
            "category": "error",
            "first_coded_at": e["first_seen_at"],
            "stored_path": e["stored_path"],
            "reasons": e["error"],
        }
        writer.writerow([safe_cell(error_row.get(k)) for k in CSV_COLUMNS])
    return buf.getvalue()


MAX_REASONS = 6  # reasons shown per plan in the table


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(  # escaped for the terminal before it is measured
        one_line(text), 100, initial_indent="    ", subsequent_indent="      "
    )


def _minute(stamp: str | None) -> str:
    """``2026-11-22T08:15:02.123456Z`` -> ``2026-11-22 08:15Z``."""
    if not stamp:
        return "-"
    return stamp[:10] + " " + stamp[11:16] + "Z"


def results_table(data: dict[str, Any]) -> str:
    head = ("coded (UTC)", "patient", "label", "code", "category", "conf.", "struct. set", "doses")
    rows: list[tuple[str, ...]] = [head]
    for p in data["plans"]:
        rows.append(
            (
                _minute(p["coded_at"]),
                p["patient_id"] or "-",
                p["plan_label"] or "-",
                p["code"] or "-",
                p["category"],
                p["confidence"],
                p["structure_set_status"] or "-",
                str(p["doses"]),
            )
        )
    rows = [tuple(one_line(v) for v in r) for r in rows]  # measured as shown on the terminal
    limits = (17, 16, 16, 5, 15, 6, 14, 5)
    widths = [min(max(len(r[i]) for r in rows), limits[i]) for i in range(len(limits))]
    lines: list[str] = []
    for i, r in enumerate(rows):
        lines.append(
            "  ".join(clip(v, widths[j]).ljust(widths[j]) for j, v in enumerate(r)).rstrip()
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    for p in data["plans"]:
        lines.append(
            f"{p['stored_path']}: {p['code'] or 'no code'} ({p['label'] or p['category']})"
        )
        for reason in p["reasons"][:MAX_REASONS]:
            lines.extend(_wrap(f"because {reason}"))
        if len(p["reasons"]) > MAX_REASONS:  # never dropped silently: json has them all
            lines.extend(_wrap(f"and {len(p['reasons']) - MAX_REASONS} more (see --format json)"))
        steps: list[str] = []
        for h in p["history"]:
            step = f"{h['code'] or 'no code'} ({h['category']})"
            if not steps or steps[-1] != step:
                steps.append(step)
        if len(steps) > 1:
            lines.extend(_wrap("coded as parts arrived: " + " -> ".join(steps)))
    errors = data.get("errors", [])
    if errors:
        lines.append("")
    for e in errors:
        lines.append(
            f"{e['stored_path']}: not coded ({e['modality'] or 'patient folder'},"
            f" patient {e['patient_id'] or '-'}, {_minute(e['at'])})"
        )
        lines.extend(_wrap(e["error"]))
    kinds = Counter(i["modality"] for i in data["instances"])
    detail = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    lines.append("")
    lines.append(
        f"{len(data['instances'])} instance(s) received"
        + (f" ({detail})" if detail else "")
        + f", {len(data['plans'])} plan(s) coded"
        + (f", {len(errors)} file(s) not coded" if errors else "")
        + f", {len(data['refusals'])} refusal(s)"
    )
    for r in data["refusals"]:
        lines.extend(
            _wrap(
                f"refused {r['what']} from {r['calling_ae']!r} at {r['peer']}"
                f" ({_minute(r['at'])}): {r['reason']}"
            )
        )
    undated = data.get("filters", {}).get("plans_without_date_left_out", 0)
    if undated:
        lines.append(f"{undated} plan(s) without a plan date left out by --since/--until")
    lines.append(f"results schema {data['schema_version']}. {ADVISORY}")
    return lines_text(lines)


FORMATS = {"table": results_table, "json": results_json, "csv": results_csv}
