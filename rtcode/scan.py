"""The pipeline: read -> extract -> link -> measure and classify.

One bad file never stops the batch: each file's problem becomes one entry in
``errors`` with its path and a sentence a person understands. Limits from the
policy's ``[limits]`` section go to the reader (file size) and the extractor
(counts, meterset). Ctrl-C (KeyboardInterrupt) ends the scan early: ``scan`` raises
``ScanInterrupted``, still a KeyboardInterrupt for callers that only want to stop,
carrying what was done so far; ``rtcode scan`` reports that and exits 130.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from . import read as reader
from .classify import Classification, classify
from .errors import RtcodeError
from .extract import extract
from .facts import Dose, Inventory, Plan, ReadError, StructureSet
from .limits import Limits, default_limits
from .link import LinkedPlan, link
from .policy import Policy
from .related import RelatedCode, date_of_service, related_codes


@dataclass(frozen=True, eq=False)
class PlanResult:
    linked: LinkedPlan
    classification: Classification
    related: tuple[RelatedCode, ...] = ()
    date_of_service: dt.date | None = None


@dataclass
class ScanResult:
    policy: Policy
    plans: list[PlanResult] = field(default_factory=list)
    inventory: Inventory = field(default_factory=Inventory)
    # Ctrl-C: the result holds only the files read (and plans coded) before it; a plan
    # whose structure set or dose was not read yet may be coded lower than it should.
    interrupted: bool = False

    @property
    def errors(self) -> list[ReadError]:
        return self.inventory.errors


class ScanInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``scan``: ``result`` holds the files read and the plans coded
    before it, with ``interrupted`` set."""

    def __init__(self, result: ScanResult) -> None:
        super().__init__("the scan was interrupted")
        self.result = result


def collect(inputs: Iterable[str | os.PathLike[str]], limits: Limits | None = None) -> Inventory:
    """Walk the inputs and extract the facts of every RT object found.

    ``limits`` default to the shipped policy's. Ctrl-C propagates from here; ``scan``
    catches it and keeps what was read.
    """
    inv = Inventory()
    _collect_into(inv, inputs, limits if limits is not None else default_limits())
    return inv


def _collect_into(inv: Inventory, inputs: Iterable[str | os.PathLike[str]], limits: Limits) -> None:
    for entry in reader.walk(inputs):
        if isinstance(entry, reader.WalkError):
            inv.errors.append(ReadError(entry.display, entry.error))
            continue
        outcome = _one_file(entry, limits)
        # Recorded together, once the file is done: an interrupted file leaves no trace.
        inv.files_seen += 1
        if isinstance(outcome, ReadError):
            inv.errors.append(outcome)
        elif isinstance(outcome, Plan):
            inv.plans.append(outcome)
        elif isinstance(outcome, StructureSet):
            inv.structure_sets.append(outcome)
        elif isinstance(outcome, Dose):
            inv.doses.append(outcome)
        elif outcome == "image":
            inv.images_skipped += 1
        elif outcome == "other_dicom":
            inv.other_dicom_skipped += 1
        else:
            inv.non_dicom_skipped += 1


def _one_file(
    entry: reader.FileEntry, limits: Limits
) -> ReadError | Plan | StructureSet | Dose | str:
    """The one outcome of one file: its facts, an error, or the kind of file skipped."""
    try:
        result = reader.read(entry, limits)
    except Exception as exc:  # the reader should not raise; never lose the batch to it
        return ReadError(entry.display, f"could not read the file: {_unexpected(exc)}")
    if result.kind == "error":
        return ReadError(result.display, result.error or "the file could not be read")
    if result.kind != "rt":
        return result.kind
    if result.dataset is None or result.modality is None:
        return ReadError(result.display, "could not read the file: no data set came back")
    try:
        return extract(
            result.dataset, result.modality, result.display, result.has_pixel_data, limits
        )
    except RtcodeError as exc:
        return ReadError(result.display, str(exc))
    except Exception as exc:  # a file shaped in a way we did not foresee
        return ReadError(result.display, f"could not interpret the file: {_unexpected(exc)}")


def _unexpected(exc: BaseException) -> str:
    """A failure rtcode did not foresee, in words (no exception class names)."""
    text = " ".join(str(exc).split())[:160]
    detail = f" ({text})" if text else ""
    return f"rtcode does not handle something in it{detail}; please report this file"


def scan(
    inputs: Iterable[str | os.PathLike[str]],
    policy: Policy,
    date_override: dt.date | None = None,
) -> ScanResult:
    inv = Inventory()
    result = ScanResult(policy=policy, inventory=inv)
    try:
        _collect_into(inv, inputs, Limits.from_policy(policy))
    except KeyboardInterrupt:
        result.interrupted = True
    try:
        for lp in _link_in_input_order(inv):
            try:
                c = classify(lp, policy)
                day = date_of_service(lp, date_override)
                related = related_codes(lp, c, policy, day)
                result.plans.append(PlanResult(lp, c, related, day))
            except Exception as exc:  # never lose the batch to one plan
                inv.errors.append(
                    ReadError(lp.plan.path, f"could not classify the plan: {_unexpected(exc)}")
                )
    except KeyboardInterrupt:
        result.interrupted = True
    if result.interrupted:
        raise ScanInterrupted(result)
    return result


def _link_in_input_order(inv: Inventory) -> list[LinkedPlan]:
    """Link with every list sorted by path, so that which companion a plan gets (and
    the order of its notes) does not depend on the order the files were given in;
    the plans come back in the order they were found."""
    by_path = replace(
        inv,
        plans=sorted(inv.plans, key=lambda p: p.path),
        structure_sets=sorted(inv.structure_sets, key=lambda s: s.path),
        doses=sorted(inv.doses, key=lambda d: d.path),
    )
    linked = {id(lp.plan): lp for lp in link(by_path)}
    return [linked[id(p)] for p in inv.plans]
