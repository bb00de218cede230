"""What the commands share: messages on standard error, the policy option's loading,
the output guard's inputs and checks, ``--output`` and ``--deidentify``, and running a
whole scan."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

import click

from rtcode.coding import policy as policy_mod
from rtcode.engine import scan as engine_scan
from rtcode.model.errors import PolicyError
from rtcode.model.results import ScanResult
from rtcode.output.files import Inputs, Target, check
from rtcode.output.terminal import shown

T = TypeVar("T")

NO_PLAN = "rtcode: no readable RT Plan found in the given paths"


def safe(message: str) -> str:
    """A message for the terminal: control and bidi characters from file names, URLs,
    policy text and DICOM values shown escaped (``rtcode.output.terminal``), lines kept."""
    return "\n".join(shown(line) for line in message.split("\n"))


def echo(message: object = None, nl: bool = True, err: bool = False) -> None:
    """``click.echo``; what goes to standard error is escaped for the terminal (the
    outputs on standard output are data, escaped by their renderers)."""
    if err and isinstance(message, str):
        message = safe(message)
    click.echo(message, nl=nl, err=err)


def load_policy(value: str) -> policy_mod.Policy:
    """The policy named by ``--policy``; a bad one is a usage error naming the option."""
    try:
        return policy_mod.load(value)
    except PolicyError as exc:
        raise click.BadParameter(safe(str(exc)), param_hint="--policy") from None


def day_of(value: dt.datetime | None) -> dt.date | None:
    """The ``--date`` option's day."""
    return value.date() if value is not None else None


def inputs_of(
    paths: Iterable[object],
    policy: policy_mod.Policy,
    *files: str | os.PathLike[str],
    folders: Iterable[str | os.PathLike[str]] = (),
) -> Inputs:
    """What a command reads, for the output guard (rtcode/output/files.py): its PATHS,
    folders that may not exist yet, its policy file (not a shipped policy) and the other
    files it was given."""
    inputs = Inputs([*paths, *files], folders)
    if not policy.source.startswith("builtin:"):
        inputs.add_file(policy.source)
    return inputs


def checked(
    value: str | os.PathLike[str] | None, option: str, inputs: Inputs, **rules: bool
) -> Target | None:
    """The one output check of every command: the path ``option`` names may be written
    (never an input, nothing under a scanned folder, no device or pipe), else a usage
    error (``rules``: ``database``, ``make_folder`` of ``output.files.check``)."""
    return check(value, option, inputs, **rules)


def checked_database(
    value: str | os.PathLike[str], option: str, inputs: Inputs, make_folder: bool = False
) -> Path:
    """``checked`` for an SQLite file (never standard output): its path."""
    target = checked(value, option, inputs, database=True, make_folder=make_folder)
    assert target is not None and target.path is not None  # refused when "-"
    return target.path


def run_scan(
    inputs: list[str], policy: policy_mod.Policy, day: dt.date | None = None
) -> ScanResult:
    """A whole scan in this process, for the commands that need every plan at once."""
    return engine_scan.scan(inputs, policy, day)


def deidentified(result: T) -> T:
    """The result with pseudonyms; says on standard error when they hold for this run only."""
    # here: de-identification imports numpy, which a rescan from the cache never loads
    from rtcode.output.deidentify import ENV_KEY, Pseudonyms, deidentify

    pseudonyms = Pseudonyms.from_environment()
    if not pseudonyms.stable:
        echo(f"rtcode: {ENV_KEY} is not set: pseudonyms hold within this output only", err=True)
    return deidentify(result, pseudonyms)


def exit_without_plans() -> None:
    """Exit 1 when no plan could be read, saying so."""
    echo(NO_PLAN, err=True)
    raise SystemExit(1)


# `rtcode scan --deidentify`, word for word, for the other commands that offer it.
deidentify_option = click.option(
    "--deidentify",
    is_flag=True,
    help="Replace patient names, IDs, dates and UIDs with stable pseudonyms (keyed by"
    " RTCODE_DEIDENTIFY_KEY), for output that leaves the department.",
)
