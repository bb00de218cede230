"""The command line: ``rtcode scan``. Library errors become messages and exit codes here.

Exit status: 0 the scan finished (problems with single files are listed), 1 no
plan could be read from the inputs, 2 usage errors (bad option, bad policy).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from pathlib import Path

import click

from rtcode import __version__
from rtcode.coding import policy as policy_mod
from rtcode.coding.policy import AUDIT_CHARGE_FIELDS as CHARGE_FIELDS
from rtcode.coding.policy import AUDIT_SEVERITIES as SEVERITIES
from rtcode.model.errors import PolicyError
from rtcode.output.jsontext import dumps

# The commands import what they use when they run: a rescan answered from the cache
# starts in a fraction of a second only if it does not load the classifier, numpy,
# the audit and the renderers of every other command first.
SCAN_FORMATS = ["table", "json", "csv", "jsonl"]
AUDIT_FORMATS = ("table", "json", "csv", "html")  # render_audit.FORMATS (a test checks)


def _safe(message: str) -> str:
    """A message for the terminal: control and bidi characters from file names, URLs,
    policy text and DICOM values shown escaped (``rtcode.output.terminal``), lines kept."""
    from rtcode.output.terminal import shown

    return "\n".join(shown(line) for line in message.split("\n"))


def _echo(message: object = None, nl: bool = True, err: bool = False) -> None:
    """``click.echo``; what goes to standard error is escaped for the terminal (the
    outputs on standard output are data, escaped by their renderers)."""
    if err and isinstance(message, str):
        message = _safe(message)
    click.echo(message, nl=nl, err=err)


def whole_result_text(fmt: str, result) -> str:  # type: ignore[no-untyped-def]
    """A whole ScanResult in the table, json or csv format."""
    from rtcode.output.render import to_csv, to_json, to_table

    return {"table": to_table, "json": to_json, "csv": to_csv}[fmt](result)


def run_scan(*args, **kwargs):  # type: ignore[no-untyped-def]
    from rtcode.engine.scan import scan

    return scan(*args, **kwargs)


def _inputs(paths, policy: policy_mod.Policy, *files: Path):  # type: ignore[no-untyped-def]
    """What a command reads, for the output guard (rtcode/output/files.py): its PATHS, its
    policy file (not a shipped policy) and the other files it was given."""
    from rtcode.output.files import Inputs

    inputs = Inputs([*paths, *files])
    if not policy.source.startswith("builtin:"):
        inputs.add_file(policy.source)
    return inputs


def _jobs(jobs: int | None, executor: str) -> int:
    """--jobs, or one worker per core; on this machine never more than its cores
    (more processes than cores only compete for them and each holds its memory)."""
    from rtcode.engine.execute import default_jobs

    cores = default_jobs()
    if jobs is None:
        return cores
    if executor == "local" and jobs > cores:
        _echo(
            f"rtcode: --jobs {jobs} is more than the {cores} core(s) this process may use:"
            f" starting {cores} worker(s)",
            err=True,
        )
        return cores
    return jobs


def _load_policy(value: str) -> policy_mod.Policy:
    try:
        return policy_mod.load(value)
    except PolicyError as exc:
        raise click.BadParameter(_safe(str(exc)), param_hint="--policy") from None


class _PathOrDicomWeb(click.ParamType):
    """A file or folder (a Path), or a dicomweb+http(s):// URL (kept as text)."""

    name = "path"

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        if isinstance(value, Path):
            return value
        text = str(value)
        if text.lower().startswith(("dicomweb+http://", "dicomweb+https://")):
            return text
        return Path(text)


def _scan_sources(paths, study, patient, consume, policy=None):  # type: ignore[no-untyped-def]
    """Scan folders, files and dicomweb+http(s):// sources in one pipeline: ``consume``
    gets the list of inputs; a source is retrieved into a temporary folder that exists
    only while it is scanned."""
    import contextlib

    if (study is not None or patient is not None) and not any(isinstance(p, str) for p in paths):
        raise click.UsageError("--study and --patient filter a dicomweb+http:// source; give one")
    with contextlib.ExitStack() as stack:
        inputs = []
        for p in paths:
            if isinstance(p, str):
                from rtcode.model.limits import Limits
                from rtcode.sources.dicomweb import DicomWebError, display_url, retrieve

                try:
                    limits = Limits.from_policy(policy) if policy is not None else None
                    source = retrieve(p, study=study, patient=patient, limits=limits)
                    inputs.extend(stack.enter_context(source))
                except DicomWebError as exc:
                    raise click.BadParameter(_safe(str(exc)), param_hint="PATHS") from None
                except KeyboardInterrupt:  # Ctrl-C while retrieving: nothing was coded yet
                    shown = display_url(p)
                    _echo(f"rtcode: interrupted while retrieving from {shown}", err=True)
                    sys.exit(130)
            else:
                inputs.append(str(p))
        return consume(inputs)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="rtcode")
