"""What the commands share: messages on standard error, the policy option's loading,
the check that every input path exists, the output guard's inputs and checks, the
options every command spells the same way (``--output``, ``--format`` order,
``--patient``, ``--since``, ``--until``, ``--jobs``, ``--quiet``, ``--deidentify``), the
plan filter, and running a whole scan."""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any, TypeVar

import click

from rtcode.coding import policy as policy_mod
from rtcode.engine import execute
from rtcode.engine import scan as engine_scan
from rtcode.model.errors import PolicyError
from rtcode.model.facts import ReadError
from rtcode.model.results import PlanResult, ScanResult
from rtcode.output.files import Inputs, Target, check
from rtcode.output.terminal import plural, shown

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


def load_policy(value: str, param_hint: str = "--policy") -> policy_mod.Policy:
    """The policy named by ``--policy`` (or by the argument ``param_hint`` names); a
    bad one is a usage error naming that option or argument."""
    try:
        return policy_mod.load(value)
    except PolicyError as exc:
        raise click.BadParameter(safe(str(exc)), param_hint=param_hint) from None


class InputMissing(click.ClickException):
    """An input path that does not exist or cannot be read: a usage error (exit status
    2), said in one line before anything is read or written."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"rtcode: {self.format_message()}", err=True)


def require_inputs(paths: Iterable[object], what: str = "input") -> None:
    """Every input path must exist and be readable before a command starts, so that an
    unmounted export folder in a nightly job fails loudly (exit status 2, one line
    naming the path) instead of giving an empty or partial result. Only ``Path``
    values are checked: DICOMweb URLs (kept as text) and ``-`` are not paths."""
    problems = []
    for p in paths:
        if isinstance(p, os.PathLike) and os.fspath(p) != "-":
            problem = _unreadable(os.fspath(p))
            if problem is not None:
                problems.append(f"{click.format_filename(os.fspath(p))} {problem}")
    if not problems:
        return
    where = f"{what} {problems[0]}" if len(problems) == 1 else f"{what}s " + "; ".join(problems)
    raise InputMissing(
        safe(where) + ": nothing was read (check the path and that its drive is mounted)"
    )


def _unreadable(path: str) -> str | None:
    """Why ``path`` cannot be read as an input, or None."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return "is a broken symbolic link" if os.path.islink(path) else "does not exist"
    except NotADirectoryError:
        return "does not exist (part of it is a file, not a folder)"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    except ValueError as exc:  # a NUL in the name
        return f"is not a usable path ({exc})"
    if not os.access(path, os.R_OK | (os.X_OK if os.path.isdir(path) else 0)):
        return "cannot be read (permission denied)"
    return None


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
    inputs: list[str],
    policy: policy_mod.Policy,
    day: dt.date | None = None,
    jobs: int = 1,
    progress: Callable[[str, object], None] | None = None,
) -> ScanResult:
    """A whole scan, for the commands that need every plan at once: in this process,
    or with ``jobs`` worker processes; ``progress`` hears the scan's events (see
    ``engine.scan.Scanner``). Ctrl-C raises ``ScanInterrupted``, as ``engine.scan.scan``."""
    if jobs <= 1 and progress is None:
        return engine_scan.scan(inputs, policy, day)
    runner = engine_scan.Runner(jobs=jobs)
    scanner = engine_scan.Scanner(policy, day, runner, progress)
    result = ScanResult(policy=policy, inventory=scanner.inventory)
    try:
        result.plans.extend(scanner.run(inputs))
    except KeyboardInterrupt:
        scanner.interrupted = True
        runner.close(interrupted=True)
    finally:
        runner.close()
    if scanner.interrupted:
        result.interrupted = True
        raise engine_scan.ScanInterrupted(result)
    return result


def jobs_for(jobs: int | None) -> int:
    """``--jobs``, or one worker per core; never more than the cores this process may
    use (more processes than cores only compete for them), with a note."""
    cores = execute.default_jobs()
    if jobs is None:
        return cores
    if jobs > cores:
        echo(
            f"rtcode: --jobs {jobs} is more than the {cores} core(s) this process may use:"
            f" starting {cores} worker(s)",
            err=True,
        )
        return cores
    return jobs


class PlanFilter:
    """``--patient``, ``--since`` and ``--until`` for local plans: which plans a command
    keeps, and how many it left out. Dates are the plan's date (RTPlanDate), not
    ``--date``; a plan without a readable date is left out when a date is given, and
    counted (``note``)."""

    def __init__(
        self,
        patients: Iterable[str] = (),
        since: dt.date | None = None,
        until: dt.date | None = None,
    ) -> None:
        if since is not None and until is not None and since > until:
            raise click.BadParameter(
                f"--since {since.isoformat()} is after --until {until.isoformat()}: no plan"
                " could match",
                param_hint="--since/--until",
            )
        self.patients = frozenset(patients)
        self.since = since
        self.until = until
        self.left_out = 0  # plans of other patients or dates
        self.undated = 0  # plans left out because they have no readable date

    @property
    def active(self) -> bool:
        return bool(self.patients) or self.since is not None or self.until is not None

    def keep(self, result: PlanResult) -> bool:
        """Whether the plan passes; counts it when it does not."""
        plan = result.linked.plan
        if self.patients and plan.patient_id not in self.patients:
            self.left_out += 1
            return False
        if self.since is None and self.until is None:
            return True
        # here: the coding step loads numpy, which a rescan from the cache never needs
        from rtcode.coding.related import date_of_service

        day = date_of_service(result.linked, None)  # the plan's own date, not --date
        if day is None:
            self.undated += 1
            return False
        if (self.since is not None and day < self.since) or (
            self.until is not None and day > self.until
        ):
            self.left_out += 1
            return False
        return True

    def note(self) -> str | None:
        """The line that says what was left out, or None."""
        if not self.active:
            return None
        parts = []
        if self.left_out:
            parts.append(f"{self.left_out} plan(s) of other patients or dates left out")
        if self.undated:
            parts.append(
                f"{self.undated} plan(s) without a plan date (RTPlanDate) left out by"
                " --since/--until"
            )
        return "rtcode: " + "; ".join(parts) if parts else None


