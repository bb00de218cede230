"""``rtcode scan``: code every plan under the given paths, streamed to the chosen format
(``rtcode.output.formats``) through the scan engine and its cache."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from rtcode.cli.options import (
    PlanFilter,
    Progress,
    checked,
    date_option,
    day_of,
    deidentified,
    deidentify_option,
    echo,
    exit_without_plans,
    filter_of,
    inputs_of,
    jobs_option,
    load_policy,
    ordered_formats,
    output_option,
    patient_option,
    policy_option,
    quiet_option,
    require_inputs,
    safe,
    since_option,
    until_option,
)
from rtcode.coding.policy import Policy
from rtcode.engine import cache as engine_cache
from rtcode.engine import execute
from rtcode.engine import scan as engine_scan
from rtcode.engine.execute import ExecutorError, WorkerDied
from rtcode.model.facts import Inventory, Tally
from rtcode.model.limits import Limits
from rtcode.model.results import PlanResult, ScanResult
from rtcode.output.files import Inputs, Target
from rtcode.output.formats import FORMATS, PlanRow, ScanWriter, plan_row, plan_row_and_result


class PathOrDicomWeb(click.ParamType):  # type: ignore[type-arg]  # generic only in recent click
    """A file or folder (a Path), or a dicomweb+http(s):// URL (kept as text)."""

    name = "path"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, Path):
            return value
        text = str(value)
        if text.lower().startswith(("dicomweb+http://", "dicomweb+https://")):
            return text
        return Path(text)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=PathOrDicomWeb())
