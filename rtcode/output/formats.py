"""The scan output formats (table, json, jsonl, csv) in one registry, and the one path
that writes them: each coded plan is rendered once for every format into a ``PlanRow``
(by the worker that codes it; the scan cache keeps it), and a ``ScanWriter`` writes the
rows of the chosen format as they come, then the scan's errors and counts.

A new format is one ``ScanFormat`` subclass added to ``FORMATS``.
"""

from __future__ import annotations

import sys
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import click

from rtcode import __version__
from rtcode.coding.policy import Policy
from rtcode.model.facts import Tally
from rtcode.output.files import AtomicFile, Target
from rtcode.output.jsontext import dumps, indented
from rtcode.output.render import (
    ADVISORY,
    csv_row,
    csv_text,
    plan_json,
    scan_summary,
    skipped_json,
    table_details,
    table_row,
    table_text,
)
from rtcode.output.terminal import DEFAULT_COLUMNS, columns

if TYPE_CHECKING:
    from rtcode.model.results import PlanResult


class Writes(Protocol):
    """Where a format's text goes (an ``Output``, a text stream)."""

    def write(self, text: str, /) -> Any: ...


class Output:
    """Where a scan's text goes: standard output, or a file written atomically (opened
    at once, renamed into place by ``commit``, removed by ``discard``)."""

    def __init__(self, target: Target | None) -> None:
        self.file: AtomicFile | None = None
        if target is not None and not target.stdout:
            self.file = target.open()

    def write(self, text: str) -> None:
        if self.file is None:
            click.echo(text, nl=False)  # flushed: a jsonl line is out as soon as written
        else:
            self.file.write(text)

    def commit(self) -> None:
        if self.file is not None:
            file, self.file = self.file, None
            file.commit()

    def discard(self) -> None:
        if self.file is not None:
            file, self.file = self.file, None
            file.discard()


class ScanFormat:
    """One scan format: what it keeps of each plan (``part``, made once by the worker
    that codes the plan), how it writes those parts, and how its output ends."""

    name: ClassVar[str]

    def __init__(self, out: Writes) -> None:
        self.out = out

    @staticmethod
    def part(result: PlanResult, data: dict[str, Any], policy: Policy) -> Any:
        """What this format needs of one plan; ``data`` is the plan's ``plan_json``."""
        raise NotImplementedError

    def add(self, part: Any) -> None:
        """One plan's part, in scan order."""
        raise NotImplementedError

    def end(self, tally: Tally, plans: int, interrupted: bool, policy: Policy) -> None:
        """After the last plan: the rest of the output."""
        raise NotImplementedError


class JsonlFormat(ScanFormat):
    """One JSON record per line: each plan as it comes, then errors, skipped files and
    the summary (``jsonl_tail``)."""

    name = "jsonl"

    @staticmethod
    def part(result: PlanResult, data: dict[str, Any], policy: Policy) -> str:
        return dumps({"record": "plan", **data})

    def add(self, part: str) -> None:
        self.out.write(part + "\n")

    def end(self, tally: Tally, plans: int, interrupted: bool, policy: Policy) -> None:
        for record in jsonl_tail(tally, plans, interrupted, policy):
            self.out.write(dumps(record) + "\n")


class JsonFormat(ScanFormat):
    """One JSON document (2-space indent). Its summary, which counts the plans, comes
    before them: the plans' texts are kept until the end, then the document is written
    member by member."""

    name = "json"

    def __init__(self, out: Writes) -> None:
        super().__init__(out)
        self.plans: list[str] = []

    @staticmethod
    def part(result: PlanResult, data: dict[str, Any], policy: Policy) -> bytes:
        # indented once here, by the worker: a rescan from the cache only joins texts.
        # Compressed (a third of the text is indentation): five times smaller in the
        # cache and in a replay's memory, for 0.1 ms per plan each way
        return zlib.compress(indented(data, "    ").encode("utf-8", "surrogatepass"), 1)

    def add(self, part: bytes) -> None:
        self.plans.append(zlib.decompress(part).decode("utf-8", "surrogatepass"))

    def end(self, tally: Tally, plans: int, interrupted: bool, policy: Policy) -> None:
        write = self.out.write
        write("{\n")
        _member(write, "rtcode_version", __version__)
        _member(write, "advisory", ADVISORY)
        _member(write, "policy", policy.summary())
        _member(write, "summary", scan_summary(tally, plans, interrupted))
        if self.plans:
            write('  "plans": [\n    ')
            write(",\n    ".join(self.plans))
            write("\n  ],\n")
        else:
            write('  "plans": [],\n')
        _member(write, "errors", [{"path": e.path, "error": e.error} for e in tally.errors])
        _member(write, "skipped", [skipped_json(s) for s in tally.skipped], last=True)
        write("}\n")
        self.plans = []