def main() -> None:
    """Suggest radiation-oncology planning codes (77306, 77307, 77295, 77301 and
    brachytherapy 77316-77318) from DICOM-RT exports, with the evidence from the files.

    rtcode is advisory: it never approves a plan or submits a claim.
    """


@main.command()
@click.argument("paths", nargs=-1, required=True, type=_PathOrDicomWeb())
@click.option(
    "--format",
    "fmt",
    type=click.Choice(sorted(SCAN_FORMATS)),
    default="table",
    show_default=True,
    help="table for people, csv one row per plan, json with all evidence, jsonl one"
    " JSON record per line (each plan as soon as it is coded, then errors and a summary).",
)
@click.option(
    "--output",
    "-o",
    metavar="FILE",
    help="Write to this file (atomically) instead of standard output (-). Never an input,"
    " a file under a scanned folder, a device or a pipe.",
)
@click.option(
    "--policy",
    "policy_name",
    default="default",
    show_default=True,
    help="A shipped policy name or a policy TOML file.",
)
@click.option(
    "--date",
    "date_of_service",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Date of service (YYYY-MM-DD) that selects the codes and rules in force;"
    " default: each plan's RTPlanDate.",
)
@click.option(
    "--deidentify",
    is_flag=True,
    help="Replace patient names, IDs, dates and UIDs with stable pseudonyms (keyed by"
    " RTCODE_DEIDENTIFY_KEY), for output that leaves the department.",
)
@click.option(
    "--study",
    help="With a dicomweb+http:// source: only the RT plans of this Study Instance UID.",
)
@click.option(
    "--patient",
    help="With a dicomweb+http:// source: only the RT plans of this Patient ID.",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    help="Worker processes that read files and code plans (default: one per core; more"
    " than the cores this process may use are not started).",
)
@click.option(
    "--cache",
    "cache_file",
    metavar="FILE",
    help="Scan cache (SQLite): unchanged files are not read again and unchanged plans not"
    " coded again. Default: scan-cache.sqlite in the user's cache folder.",
)
@click.option(
    "--no-cache",
    is_flag=True,
    help="Neither use nor update a scan cache (read and code everything).",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "dask"]),
    default="local",
    show_default=True,
    help="local: worker processes on this machine; dask: a Dask cluster (rtcode[dask]),"
    " whose workers must see the same paths.",
)
@click.option("--scheduler", help="With --executor dask: the scheduler, e.g. tcp://host:8786.")
@click.option("--quiet", "-q", is_flag=True, help="No progress line on standard error.")
def scan(
    paths: tuple[Path | str, ...],
    fmt: str,
    output: str | None,
    policy_name: str,
    date_of_service: dt.datetime | None,
    deidentify: bool = False,
    study: str | None = None,
    patient: str | None = None,
    jobs: int | None = None,
    cache_file: str | None = None,
    no_cache: bool = False,
    executor: str = "local",
    scheduler: str | None = None,
    quiet: bool = False,
) -> None:
    """Read DICOM-RT exports under PATHS (files or folders, searched recursively) and
    code every RT Plan found, with the evidence that supports each code.

    A PATH dicomweb+http://HOST:PORT/ROOT (or dicomweb+https://) reads from an
    archive: its RT plans, with their doses and structure sets, are retrieved by
    QIDO-RS and WADO-RS (needs rtcode[net]) and coded exactly as files would be.

    Files are recognised by content, not name; images are counted and skipped
    without reading their pixels. Nothing under the scanned folders is written.
    Plans are reported in the order their files are found; with --format jsonl each
    plan is written as soon as it is coded.
    """
    from rtcode.engine.cache import default_path
    from rtcode.engine.execute import ExecutorError, WorkerDied
    from rtcode.engine.scan import Runner
    from rtcode.output.files import check

    policy = _load_policy(policy_name)
    if cache_file is not None and no_cache:
        raise click.UsageError("--cache and --no-cache contradict each other; give one")
    if executor == "dask" and not scheduler:
        raise click.BadParameter("--executor dask needs --scheduler", param_hint="--scheduler")
    # Every path written is checked before the scan (and the output again before its
    # rename): never an input, nothing under a scanned folder, no device or pipe.
    inputs = _inputs(paths, policy)
    cache_path = None
    if cache_file is not None:
        cache = check(cache_file, "--cache", inputs, database=True, make_folder=True)
        cache_path = cache.path  # type: ignore[union-attr]
    elif not no_cache:
        cache_path = default_path()
        clash = inputs.clash(os.path.realpath(cache_path), None)
        if clash is not None:
            _echo(
                f"rtcode: the default cache {cache_path} {clash}: scanning without it"
                " (give --cache)",
                err=True,
            )
            cache_path = None
    if cache_path is not None:
        inputs.add_file(cache_path, f"the scan cache ({cache_path})", sqlite=True)
    target = check(output, "--output", inputs)
    jobs = _jobs(jobs, executor)
    day = date_of_service.date() if date_of_service is not None else None
    sink = _Sink(fmt, policy, target, deidentify)
    try:
        cache = _open_cache(cache_path)
    except BaseException:
        sink.discard()
        raise
    runner = Runner(jobs=jobs, executor=executor, scheduler=scheduler, cache=cache)
    progress = _Progress(enabled=not quiet and sys.stderr.isatty())
    scanner = None
    try:
        scanner = _scan_sources(
            paths,
            study,
            patient,
            lambda inputs: _stream(inputs, policy, day, runner, sink, progress),
            policy,
        )
    except WorkerDied as exc:  # not the user's doing: say so, exit 1
        raise click.ClickException(_safe(str(exc))) from None
    except ExecutorError as exc:
        raise click.UsageError(_safe(str(exc))) from None
    finally:
        progress.end()
        cache.close()
        if scanner is None:
            sink.discard()
    try:
        sink.finish(scanner.inventory, scanner.tally(), scanner.interrupted)
    except BaseException:
        sink.discard()
        raise
    if target is not None and not target.stdout:
        _echo(
            f"wrote {sink.plans} plan(s), {len(scanner.inventory.errors)} error(s) to {target}",
            err=True,
        )
    if scanner.interrupted:  # Ctrl-C: what was done so far is reported above
        _echo(
            f"rtcode: interrupted after {scanner.inventory.files_seen} file(s): the report"
            " covers only those",
            err=True,
        )
        sys.exit(130)
    if not sink.plans:
        _echo("rtcode: no readable RT Plan found in the given paths", err=True)
        sys.exit(1)