@click.option(
    "--format",
    "fmt",
    type=click.Choice(ordered_formats(FORMATS)),
    default="table",
    show_default=True,
    help="table for people, json with all evidence, jsonl one JSON record per line (each"
    " plan as soon as it is coded, then errors and a summary), csv one row per plan.",
)
@output_option
@policy_option
@date_option
@deidentify_option
@click.option(
    "--study",
    help="With a dicomweb+http:// source: only the RT plans of this Study Instance UID.",
)
@patient_option
@since_option
@until_option
@jobs_option
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
@quiet_option
@click.option(
    "--details/--no-details",
    default=None,
    help="With --format table: after the table, why each plan has its code (its reasons,"
    " alternatives, related codes and checks). Default: details when the scan finds one"
    " plan, none when it finds more (the table then says how many checks they hold).",
)
@click.option(
    "--html",
    "html_file",
    metavar="FILE",
    help="Also write the department overview of the scan to FILE: one self-contained HTML"
    " page (counts by code, system, machine, technique and month, MCS per technique, what"
    " to look at, every plan with its evidence). Not written when no plan is found.",
)
def scan(
    paths: tuple[Path | str, ...],
    fmt: str,
    output: str | None,
    policy_name: str,
    date_of_service: dt.datetime | None,
    deidentify: bool = False,
    study: str | None = None,
    patients: tuple[str, ...] = (),
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    jobs: int | None = None,
    cache_file: str | None = None,
    no_cache: bool = False,
    executor: str = "local",
    scheduler: str | None = None,
    quiet: bool = False,
    details: bool | None = None,
    html_file: str | None = None,
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

    require_inputs(paths)  # a missing folder is exit 2 before anything is read
    select = filter_of(patients, since, until)
    policy = load_policy(policy_name)
    if cache_file is not None and no_cache:
        raise click.UsageError("--cache and --no-cache contradict each other; give one")
    if executor == "dask" and not scheduler:
        raise click.BadParameter("--executor dask needs --scheduler", param_hint="--scheduler")
    # Every path written is checked before the scan (and the output again before its
    # rename): never an input, nothing under a scanned folder, no device or pipe.
    inputs = inputs_of(paths, policy)
    cache_path = _cache_path(cache_file, no_cache, inputs)
    if cache_path is not None:
        inputs.add_file(cache_path, f"the scan cache ({cache_path})", sqlite=True)
    target = checked(output, "--output", inputs)
    html = _html_target(html_file, target, inputs)
    jobs = _jobs(jobs, executor)
    writer = ScanWriter(fmt, target, details=details)
    try:
        cache = _open_cache(cache_path)
    except BaseException:
        writer.discard()
        raise
    runner = engine_scan.Runner(jobs=jobs, executor=executor, scheduler=scheduler, cache=cache)
    progress = Progress(enabled=not quiet and sys.stderr.isatty())
    run = _Run(policy, day_of(date_of_service), runner, writer, progress, deidentify, select)
    run.keep = html is not None
    try:
        _scan_sources(paths, study, patients, run, policy)
    except WorkerDied as exc:  # not the user's doing: say so, exit 1
        writer.discard()
        raise click.ClickException(safe(str(exc))) from None
    except ExecutorError as exc:
        writer.discard()
        raise click.UsageError(safe(str(exc))) from None
    except BaseException:
        writer.discard()
        raise
    finally:
        progress.end()
        cache.close()
    whole = run.finish()
    note = select.note()  # what --patient, --since and --until left out
    if note is not None:
        echo(note, err=True)
    if target is not None and not target.stdout:
        echo(f"wrote {writer.plans} plan(s), {run.errors} error(s) to {target}", err=True)
    if html is not None and whole is not None:
        _write_overview(html, whole, paths)
    if run.interrupted:  # Ctrl-C: what was done so far is reported above
        echo(
            f"rtcode: interrupted after {run.files_seen} file(s): the report covers only those",
            err=True,
        )
        sys.exit(130)
    if not writer.plans:
        exit_without_plans(select)


def _cache_path(cache_file: str | None, no_cache: bool, inputs: Inputs) -> Path | None:
    """The scan cache to use (checked by the output guard), or None: a private temporary
    one (--no-cache, or the default cache lies under a scanned folder)."""
    if cache_file is not None:
        target = checked(cache_file, "--cache", inputs, database=True, make_folder=True)
        return target.path if target is not None else None
    if no_cache:
        return None
    path = engine_cache.default_path()
    clash = inputs.clash(os.path.realpath(path), None)
    if clash is not None:
        echo(
            f"rtcode: the default cache {path} {clash}: scanning without it (give --cache)",
            err=True,
        )
        return None
    return path


def _jobs(jobs: int | None, executor: str) -> int:
    """--jobs, or one worker per core; on this machine never more than its cores
    (more processes than cores only compete for them and each holds its memory)."""
    cores = execute.default_jobs()
    if jobs is None:
        return cores
    if executor == "local" and jobs > cores:
        echo(
            f"rtcode: --jobs {jobs} is more than the {cores} core(s) this process may use:"
            f" starting {cores} worker(s)",
            err=True,
        )
        return cores
    return jobs


def _open_cache(path: Path | None) -> engine_cache.Cache:
    """The scan cache at ``path`` (checked by the output guard), or a private
    temporary one (None: --no-cache, where plan facts still wait on disk, not in
    memory; or the default cache is under a scanned folder)."""
    if path is None:
        return engine_cache.Cache.temporary_file()
    try:
        cache = engine_cache.Cache(path)
    except (OSError, sqlite3.Error) as exc:
        echo(f"rtcode: cannot use the cache {path} ({exc}): scanning without it", err=True)
        return engine_cache.Cache.temporary_file()
    if cache.warning:
        echo(f"rtcode: {cache.warning}", err=True)
    return cache


def _scan_sources(
    paths: tuple[Path | str, ...],
    study: str | None,
    patients: tuple[str, ...],
    consume: Callable[[list[Any]], None],
    policy: Policy,
) -> None:
    """Scan folders, files and dicomweb+http(s):// sources in one pipeline: ``consume``
    gets the list of inputs; a source is retrieved into a temporary folder that exists
    only while it is scanned (with --patient, one query per patient)."""
    if study is not None and not any(isinstance(p, str) for p in paths):
        raise click.UsageError("--study can only filter a dicomweb+http:// source; give one")
    with contextlib.ExitStack() as stack:
        inputs: list[Any] = []  # paths, and the entries of retrieved files
        for p in paths:
            if isinstance(p, str):
                for patient in patients or (None,):
                    inputs.extend(_retrieve(stack, p, study, patient, policy))
            else:
                inputs.append(str(p))
        consume(inputs)


def _retrieve(
    stack: contextlib.ExitStack, url: str, study: str | None, patient: str | None, policy: Policy
) -> list[Any]:
    """A DICOMweb source's files, in a temporary folder until ``stack`` closes."""
    # here: the DICOMweb client (rtcode[net]) is loaded only for a dicomweb+http:// path
    from rtcode.sources.dicomweb import DicomWebError, display_url, retrieve

    try:
        source = retrieve(url, study=study, patient=patient, limits=Limits.from_policy(policy))
        return list(stack.enter_context(source))
    except DicomWebError as exc:
        raise click.BadParameter(safe(str(exc)), param_hint="PATHS") from None
    except KeyboardInterrupt:  # Ctrl-C while retrieving: nothing was coded yet
        echo(f"rtcode: interrupted while retrieving from {display_url(url)}", err=True)
        sys.exit(130)


class _Run:
    """One scan streamed into a ``ScanWriter``: each plan's row as it is coded (rendered
    by the worker that coded it). With --deidentify every plan is kept until the end (a
    name may appear in another plan's paths), pseudonymised, then rendered the same way."""

    def __init__(
        self,
        policy: Policy,
        day: dt.date | None,
        runner: engine_scan.Runner,
        writer: ScanWriter,
        progress: Progress,
        deidentify: bool,
        select: PlanFilter | None = None,
    ) -> None:
        self.policy = policy
        self.day = day
        self.runner = runner
        self.writer = writer
        self.progress = progress
        self.deidentify = deidentify
        self.select = select if select is not None and select.active else None
        self.kept: list[PlanResult] = []
        self.scanner: engine_scan.Scanner | None = None
        self.keep = False  # every plan's result kept for the end too (--html)

    def __call__(self, inputs: list[Any]) -> None:
        if self.deidentify or self.select is not None:
            render = None  # the results come back whole: filtered or pseudonymised here
        else:
            render = plan_row_and_result if self.keep else plan_row
        scanner = engine_scan.Scanner(
            self.policy, self.day, self.runner, self.progress.update, render
        )
        self.scanner = scanner
        try:
            for item in scanner.run(inputs):
                if isinstance(item, PlanRow):
                    self.writer.add(item)
                elif isinstance(item, tuple):  # plan_row_and_result
                    self.writer.add(item[0])
                    self.kept.append(item[1])
                elif self.select is not None and not self.select.keep(item):
                    continue  # --patient, --since, --until: on the real IDs and dates
                elif self.deidentify:
                    self.kept.append(item)
                else:
                    self.writer.add(plan_row(item, self.policy))
                    if self.keep:
                        self.kept.append(item)
        except KeyboardInterrupt:  # while writing: the plans written so far are reported
            scanner.interrupted = True
            self.runner.close(interrupted=True)

    def finish(self) -> ScanResult | None:
        """The rest of the output: the plans kept for --deidentify, errors and counts.
        With ``keep``, the whole scan's result (de-identified with --deidentify)."""
        scanner = self.scanner
        assert scanner is not None
        if not self.deidentify:
            self.writer.finish(scanner.tally(), scanner.interrupted, self.policy)
            if not self.keep:
                return None
            counted = _Counted(scanner.tally())  # a replayed scan's inventory holds no facts
            return ScanResult(self.policy, self.kept, counted, scanner.interrupted)
        whole = ScanResult(self.policy, self.kept, scanner.inventory, scanner.interrupted)
        self.kept = []
        try:
            result = deidentified(whole)
            for p in result.plans:
                self.writer.add(plan_row(p, result.policy))
        except BaseException:
            self.writer.discard()
            raise
        self.writer.finish(result.inventory.tally(), result.interrupted, result.policy)
        return result if self.keep else None

    @property
    def interrupted(self) -> bool:
        return self.scanner is not None and self.scanner.interrupted

    @property
    def errors(self) -> int:
        return len(self.scanner.inventory.errors) if self.scanner is not None else 0

    @property
    def files_seen(self) -> int:
        return self.scanner.inventory.files_seen if self.scanner is not None else 0


def _html_target(html_file: str | None, target: Target | None, inputs: Inputs) -> Target | None:
    """--html, checked by the output guard like --output, and never where --output goes."""
    html = checked(html_file, "--html", inputs)
    if html is None:
        return None
    if html.stdout and (target is None or target.stdout):
        raise click.UsageError("--html - and the scan output both go to standard output; give -o")
    there = target.path if target is not None else None
    if html.path is not None and there is not None and _same(html.path, there):
        raise click.UsageError("--html and --output name the same file; give two")
    return html


def _same(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _write_overview(html: Target, result: ScanResult, paths: tuple[Path | str, ...]) -> None:
    """The department overview of the scan, written atomically; none without plans (the
    scan then exits 1, saying so)."""
    if not result.plans:
        echo(f"rtcode: no plan found: {html} not written", err=True)
        return
    # here: the overview's figures load matplotlib, needed only with --html
    from rtcode.report.overview import overview_html

    shown = [_shown_source(p) if isinstance(p, str) else str(p) for p in paths]
    html.write_text(overview_html(result, inputs=shown))
    if not html.stdout:
        echo(f"wrote the overview of {len(result.plans)} plan(s) to {html}", err=True)


def _shown_source(url: str) -> str:
    """A dicomweb+ source as the overview may show it: without credentials."""
    from rtcode.sources.dicomweb import display_url  # here: only for a DICOMweb source

    return display_url(url)


class _Counted(Inventory):
    """What a scan counted, for the overview: the scan's own tally (a scan replayed
    from the cache keeps the counts, not the structure sets and doses counted)."""

    def __init__(self, tally: Tally) -> None:
        super().__init__(errors=list(tally.errors), skipped=list(tally.skipped))
        self.counted = tally

    def tally(self) -> Tally:
        return self.counted