def filter_of(
    patients: tuple[str, ...], since: dt.datetime | None, until: dt.datetime | None
) -> PlanFilter:
    """The ``PlanFilter`` of the shared options."""
    return PlanFilter(patients, day_of(since), day_of(until))


def deidentified(result: T) -> T:
    """The result with pseudonyms; says on standard error when they hold for this run only."""
    # here: de-identification imports numpy, which a rescan from the cache never loads
    from rtcode.output.deidentify import ENV_KEY, Pseudonyms, deidentify

    pseudonyms = Pseudonyms.from_environment()
    if not pseudonyms.stable:
        echo(f"rtcode: {ENV_KEY} is not set: pseudonyms hold within this output only", err=True)
    return deidentify(result, pseudonyms)


def exit_without_plans(select: PlanFilter | None = None) -> None:
    """Exit 1 when no plan could be read (or none passed ``select``), saying so."""
    left_out = select.left_out + select.undated if select is not None else 0
    if left_out:
        echo(
            f"rtcode: none of the {left_out} plan(s) read matches --patient, --since and --until",
            err=True,
        )
    else:
        echo(NO_PLAN, err=True)
    raise SystemExit(1)


# The order of --format choices in every command (each offers some of them).
FORMAT_ORDER = ("table", "json", "jsonl", "csv", "html")


def ordered_formats(names: Iterable[str]) -> list[str]:
    """A command's formats in ``FORMAT_ORDER`` (any other after them, by name)."""
    rank = {name: i for i, name in enumerate(FORMAT_ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


# The options every command spells the same way.
output_option = click.option(
    "--output",
    "-o",
    metavar="FILE",
    help="Write to this file (atomically) instead of standard output (-). Never an input,"
    " a file under a scanned folder, a device or a pipe.",
)
patient_option = click.option(
    "--patient",
    "patients",
    multiple=True,
    metavar="ID",
    help="Only this Patient ID (repeatable).",
)
since_option = click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    metavar="DATE",
    help="Only plans dated on or after DATE (YYYY-MM-DD, the plan's RTPlanDate); a plan"
    " without a date is left out and counted.",
)
until_option = click.option(
    "--until",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    metavar="DATE",
    help="Only plans dated on or before DATE (YYYY-MM-DD, the plan's RTPlanDate); a plan"
    " without a date is left out and counted.",
)
jobs_option = click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    help="Worker processes that read files and code plans (default: one per core; more"
    " than the cores this process may use are not started).",
)
quiet_option = click.option(
    "--quiet", "-q", is_flag=True, help="No progress line on standard error."
)

# The scan's --policy and --date, word for word, for the commands that code plans alike.
policy_option = click.option(
    "--policy",
    "policy_name",
    default="default",
    show_default=True,
    help="A shipped policy name or a policy TOML file.",
)
date_option = click.option(
    "--date",
    "date_of_service",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Date of service (YYYY-MM-DD) that selects the codes and rules in force;"
    " default: each plan's RTPlanDate.",
)

# `rtcode scan --deidentify`, word for word, for the other commands that offer it.
deidentify_option = click.option(
    "--deidentify",
    is_flag=True,
    help="Replace patient names, IDs, dates and UIDs with stable pseudonyms (keyed by"
    " RTCODE_DEIDENTIFY_KEY), for output that leaves the department.",
)


class Progress:
    """The scan's progress: one line on standard error, rewritten at most five times a
    second (when ``enabled``: a terminal, no --quiet). ``update`` hears the scan's
    events (``engine.scan.Scanner``; "done" forces the last counts out)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.start = time.monotonic()
        self.last = 0.0
        self.files = self.plans = self.errors = 0
        self.shown = False

    def update(self, event: str, item: object) -> None:
        if event == "file":
            self.files += 1
            if isinstance(item, ReadError):
                self.errors += 1
        elif event == "files":  # a count (a scan replayed from the cache)
            self.files += item if isinstance(item, int) else 0
        elif event == "plan":
            self.plans += 1
        elif event == "error":
            self.errors += 1
        self.show(self.counts(), force=event == "done")

    def counts(self) -> str:
        rate = self.files / max(time.monotonic() - self.start, 1e-9)
        return (
            f"{plural(self.files, 'file')}, {plural(self.plans, 'plan')} coded,"
            f" {rate:.0f} files/s, {plural(self.errors, 'error')}"
        )

    def show(self, text: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.2:
            return
        self.last = now
        sys.stderr.write(f"\r\x1b[K{text}")
        sys.stderr.flush()
        self.shown = True

    def end(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.shown = False