def _open_cache(path: Path | None):  # type: ignore[no-untyped-def]
    """The scan cache at ``path`` (checked by the output guard), or a private
    temporary one (None: --no-cache, where plan facts still wait on disk, not in
    memory; or the default cache is under a scanned folder)."""
    import sqlite3

    from rtcode.engine.cache import Cache

    if path is None:
        return Cache.temporary_file()
    try:
        cache = Cache(path)
    except (OSError, sqlite3.Error) as exc:
        _echo(f"rtcode: cannot use the cache {path} ({exc}): scanning without it", err=True)
        return Cache.temporary_file()
    if cache.warning:
        _echo(f"rtcode: {cache.warning}", err=True)
    return cache


def _stream(inputs, policy, day, runner, sink, progress):  # type: ignore[no-untyped-def]
    from rtcode.engine.scan import Scanner
    from rtcode.output.render import plan_row

    # Plans are rendered by the workers that code them; --deidentify rewrites whole
    # results at the end, so it keeps them as they are.
    scanner = Scanner(policy, day, runner, progress.update, None if sink.deidentify else plan_row)
    try:
        for plan_result in scanner.run(inputs):
            sink.add(plan_result)
    except KeyboardInterrupt:  # while rendering: the plans rendered so far are reported
        scanner.interrupted = True
        runner.close(interrupted=True)
    return scanner


