"""``rtcode inspect``: how one RT Plan delivers its dose, beam by beam and (with
--control-points) control point by control point."""

from __future__ import annotations

from pathlib import Path

import click

from rtcode.cli.options import (
    deidentified,
    deidentify_option,
    echo,
    load_policy,
    ordered_formats,
    require_inputs,
    run_scan,
)
from rtcode.output.jsontext import dumps
from rtcode.output.render import inspect_csv, inspect_json, inspect_table


@click.command()
@click.argument("plan_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(ordered_formats(["table", "json", "csv"])),
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
@deidentify_option
def inspect(
    plan_file: Path, fmt: str, control_points: bool, policy_name: str, deidentify: bool = False
) -> None:
    """Show how one RT Plan delivers its dose: per fraction group and per beam, the
    technique with its reason, MU, segments, MCS (McNiven 2010), small-aperture score,
    gantry, collimator and couch; with --control-points, every control point with
    its cumulative meterset, MU, jaws, aperture area and perimeter.
    """
    require_inputs([plan_file], "plan file")
    policy = load_policy(policy_name)
    result = run_scan([str(plan_file)], policy)
    if result.errors or not result.plans:
        reason = (
            result.errors[0].error
            if result.errors
            else "not an RT Plan or RT Ion Plan: " + result.inventory.skipped[0].reason
            if result.inventory.skipped
            else "not an RT Plan or RT Ion Plan"
        )
        echo(f"rtcode: {plan_file}: {reason}", err=True)
        raise SystemExit(1)
    if deidentify:
        result = deidentified(result)
    data = inspect_json(result.plans[0], policy, control_points)
    if fmt == "json":
        echo(dumps(data, indent=2))
    elif fmt == "csv":
        echo(inspect_csv(data), nl=False)
    else:
        echo(inspect_table(data), nl=False)
