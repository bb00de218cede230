"""What a coding decision is made of: categories, codes and our own short labels,
techniques, evidence, flags and the classification of one plan. Values only."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from rtcode.model.facts import Beam, Roi

if TYPE_CHECKING:  # annotation only: the metrics are measured a step later
    from rtcode.measure.metrics import BeamMetrics


class Category(str, Enum):
    SIMPLE_ISODOSE = "simple_isodose"
    COMPLEX_ISODOSE = "complex_isodose"
    THREE_D = "3d"
    IMRT = "imrt"
    BRACHYTHERAPY = "brachytherapy"
    SPECIAL_PORT = "special_port_plan"
    NOT_BILLABLE = "not_billable"
    UNDETERMINED = "undetermined"


# Our own short labels (the official descriptors belong to the AMA).
LABELS = {
    "77306": "simple isodose plan",
    "77307": "complex isodose plan",
    "77295": "3-D plan",
    "77301": "IMRT plan",
    "77321": "special teletherapy port plan",
    "77316": "brachytherapy isodose plan, simple",
    "77317": "brachytherapy isodose plan, intermediate",
    "77318": "brachytherapy isodose plan, complex",
}
CODE_CATEGORY = {
    "77306": Category.SIMPLE_ISODOSE,
    "77307": Category.COMPLEX_ISODOSE,
    "77295": Category.THREE_D,
    "77301": Category.IMRT,
}


class Technique(str, Enum):
    """How a beam delivers its dose, named as a physicist would."""

    OPEN = "open"
    CONFORMAL = "conformal"
    FIELD_IN_FIELD = "field_in_field"
    STEP_AND_SHOOT_IMRT = "step_and_shoot_imrt"
    SLIDING_WINDOW_IMRT = "sliding_window_imrt"
    VMAT = "vmat"
    DYNAMIC_CONFORMAL_ARC = "dynamic_conformal_arc"
    STATIC_ARC = "static_arc"
    HELICAL_TOMOTHERAPY = "helical_tomotherapy"
    ELECTRON = "electron"
    ION_PENCIL_BEAM_SCANNING = "ion_pencil_beam_scanning"
    ION_PASSIVE_SCATTERING = "ion_passive_scattering"
    STEREOTACTIC_CONE = "stereotactic_cone"
    GAMMA_KNIFE = "gamma_knife"
    COMPENSATOR_IMRT = "compensator_imrt"
    UNKNOWN = "unknown"


# Rotational deliveries (what counts as modulated is decided in coding/techniques.py).
ARCS = frozenset({Technique.VMAT, Technique.DYNAMIC_CONFORMAL_ARC, Technique.STATIC_ARC})


@dataclass(frozen=True)
class Evidence:
    rule: str
    fired: bool | None  # None: cannot be determined from the files
    finding: str
    dicom_path: str | None = None
    observed: Any = None
    threshold: Any = None
    setting: str | None = None  # the policy key the threshold came from


@dataclass(frozen=True)
class Flag:
    flag: str
    severity: str  # "warning" (a reviewer must check) or "info"
    message: str
    dicom_path: str | None = None  # the element the flag is about, when there is one


@dataclass(frozen=True)
class Alternative:
    code: str
    category: str
    condition: str


@dataclass(frozen=True, eq=False)
class BeamAssessment:
    beam: Beam
    metrics: BeamMetrics
    meterset_mu: float | None
    fraction_group: int | None
    counted: bool  # a treatment port
    excluded_reason: str | None
    technique: Technique
    technique_reason: str


@dataclass(frozen=True, eq=False)
class Classification:
    code: str | None
    category: Category
    confidence: str  # high, medium, low
    evidence: tuple[Evidence, ...]
    flags: tuple[Flag, ...]
    alternatives: tuple[Alternative, ...]
    beams: tuple[BeamAssessment, ...]
    targets: tuple[Roi, ...]
    organs_at_risk: tuple[Roi, ...]

    @property
    def label(self) -> str | None:
        return LABELS.get(self.code or "")

    def deciding_evidence(self) -> tuple[Evidence, ...]:
        """The evidence of the rule group that decided the code (what a summary shows)."""
        prefix = _DECIDING_RULES[self.category]
        if self.category is Category.UNDETERMINED and any(
            e.rule.startswith("brachy.") for e in self.evidence
        ):
            prefix = "brachy."  # a brachytherapy plan whose tier cannot be told
        fired = tuple(e for e in self.evidence if e.rule.startswith(prefix) and e.fired)
        if fired:
            return fired
        return tuple(e for e in self.evidence if e.rule.startswith(prefix))


_DECIDING_RULES = {
    Category.NOT_BILLABLE: "intent.",
    Category.BRACHYTHERAPY: "brachy.",
    Category.UNDETERMINED: "beams.",
    Category.IMRT: "imrt.",
    Category.THREE_D: "3d.",
    Category.COMPLEX_ISODOSE: "isodose.",
    Category.SIMPLE_ISODOSE: "isodose.port_count",
    Category.SPECIAL_PORT: "electron.",
}