class _Progress:
    """One line on standard error, rewritten at most five times a second."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.start = time.monotonic()
        self.last = 0.0
        self.files = self.plans = self.errors = 0
        self.shown = False

    def update(self, event: str, item: object) -> None:
        if event == "file":
            self.files += 1
            if type(item).__name__ == "ReadError":
                self.errors += 1
        elif event == "files":  # a count (a scan replayed from the cache)
            self.files += item  # type: ignore[operator]
        elif event == "plan":
            self.plans += 1
        elif event == "error":
            self.errors += 1
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < 0.2:
            return
        self.last = now
        rate = self.files / max(now - self.start, 1e-9)
        sys.stderr.write(
            f"\r{self.files} files, {self.plans} plans coded, {rate:.0f} files/s,"
            f" {self.errors} errors "
        )
        sys.stderr.flush()
        self.shown = True

    def end(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


class _Sink:
    """Where coded plans go as they come: rendered at once to a small row (the plan's
    facts are then let go), or for jsonl written at once. --deidentify needs every
    plan before it can rewrite (a name may appear in another plan's paths), so it
    keeps them until the end."""

    def __init__(self, fmt: str, policy, target, deidentify: bool) -> None:  # type: ignore[no-untyped-def]
        self.fmt = fmt
        self.policy = policy
        self.target = target  # an output.Target, or None: standard output
        self.deidentify = deidentify
        self.plans = 0
        self.rows: list = []
        self.kept: list = []
        self._stream = None
        self._file = None  # the jsonl output's AtomicFile
        if fmt == "jsonl" and not deidentify:
            if target is None or target.stdout:
                self._stream = sys.stdout
            else:
                self._file = self._stream = target.open()

    def add(self, p) -> None:  # type: ignore[no-untyped-def]
        """A PlanResult (--deidentify) or its PlanRow."""
        self.plans += 1
        if self.deidentify:
            self.kept.append(p)
        elif self.fmt == "jsonl":
            self._stream.write(p.json_line + "\n")  # type: ignore[union-attr]
            self._stream.flush()  # type: ignore[union-attr]
        elif self.fmt == "json":
            self.rows.append(p.json_text)
        elif self.fmt == "csv":
            self.rows.append(p.csv)
        else:
            self.rows.append((p.table, p.details))

    def _line(self, record: dict) -> None:
        self._stream.write(dumps(record) + "\n")  # type: ignore[union-attr]
        self._stream.flush()  # type: ignore[union-attr]

    def finish(self, inv, tally, interrupted: bool) -> None:  # type: ignore[no-untyped-def]
        from rtcode.model.results import ScanResult
        from rtcode.output.render import csv_text, json_text, jsonl_tail, table_text

        if self.deidentify:
            result = ScanResult(self.policy, self.kept, inv, interrupted)
            result = _deidentify(result)
            self.kept = []
            if self.fmt == "jsonl":
                text = "".join(dumps(r) + "\n" for r in _jsonl_records(result))
            else:
                text = whole_result_text(self.fmt, result)
            self._write(text)
            return
        if self.fmt == "jsonl":
            for record in jsonl_tail(tally, self.plans, interrupted, self.policy):
                self._line(record)
            if self._file is not None:
                file, self._file = self._file, None
                file.commit()
            return
        if self.fmt == "json":
            text = json_text(self.rows, tally, interrupted, self.policy)
        elif self.fmt == "csv":
            text = csv_text(self.rows)
        else:
            rows, details = [r for r, _ in self.rows], [d for _, d in self.rows]
            text = table_text(rows, details, tally, interrupted, self.policy)
        self._write(text)

    def _write(self, text: str) -> None:
        if self.target is None:
            _echo(text, nl=False)
        else:
            self.target.write_text(text)

    def discard(self) -> None:
        """Remove a half-written jsonl temporary file (the scan failed)."""
        if self._file is not None:
            file, self._file = self._file, None
            file.discard()


def _jsonl_records(result):  # type: ignore[no-untyped-def]
    from rtcode.output.render import jsonl_tail, plan_json

    for p in result.plans:
        yield {"record": "plan", **plan_json(p, result.policy)}
    yield from jsonl_tail(
        result.inventory.tally(), len(result.plans), result.interrupted, result.policy
    )


def _deidentify(result):
    """The result with pseudonyms; says on standard error when they hold for this run only."""
    from rtcode.output.deidentify import ENV_KEY, Pseudonyms, deidentify

    pseudonyms = Pseudonyms.from_environment()
    if not pseudonyms.stable:
        _echo(
            f"rtcode: {ENV_KEY} is not set: pseudonyms hold within this output only",
            err=True,
        )
    return deidentify(result, pseudonyms)


# `rtcode scan --deidentify`, word for word, for the other commands that offer it.
_deidentify_option = click.option(
    "--deidentify",
    is_flag=True,
    help="Replace patient names, IDs, dates and UIDs with stable pseudonyms (keyed by"
    " RTCODE_DEIDENTIFY_KEY), for output that leaves the department.",
)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--html",
    "html_file",
    metavar="FILE",
    help="Write the report as one self-contained HTML file with DVH, beam's-eye-view and"
    " beam-arrangement plots (nothing loaded from outside); - for standard output.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for the terminal, json with everything (printed unless only --html is given).",
)
@click.option(
    "--compute-dvh",
    is_flag=True,
    help="Compute the DVH of every target and organ at risk with dicompyler-core, also"
    " where one is stored, and show how they agree (default: only where none is stored).",
)
@click.option(
    "--deidentify",
    is_flag=True,
    help="Replace patient names, IDs, dates and UIDs with stable pseudonyms (keyed by"
    " RTCODE_DEIDENTIFY_KEY), for a report that leaves the department.",
)
@click.option(
    "--policy",
    "policy_name",
    default="default",
    show_default=True,
    help="A shipped policy name or a policy TOML file.",
)
@click.option(
    "--date",
    "date_of_service",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Date of service (YYYY-MM-DD) that selects the codes and rules in force;"
    " default: each plan's RTPlanDate.",
)
@click.pass_context
def report(
    ctx: click.Context,
    paths: tuple[Path, ...],
    html_file: str | None,
    fmt: str,
    compute_dvh: bool,
    deidentify: bool,
    policy_name: str,
    date_of_service: dt.datetime | None,
) -> None:
    """Per patient, every plan under PATHS with its code, confidence, evidence, flags,
    related codes, beams and DVHs (stored in the RT Dose, or computed from the
    structure set and dose grid where none is stored).
    """
    import dataclasses

    from rtcode.measure.dvh import DvhSettings
    from rtcode.output.files import check
    from rtcode.report.patients import build_report
    from rtcode.report.patients import to_json as report_json
    from rtcode.report.patients import to_text as report_text

    policy = _load_policy(policy_name)
    html = check(html_file, "--html", _inputs(paths, policy))
    explicit = ctx.get_parameter_source("fmt") is not click.core.ParameterSource.DEFAULT
    if html is not None and html.stdout and explicit:
        raise click.UsageError("--html - and --format both write to standard output; give one")
    day = date_of_service.date() if date_of_service is not None else None
    result = build_report(
        run_scan([str(p) for p in paths], policy, day),
        "always" if compute_dvh else "auto",
        dvh_settings=DvhSettings.from_policy(policy),
    )
    if deidentify:
        result = dataclasses.replace(_deidentify(result), deidentified=True)
    if html is not None:
        from rtcode.report.html import report_html

        html.write_text(report_html(result))
        if not html.stdout:
            _echo(
                f"wrote the report of {len(result.plans)} plan(s) for {len(result.patients)}"
                f" patient(s) to {html}",
                err=True,
            )
    if html is None or explicit:
        _echo(report_json(result) if fmt == "json" else report_text(result), nl=False)
    if not result.plans:
        _echo("rtcode: no readable RT Plan found in the given paths", err=True)
        sys.exit(1)


@main.command()
@click.argument("plan_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="table for people; json and csv for other tools (csv: one row per beam, or per"
    " control point with --control-points).",
)
@click.option("--control-points", is_flag=True, help="Also list every control point of every beam.")
@click.option(
    "--policy",
    "policy_name",
    default="default",
    show_default=True,
    help="A shipped policy name or a policy TOML file (its thresholds name the techniques).",
)
@_deidentify_option
def inspect(
    plan_file: Path, fmt: str, control_points: bool, policy_name: str, deidentify: bool = False
) -> None:
    """Show how one RT Plan delivers its dose: per fraction group and per beam, the
    technique with its reason, MU, segments, MCS (McNiven 2010), small-aperture score,
    gantry, collimator and couch; with --control-points, every control point with
    its cumulative meterset, MU, jaws, aperture area and perimeter.
    """
    policy = _load_policy(policy_name)
    result = run_scan([str(plan_file)], policy)
    if result.errors or not result.plans:
        reason = (
            result.errors[0].error
            if result.errors
            else "not an RT Plan or RT Ion Plan: " + result.inventory.skipped[0].reason
            if result.inventory.skipped
            else "not an RT Plan or RT Ion Plan"
        )
        _echo(f"rtcode: {plan_file}: {reason}", err=True)
        sys.exit(1)
    if deidentify:
        result = _deidentify(result)
    from rtcode.output.render import inspect_csv, inspect_json, inspect_table

    data = inspect_json(result.plans[0], policy, control_points)
    if fmt == "json":
        _echo(dumps(data, indent=2))
    elif fmt == "csv":
        _echo(inspect_csv(data), nl=False)
    else:
        _echo(inspect_table(data), nl=False)


@main.command()
@click.argument(
    "paths", metavar="EXPORT...", nargs=-1, required=True, type=click.Path(path_type=Path)
)
@click.option(
    "--charges",
    "charges_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The billed charges, a CSV file (columns: patient_id, date_of_service, cpt, units,"
    " modifiers, plan, fee; see --column).",
)
@click.option(
    "--ptp",
    "ptp_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A CMS NCCI procedure-to-procedure edit file (text or CSV) to apply; repeat it for"
    " a table split over several files.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(sorted(AUDIT_FORMATS)),
    default="table",
    show_default=True,
    help="table for people, html a self-contained page, csv one row per finding, json all.",
)
@click.option(
    "--output",
    "-o",
    metavar="FILE",
    help="Write to this file (atomically) instead of standard output (-). Never an input,"
    " a file under a scanned folder, a device or a pipe.",
)
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
@click.option(
    "--patient",
    "patients",
    multiple=True,
    metavar="ID",
    help="Report only this patient ID (repeatable).",
)
@_deidentify_option
def audit(
    paths: tuple[Path, ...],
    charges_file: Path,
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
    number and skipped. Exit status: 0 no finding at or above --fail-on, 4 otherwise,
    1 no readable RT Plan found, 2 usage error. rtcode is advisory.
    """
    policy = _load_policy(policy_name)
    mapping = dict(policy["audit.columns"])
    for item in columns:
        field, sep, name = item.partition("=")
        if not sep or field.strip() not in CHARGE_FIELDS or not name.strip():
            raise click.BadParameter(
                f"{item!r}: give FIELD=NAME with FIELD one of " + ", ".join(CHARGE_FIELDS),
                param_hint="--column",
            )
        mapping[field.strip()] = name.strip()
    from rtcode.output.files import check

    target = check(output, "--output", _inputs(paths, policy, charges_file, *ptp_files))
    from rtcode.sources.billing import BillingFileError, merge_ptp, read_charges, read_ptp

    try:
        charges = read_charges(charges_file, mapping)
        billed = {c.cpt for c in charges.charges}
        ptp = merge_ptp([read_ptp(p, billed) for p in ptp_files]) if ptp_files else None
    except BillingFileError as exc:
        raise click.BadParameter(_safe(str(exc)), param_hint="--charges/--ptp") from None
    day = date_of_service.date() if date_of_service is not None else None
    scanned = run_scan([str(p) for p in paths], policy, day)
    from rtcode.audit.findings import audit as run_audit

    result = run_audit(
        scanned.plans,
        charges.charges,
        policy,
        ptp=ptp,
        rejected=charges.rejected,
        charges_source=str(charges_file),
        errors=scanned.errors,
        patients=patients or None,
        notes=charges.notes,
    )
    failing = result.at_or_above(fail_on)
    if deidentify:
        result = _deidentify(result)
    from rtcode.audit.render import FORMATS as AUDIT_RENDERERS

    text = AUDIT_RENDERERS[fmt](result)
    written = target is not None and not target.stdout
    if target is None:
        _echo(text, nl=False)
    else:
        target.write_text(text)
    if written:
        _echo(
            f"wrote {len(result.findings)} finding(s) ("
            + ", ".join(f"{result.count(s)} {s}" for s in SEVERITIES)
            + f"), {len(result.rejected)} rejected row(s) to {target}",
            err=True,
        )
    if charges.rejected and (written or fmt != "table"):  # the table lists them
        read = len(charges.charges)
        _echo(
            f"rtcode: {len(charges.rejected)} charges row(s) rejected, {read} read;"
            " see the rejected rows in the output",
            err=True,
        )
    if ptp is not None and not ptp.edits_read:
        _echo(f"rtcode: no PTP edit could be read from {ptp.name}", err=True)
    if not scanned.plans:
        _echo("rtcode: no readable RT Plan found in the given paths", err=True)
        sys.exit(1)
    sys.exit(4 if failing else 0)


@main.command()
@click.option(
    "--ae-title",
    default="RTCODE",
    show_default=True,
    help="Our AE title: the planning system's DICOM export names it as the called AE.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on: 127.0.0.1 serves this computer only; give the address of"
    " a network interface (or 0.0.0.0) to accept the planning system's connections.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=11112,
    show_default=True,
    help="TCP port (0: any free port; the port is printed at start).",
)
@click.option(
    "--store",
    "store_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder where received instances are kept (created when missing).",
)
@click.option(
    "--db",
    "db_path",
    required=True,
    metavar="FILE",
    help="SQLite results database (created when missing); read it with rtcode results.",
)
@click.option(
    "--allow-calling-aet",
    "allowed",
    multiple=True,
    help="Accept associations only from this calling AE title (repeat for more; default: any).",
)
@click.option(
    "--accept-ct",
    is_flag=True,
    help="Also accept and keep CT images, to keep complete exports (they never change a code).",
)
@click.option(
    "--max-pdu",
    "max_pdu_bytes",
    type=click.IntRange(4096, 16 * 2**20),
    default=65536,
    show_default=True,
    help="Largest PDU accepted, in bytes; a peer sending a longer one is disconnected.",
)
@click.option(
    "--max-instance-mb",
    type=click.FloatRange(min=0.001),
    help="Largest instance accepted, in MB; a larger one is refused while it arrives,"
    " a deflated one as it inflates (default: the policy's limits.max_file_size_mb).",
)
@click.option(
    "--max-associations",
    type=click.IntRange(1, 100),
    default=8,
    show_default=True,
    help="Associations served at once; more are rejected (local limit exceeded).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(1, 3600),
    default=60,
    show_default=True,
    help="Seconds an association may stay silent before it is aborted.",
)
@click.option(
    "--association-timeout",
    "association_timeout_s",
    type=click.FloatRange(0.5, 600),
    default=5,
    show_default=True,
    help="Seconds a new connection has to ask for an association (A-ASSOCIATE-RQ); a"
    " connection that does not is closed. Until it asks it holds no association slot.",
)
@click.option(
    "--policy",
    "policy_name",
    default="default",
    show_default=True,
    help="A shipped policy name or a policy TOML file.",
)
@click.option("--verbose", "-v", is_flag=True, help="Log every association, instance and coding.")
def listen(
    ae_title: str,
    host: str,
    port: int,
    store_dir: Path,
    db_path: str,
    allowed: tuple[str, ...],
    accept_ct: bool,
    max_pdu_bytes: int,
    max_instance_mb: float | None,
    max_associations: int,
    timeout_s: float,
    association_timeout_s: float,
    policy_name: str,
    verbose: bool,
) -> None:
    """Receive plans from the planning system as a DICOM node (storage SCP) and code
    them as their parts arrive: a plan is re-coded when its dose or structure set
    arrives later. Results, with evidence, go to the --db database (rtcode results).

    Accepts RT Plan, RT Ion Plan, RT Dose and RT Structure Set (and CT with
    --accept-ct) and answers C-ECHO. Ctrl-C stops: the instance in flight is
    finished, nothing stored is lost. Needs the rtcode[net] extra (pynetdicom).
    """
    import logging
    import signal
    import threading

    try:
        import pynetdicom  # noqa: F401
    except ImportError:
        raise click.ClickException(
            "rtcode listen needs pynetdicom: pip install 'rtcode[net]'"
        ) from None
    from rtcode.output.files import Inputs, check
    from rtcode.sources.listen import Listener, ListenSettings
    from rtcode.sources.results_db import ResultsDatabaseError

    policy = _load_policy(policy_name)
    # everything in the store is an input of the coding: the database is not kept there
    inputs = Inputs(folders=[store_dir])
    if not policy.source.startswith("builtin:"):
        inputs.add_file(policy.source)
    db_path = check(db_path, "--db", inputs, database=True).path  # type: ignore[union-attr]
    max_mb = max_instance_mb if max_instance_mb is not None else policy["limits.max_file_size_mb"]
    settings = ListenSettings(
        store_dir=store_dir,
        db_path=db_path,
        ae_title=ae_title,
        host=host,
        port=port,
        allowed_calling_aets=tuple(allowed),
        accept_ct=accept_ct,
        max_pdu_bytes=max_pdu_bytes,
        max_instance_bytes=int(max_mb * 2**20),
        max_associations=max_associations,
        network_timeout_s=timeout_s,
        acse_timeout_s=association_timeout_s,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name, level in (
        ("rtcode", logging.INFO if verbose else logging.WARNING),
        ("pynetdicom", logging.INFO if verbose else logging.CRITICAL),
    ):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.addHandler(handler)
    try:
        listener = Listener(settings, policy)
    except ValueError as exc:
        raise click.UsageError(_safe(str(exc))) from None
    try:
        bound_host, bound_port = listener.start()
    except ResultsDatabaseError as exc:
        raise click.BadParameter(_safe(str(exc)), param_hint="--db") from None
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    _echo(
        f"rtcode listen: {ae_title} on {bound_host}:{bound_port}, storing in {store_dir},"
        f" results in {db_path}; Ctrl-C stops",
        err=True,
    )
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    _echo("rtcode listen: stopping (finishing the instance in flight)", err=True)
    interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)  # stopping is bounded
    try:
        listener.stop()
    finally:
        signal.signal(signal.SIGINT, interrupt)
    _echo("rtcode listen: stopped", err=True)


@main.command()
@click.option(
    "--db",
    "db_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The results database that rtcode listen --db writes.",
)
@click.option("--patient", "patient_id", help="Only this Patient ID.")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Only what was received or coded on or after this day (YYYY-MM-DD, local time).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="table for people, csv one row per plan, json with the evidence and history.",
)
def results(db_path: Path, patient_id: str | None, since: dt.datetime | None, fmt: str) -> None:
    """What rtcode listen received and how it coded each plan: the current code with
    its reasons, how the coding changed as the parts arrived, and what was refused.
    """
    from rtcode.output.render_results import FORMATS as RESULT_FORMATS
    from rtcode.sources.results_db import ResultsDatabaseError, query

    try:
        data = query(db_path, patient_id=patient_id, since=since.date() if since else None)
    except ResultsDatabaseError as exc:
        raise click.BadParameter(_safe(str(exc)), param_hint="--db") from None
    _echo(RESULT_FORMATS[fmt](data), nl=False)


