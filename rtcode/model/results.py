"""The result of coding one plan and of a whole scan: what every renderer reads."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rtcode.model.codes import Classification
from rtcode.model.facts import Inventory, ReadError

if TYPE_CHECKING:  # annotations only: these are made by later steps
    from rtcode.coding.policy import Policy
    from rtcode.coding.related import RelatedCode
    from rtcode.link import LinkedPlan


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
