"""``rtcode report``: per patient, every plan with its code, evidence, beams and DVHs,
as text, JSON or one self-contained HTML file."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import click

from rtcode.cli.options import (
    checked,
    day_of,
    deidentified,
    echo,
    exit_without_plans,
    inputs_of,
    load_policy,
    run_scan,
)
from rtcode.measure.dvh import DvhSettings
from rtcode.report.patients import build_report
from rtcode.report.patients import to_json as report_json
from rtcode.report.patients import to_text as report_text


@click.command()
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
    policy = load_policy(policy_name)
    html = checked(html_file, "--html", inputs_of(paths, policy))
    explicit = ctx.get_parameter_source("fmt") is not click.core.ParameterSource.DEFAULT
    if html is not None and html.stdout and explicit:
        raise click.UsageError("--html - and --format both write to standard output; give one")
    result = build_report(
        run_scan([str(p) for p in paths], policy, day_of(date_of_service)),
        "always" if compute_dvh else "auto",
        dvh_settings=DvhSettings.from_policy(policy),
    )
    if deidentify:
        result = dataclasses.replace(deidentified(result), deidentified=True)
    if html is not None:
        # here: the HTML report's plots load matplotlib, needed only with --html
        from rtcode.report.html import report_html

        html.write_text(report_html(result))
        if not html.stdout:
            echo(
                f"wrote the report of {len(result.plans)} plan(s) for {len(result.patients)}"
                f" patient(s) to {html}",
                err=True,
            )
    if html is None or explicit:
        echo(report_json(result) if fmt == "json" else report_text(result), nl=False)
    if not result.plans:
        exit_without_plans()