def _member(write: Any, key: str, value: Any, last: bool = False) -> None:
    """One member of the json document's top-level object, as ``dumps(indent=2)``
    writes it."""
    write(f"  {dumps(key)}: {indented(value, '  ')}" + ("\n" if last else ",\n"))


class CsvFormat(ScanFormat):
    """One spreadsheet-safe row per plan under ``CSV_COLUMNS``."""

    name = "csv"

    def __init__(self, out: Writes) -> None:
        super().__init__(out)
        self.rows: list[list[str]] = []

    @staticmethod
    def part(result: PlanResult, data: dict[str, Any], policy: Policy) -> list[str]:
        return csv_row(result, policy)

    def add(self, part: list[str]) -> None:
        self.rows.append(part)

    def end(self, tally: Tally, plans: int, interrupted: bool, policy: Policy) -> None:
        self.out.write(csv_text(self.rows))
        self.rows = []


class TableFormat(ScanFormat):
    """For people: one line per plan in ``width`` columns, then each plan's reasons
    (``details``: always, never, or None: when the scan found one plan), then the
    counts; escaped for the terminal."""

    name = "table"

    def __init__(self, out: Writes) -> None:
        super().__init__(out)
        self.rows: list[tuple[str, ...]] = []
        self.details: list[list[str]] = []
        self.width = DEFAULT_COLUMNS
        self.show_details: bool | None = None

    @staticmethod
    def part(
        result: PlanResult, data: dict[str, Any], policy: Policy
    ) -> tuple[tuple[str, ...], list[str]]:
        return table_row(result), table_details(result)

    def add(self, part: tuple[tuple[str, ...], list[str]]) -> None:
        self.rows.append(part[0])
        self.details.append(part[1])

    def end(self, tally: Tally, plans: int, interrupted: bool, policy: Policy) -> None:
        show = self.show_details if self.show_details is not None else len(self.rows) == 1
        self.out.write(
            table_text(
                self.rows,
                self.details,
                tally,
                interrupted,
                policy,
                width=self.width,
                show_details=show,
            )
        )
        self.rows, self.details = [], []


FORMATS: dict[str, type[ScanFormat]] = {
    f.name: f for f in (TableFormat, JsonFormat, CsvFormat, JsonlFormat)
}


@dataclass(frozen=True)
class PlanRow:
    """One coded plan rendered for every scan format (``parts``: format name -> what
    that format keeps), small enough to keep per plan and to cache: the plan's facts
    and arrays are not kept."""

    parts: dict[str, Any]


def plan_row(result: PlanResult, policy: Policy) -> PlanRow:
    """The plan rendered for every format in ``FORMATS`` (run by the workers)."""
    data = plan_json(result, policy)
    return PlanRow({name: f.part(result, data, policy) for name, f in FORMATS.items()})


def plan_row_and_result(result: PlanResult, policy: Policy) -> tuple[PlanRow, PlanResult]:
    """``plan_row`` and the result it was made from, for a scan that needs every plan's
    result at the end too (the department overview) and still writes rows as they come."""
    return plan_row(result, policy), result


def _stdout_is_terminal() -> bool:
    try:
        return sys.stdout is not None and sys.stdout.isatty()
    except ValueError:  # closed
        return False


def jsonl_tail(tally: Tally, plans: int, interrupted: bool, policy: Policy) -> list[dict[str, Any]]:
    """The records a jsonl scan ends with, after its plans: each error, each file
    skipped (images are counted in the summary), then the summary."""
    errors = [{"record": "error", "path": e.path, "error": e.error} for e in tally.errors]
    errors += [{"record": "skipped", **skipped_json(s)} for s in tally.skipped]
    summary = {
        "record": "summary",
        "rtcode_version": __version__,
        "policy": policy.summary(),
        **scan_summary(tally, plans, interrupted),
    }
    return [*errors, summary]


class ScanWriter:
    """A scan's output in one format: ``add`` each plan's ``PlanRow`` in scan order,
    then ``finish``; ``discard`` if the scan failed (a file output is left as it was)."""

    def __init__(self, fmt: str, target: Target | None, *, details: bool | None = None) -> None:
        """``details`` (the table's): each plan's reasons always (True), never (False)
        or when the scan found one plan (None). The table is as wide as the terminal it
        is written to, else as ``COLUMNS`` says, else ``DEFAULT_COLUMNS``."""
        self.output = Output(target)
        self.format = FORMATS[fmt](self.output)
        if isinstance(self.format, TableFormat):
            self.format.show_details = details
            self.format.width = columns(self.output.file is None and _stdout_is_terminal())
        self.plans = 0

    def add(self, row: PlanRow) -> None:
        self.plans += 1
        self.format.add(row.parts[self.format.name])

    def finish(self, tally: Tally, interrupted: bool, policy: Policy) -> None:
        try:
            self.format.end(tally, self.plans, interrupted, policy)
            self.output.commit()
        except BaseException:
            self.output.discard()
            raise

    def discard(self) -> None:
        self.output.discard()
