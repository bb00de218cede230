"""The pipeline: read -> extract -> link -> measure and classify.

One bad file never stops the batch: each file's problem becomes one entry in
``errors`` with its path and a sentence a person understands.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from . import read as reader
from .classify import Classification, classify
from .errors import RtcodeError
from .extract import extract
from .facts import Dose, Inventory, Plan, ReadError, StructureSet
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

    @property
    def errors(self) -> list[ReadError]:
        return self.inventory.errors


def collect(inputs: Iterable[str | os.PathLike[str]]) -> Inventory:
    """Walk the inputs and extract the facts of every RT object found."""
    inv = Inventory()
    for entry in reader.walk(inputs):
        if isinstance(entry, reader.WalkError):
            inv.errors.append(ReadError(entry.display, entry.error))
            continue
        inv.files_seen += 1
        result = reader.read(entry)
        if result.kind == "error":
            inv.errors.append(ReadError(result.display, result.error or "unreadable"))
        elif result.kind == "image":
            inv.images_skipped += 1
        elif result.kind == "other_dicom":
            inv.other_dicom_skipped += 1
        elif result.kind == "not_dicom":
            inv.non_dicom_skipped += 1
        else:
            assert result.dataset is not None and result.modality is not None
            try:
                facts = extract(
                    result.dataset, result.modality, result.display, result.has_pixel_data
                )
            except RtcodeError as exc:
                inv.errors.append(ReadError(result.display, str(exc)))
                continue
            except Exception as exc:  # a file shaped in a way we did not foresee
                inv.errors.append(
                    ReadError(
                        result.display, f"could not interpret the file: {type(exc).__name__}: {exc}"
                    )
                )
                continue
            if isinstance(facts, Plan):
                inv.plans.append(facts)
            elif isinstance(facts, StructureSet):
                inv.structure_sets.append(facts)
            elif isinstance(facts, Dose):
                inv.doses.append(facts)
    return inv


def scan(
    inputs: Iterable[str | os.PathLike[str]],
    policy: Policy,
    date_override: dt.date | None = None,
) -> ScanResult:
    inv = collect(inputs)
    result = ScanResult(policy=policy, inventory=inv)
    for lp in link(inv):
        try:
            c = classify(lp, policy)
            day = date_of_service(lp, date_override)
            related = related_codes(lp, c, policy, day)
            result.plans.append(PlanResult(lp, c, related, day))
        except Exception as exc:  # never lose the batch to one plan
            inv.errors.append(
                ReadError(lp.plan.path, f"could not classify the plan: {type(exc).__name__}: {exc}")
            )
    return result
