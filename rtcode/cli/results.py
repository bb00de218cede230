"""``rtcode results``: what ``rtcode listen`` received and how it coded each plan."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from rtcode.cli.options import echo, safe
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
    try:
        data = query(db_path, patient_id=patient_id, since=since.date() if since else None)
    except ResultsDatabaseError as exc:
        raise click.BadParameter(safe(str(exc)), param_hint="--db") from None
    echo(RESULT_FORMATS[fmt](data), nl=False)