@main.group()
def policy() -> None:
    """Read, check and compare coding policies (TOML files; shipped: see `policy show`)."""


@policy.command("show")
@click.argument("name", default="default")
def policy_show(name: str) -> None:
    """Print the effective policy NAME (a shipped name or a TOML file), with `extends`
    resolved, as TOML. Shipped policies are listed on standard error."""
    p = _load_policy(name)
    _echo(p.to_toml(), nl=False)
    _echo("shipped policies: " + ", ".join(policy_mod.builtin_names()), err=True)


@policy.command("check")
@click.argument("file")
def policy_check(file: str) -> None:
    """Validate a policy file: exit 0 and print its name, version and hash when it is
    valid; exit 2 with a message naming the key, the value and what is allowed."""
    try:
        p = policy_mod.load(file)
    except PolicyError as exc:
        _echo(f"invalid: {exc}", err=True)
        sys.exit(2)
    _echo(f"valid: {p.name} {p.version} sha256 {p.sha256}")


@policy.command("diff")
@click.argument("a")
@click.argument("b")
def policy_diff(a: str, b: str) -> None:
    """Show the settings that differ between two policies (names or files). Exit 0 when
    they are the same, 1 when they differ."""
    pa, pb = _load_policy(a), _load_policy(b)
    rows = []
    for key in sorted(set(pa.values) | set(pb.values)):
        va, vb = pa.values.get(key), pb.values.get(key)
        if va != vb:
            rows.append((key, va, vb))
    for code in sorted(set(pa.validity) | set(pb.validity)):
        va, vb = pa.validity.get(code), pb.validity.get(code)
        if va != vb:
            rows.append((f"validity.{code}", va, vb))
    _echo(f"--- {pa.name} {pa.version} ({pa.source})")
    _echo(f"+++ {pb.name} {pb.version} ({pb.source})")
    for key, va, vb in rows:
        _echo(f"{key}: {va!r} -> {vb!r}")
    if not rows:
        _echo("no differences")
    sys.exit(1 if rows else 0)
