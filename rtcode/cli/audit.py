"""``rtcode audit``: billed planning charges checked against the plans of an export."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from rtcode.audit.findings import audit as run_audit
from rtcode.audit.outcome import NOT_AUDITED, audit_outcome
from rtcode.audit.render import FORMATS as AUDIT_RENDERERS
from rtcode.cli.options import (
    checked,
    day_of,
    deidentified,
    deidentify_option,
    echo,
    inputs_of,
    load_policy,
    ordered_formats,
    output_option,
    patient_option,
    require_inputs,
    run_scan,
    safe,
)
from rtcode.coding.policy import AUDIT_CHARGE_FIELDS as CHARGE_FIELDS
from rtcode.coding.policy import AUDIT_SEVERITIES as SEVERITIES
from rtcode.sources.billing import (
    CHARGE_FORMATS,
    BillingFileError,
    merge_ptp,
    read_charges,
    read_ptp,
)
from rtcode.sources.results_db import ResultsDatabaseError, stored_files


@click.command()
@click.argument("paths", metavar="[EXPORT]...", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--charges",
    "charges_file",
    required=True,
    metavar="FILE",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="The billed charges: CSV (any delimiter; columns patient_id, date_of_service, cpt,"
    " units, modifiers, plan, fee, see --column), Excel .xlsx, HL7 v2 DFT^P03 or X12 837"
    " (837I/837P), chosen by content (see --charges-format); - reads standard input.",
)
@click.option(
    "--charges-format",
    type=click.Choice(CHARGE_FORMATS),
    default=None,
    help="Read --charges as this format instead of choosing by content.",
)
@click.option(
    "--date-format",
    metavar="FORMAT",
    help="strptime format of other dates of service (CSV, Excel), e.g. %d/%m/%Y. ISO and"
    " YYYYMMDD are always read; MM/DD/YYYY in a file whose first date has slashes.",
)
@click.option("--sheet", metavar="NAME", help="The Excel sheet to read (default: the first).")
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Audit the plans rtcode listen received instead of EXPORT: its results database"
    " (with --store).",
)
@click.option(
    "--store",
    "store_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="With --db: the folder rtcode listen --store keeps the received files in.",
)
@click.option(
    "--ptp",
    "ptp_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A CMS NCCI procedure-to-procedure edit file (text or CSV) to apply; repeat it for"
    " a table split over several files.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(ordered_formats(AUDIT_RENDERERS)),
    default="table",
    show_default=True,
    help="table for people, json all, csv one row per finding, html a self-contained page.",
)
@output_option
@click.option(
    "--policy",
    "policy_name",
    default="default",
    show_default=True,
    help="A shipped policy name or a policy TOML file (its [audit] section).",
)
@click.option(
    "--date",
    "date_of_service",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Date of service (YYYY-MM-DD) that selects the codes the plans support;"
    " default: each plan's RTPlanDate. Charges keep their own dates.",
)
@click.option(
    "--fail-on",
    type=click.Choice(list(reversed(SEVERITIES))),
    default="error",
    show_default=True,
    help="Exit 4 when a finding has this severity or a higher one.",
)
@click.option(
    "--column",
    "columns",
    multiple=True,
    metavar="FIELD=NAME",
    help="The charges file's column NAME for FIELD (repeatable), e.g. cpt=ProcCode.",
)
@patient_option
@deidentify_option
def audit(
    paths: tuple[Path, ...],
    charges_file: str,
    charges_format: str | None,
    date_format: str | None,
    sheet: str | None,
    db_path: Path | None,
    store_dir: Path | None,
    ptp_files: tuple[Path, ...],
    fmt: str,
    output: str | None,
    policy_name: str,
    date_of_service: dt.datetime | None,
    fail_on: str,
    columns: tuple[str, ...],
    patients: tuple[str, ...],
    deidentify: bool = False,
) -> None:
    """Check billed planning charges against the plans of a DICOM-RT export, patient by
    patient: codes billed that no plan supports, codes a plan supports that were not
    billed, higher or lower codes, bundled pairs, frequency, charge dates, codes that
    need documentation and (with --ptp) NCCI PTP edits.

    Plans are grouped into courses (same planning CT or structure set within the
    policy's window, RTPlanRelationship). Bad charges rows are listed with their line
    number and skipped. Exit status: 0 no finding at or above --fail-on; 4 findings at
    or above it; 3 nothing could be audited (no charge read, no readable RT Plan,
    nothing of the --patient IDs, or more than half the charges rows rejected), the
    reason first on standard error and at the top of the output; 2 usage error.
    rtcode is advisory.
    """
    charges_path = None if charges_file == "-" else Path(charges_file)
    require_inputs([*paths, *filter(None, (charges_path, store_dir)), *ptp_files])
    policy = load_policy(policy_name)
    mapping = _column_names(policy["audit.columns"], columns)
    scan_paths = _plan_files(paths, db_path, store_dir)
    given = [p for p in (charges_file, db_path, *ptp_files) if p is not None and p != "-"]
    folders = paths or ((store_dir,) if store_dir is not None else ())
    target = checked(output, "--output", inputs_of(folders, policy, *given))
    try:
        charges = read_charges(
            charges_file, mapping, fmt=charges_format, date_format=date_format, sheet=sheet
        )
        billed = {c.cpt for c in charges.charges}
        ptp = merge_ptp([read_ptp(p, billed) for p in ptp_files]) if ptp_files else None
    except BillingFileError as exc:
        raise click.BadParameter(safe(str(exc)), param_hint="--charges/--ptp") from None
    scanned = run_scan(scan_paths, policy, day_of(date_of_service))

    result = run_audit(
        scanned.plans,
        charges.charges,
        policy,
        ptp=ptp,
        rejected=charges.rejected,
        charges_source="standard input" if charges_file == "-" else str(charges_file),
        charges_format=charges.format,
        errors=scanned.errors,
        patients=patients or None,
        notes=charges.notes,
    )
    if deidentify:
        result = deidentified(result)
    outcome = audit_outcome(result, fail_on)
    if outcome.status == NOT_AUDITED:
        echo(f"rtcode: {outcome.reason}", err=True)  # first, for a job's log
    text = AUDIT_RENDERERS[fmt](result, outcome)
    written = target is not None and not target.stdout
    if target is None:
        echo(text, nl=False)
    else:
        target.write_text(text)
    if written:
        echo(
            f"wrote {len(result.findings)} finding(s) ("
            + ", ".join(f"{result.count(s)} {s}" for s in SEVERITIES)
            + f"), {len(result.rejected)} rejected row(s) to {target}",
            err=True,
        )
    if charges.rejected and (written or fmt != "table"):  # the table lists them
        read = len(charges.charges)
        echo(
            f"rtcode: {len(charges.rejected)} charges row(s) rejected, {read} read;"
            " see the rejected rows in the output",
            err=True,
        )
    if ptp is not None and not ptp.edits_read:
        echo(f"rtcode: no PTP edit could be read from {ptp.name}", err=True)
    raise SystemExit(outcome.status)


def _plan_files(paths: tuple[Path, ...], db_path: Path | None, store_dir: Path | None) -> list[str]:
    """What to scan for plans: the EXPORT paths, or the files rtcode listen stored and
    recorded in its results database (--db with --store)."""
    if db_path is None:
        if store_dir is not None:
            raise click.UsageError("--store goes with --db (the listener's results database)")
        if not paths:
            raise click.UsageError("give EXPORT... or --db FILE --store DIR")
        return [str(p) for p in paths]
    if paths or store_dir is None:
        raise click.UsageError("give EXPORT... or --db FILE with --store DIR, not both")
    try:
        return [str(store_dir / p) for p in stored_files(db_path)]
    except ResultsDatabaseError as exc:
        raise click.BadParameter(safe(str(exc)), param_hint="--db") from None


def _column_names(shipped: dict[str, str], columns: tuple[str, ...]) -> dict[str, str]:
    """The charges file's column name of each field: the policy's, then --column."""
    mapping = dict(shipped)
    for item in columns:
        field, sep, name = item.partition("=")
        if not sep or field.strip() not in CHARGE_FIELDS or not name.strip():
            raise click.BadParameter(
                f"{item!r}: give FIELD=NAME with FIELD one of " + ", ".join(CHARGE_FIELDS),
                param_hint="--column",
            )
        mapping[field.strip()] = name.strip()
    return mapping
