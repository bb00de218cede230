"""``rtcode report``: per patient, every plan with its code, evidence, beams and DVHs,
as text, JSON or one self-contained HTML file."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import sys
import time
from pathlib import Path

import click

from rtcode.cli.options import (
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
    jobs_for,
    jobs_option,
    load_policy,
    ordered_formats,
    output_option,
    patient_option,
    policy_option,
    quiet_option,
    require_inputs,
    run_scan,
    since_option,
    until_option,
)
from rtcode.measure.dvh import DvhSettings
from rtcode.output.files import Target
from rtcode.report.patients import Report, build_report
from rtcode.report.patients import to_json as report_json
from rtcode.report.patients import to_text as report_text

FORMATS = ("table", "json", "html")


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--html",
    "html_file",
    metavar="FILE",
    help="Also write the report as one self-contained HTML file with DVH, beam's-eye-view"
    " and beam-arrangement plots (nothing loaded from outside); - for standard output."
    " Alone, it is the only output.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(ordered_formats(FORMATS)),
    default="table",
    show_default=True,
    help="table for the terminal, json with everything, html the self-contained page of"
    " --html (to standard output or --output).",
)
@output_option
@click.option(
    "--compute-dvh",
    is_flag=True,
    help="Compute the DVH of every target and organ at risk with dicompyler-core, also"
    " where one is stored, and show how they agree (default: only where none is stored).",
)
@deidentify_option
@policy_option
@date_option
@patient_option
@since_option
@until_option
@jobs_option
@quiet_option
@click.pass_context
def report(
    ctx: click.Context,
    paths: tuple[Path, ...],
    html_file: str | None,
    fmt: str,
    output: str | None,
    compute_dvh: bool,
    deidentify: bool,
    policy_name: str,
    date_of_service: dt.datetime | None,
    patients: tuple[str, ...] = (),
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    jobs: int | None = None,
    quiet: bool = False,
) -> None:
    """Per patient, every plan under PATHS with its code, confidence, evidence, flags,
    related codes, beams and DVHs (stored in the RT Dose, or computed from the
    structure set and dose grid where none is stored).

    Nothing is written when no plan is found (exit status 1).
    """
    require_inputs(paths)
    select = filter_of(patients, since, until)
    policy = load_policy(policy_name)
    inputs = inputs_of(paths, policy)
    html = checked(html_file, "--html", inputs)
    out = checked(output, "--output", inputs)
    explicit = ctx.get_parameter_source("fmt") is not click.core.ParameterSource.DEFAULT
    printed = out is not None or html is None or explicit  # the --format output is wanted
    if html is not None and html.stdout and printed and (out is None or out.stdout):
        raise click.UsageError("--html - and --format both write to standard output; give one")
    if _same_file(html, out):
        raise click.UsageError("--html and --output name the same file; give one")
    progress = _Progress(enabled=not quiet and sys.stderr.isatty())
    workers = jobs_for(jobs)
    try:
        scanned = run_scan(
            [str(p) for p in paths], policy, day_of(date_of_service), workers, progress.update
        )
        progress.update("done", None)  # the last counts, whatever the rate
        if select.active:
            scanned.plans = [p for p in scanned.plans if select.keep(p)]
        result = build_report(
            scanned,
            "always" if compute_dvh else "auto",
            dvh_settings=DvhSettings.from_policy(policy),
            jobs=workers,
            progress=progress.dvh,
        )
    finally:
        progress.end()
    note = select.note()
    if note is not None:
        echo(note, err=True)
    if deidentify:
        result = dataclasses.replace(deidentified(result), deidentified=True)
    if not result.plans:  # nothing is written; the table or JSON says what was read
        if printed and (out is None or out.stdout) and fmt != "html":
            echo(report_json(result) if fmt == "json" else report_text(result), nl=False)
        exit_without_plans(select)
    if html is not None:
        _write(html, result, "html", progress)
    if printed:
        _write(out, result, fmt, progress)


def _same_file(a: Target | None, b: Target | None) -> bool:
    if a is None or b is None or a.path is None or b.path is None:
        return False
    return os.path.realpath(a.path) == os.path.realpath(b.path)


def _write(target: Target | None, result: Report, fmt: str, progress: _Progress) -> None:
    """The report in ``fmt`` to ``target`` (None: standard output)."""
    if fmt == "html":
        # here: the HTML report's plots load matplotlib, needed only for HTML
        from rtcode.report.html import report_html

        progress.say(f"drawing the HTML report of {len(result.plans)} plan(s)")
        text = report_html(result)
        progress.end()
    else:
        text = report_json(result) if fmt == "json" else report_text(result)
    if target is None:
        echo(text, nl=False)
        return
    target.write_text(text)
    if not target.stdout:
        echo(
            f"wrote the report of {len(result.plans)} plan(s) for {len(result.patients)}"
            f" patient(s) to {target}",
            err=True,
        )


class _Progress(Progress):
    """The scan's progress line, then the plans whose DVH evidence is ready, then the
    HTML; each with the seconds since the start."""

    def counts(self) -> str:
        return f"{self.files} files, {self.plans} plans coded, {self.errors} errors"

    def show(self, text: str, force: bool = False) -> None:
        super().show(f"{text} ({time.monotonic() - self.start:.0f} s)", force)

    def dvh(self, done: int, total: int) -> None:
        self.show(f"DVH evidence: {done} of {total} plans", done == total)

    def say(self, text: str) -> None:
        self.show(text, force=True)
