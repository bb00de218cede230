"""``rtcode results``: what ``rtcode listen`` received and how it coded each plan."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from rtcode.cli.options import (
    checked,
    echo,
    filter_of,
    ordered_formats,
    output_option,
    patient_option,
    safe,
    since_option,
    until_option,
)
from rtcode.output.files import Inputs
from rtcode.output.render_results import FORMATS as RESULT_FORMATS
from rtcode.sources.results_db import ResultsDatabaseError, query


@click.command()
@click.option(
    "--db",
    "db_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The results database that rtcode listen --db writes.",
)
@patient_option
@since_option
@until_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(ordered_formats(RESULT_FORMATS)),
    default="table",
    show_default=True,
    help="table for people, json with the evidence and history, csv one row per plan.",
)
@output_option
def results(
    db_path: Path,
    patients: tuple[str, ...],
    since: dt.datetime | None,
    until: dt.datetime | None,
    fmt: str,
    output: str | None,
) -> None:
    """What rtcode listen received and how it coded each plan: the current code with
    its reasons, how the coding changed as the parts arrived, and what was refused.

    --since and --until keep the plans by their plan date (RTPlanDate), and what was
    received, refused or could not be coded by the day it arrived (local time).
    """
    select = filter_of(patients, since, until)
    inputs = Inputs()
    inputs.add_file(db_path, f"the results database ({db_path})", sqlite=True)
    target = checked(output, "--output", inputs)
    try:
        data = query(db_path, patients=patients, since=select.since, until=select.until)
    except ResultsDatabaseError as exc:
        raise click.BadParameter(safe(str(exc)), param_hint="--db") from None
    text = RESULT_FORMATS[fmt](data)
    if target is None:
        echo(text, nl=False)
    else:
        target.write_text(text)
    select.undated = data["filters"]["plans_without_date_left_out"]
    note = select.note()
    if note is not None:
        echo(note, err=True)
    if target is not None and not target.stdout:
        echo(f"wrote {len(data['plans'])} plan(s) to {target}", err=True)
