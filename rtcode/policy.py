"""The coding policy: a versioned TOML file, loaded and validated with clear errors.

Policies are data, parsed as TOML only (never executed). Every key the classifier
reads is declared in ``SCHEMA`` with its type and allowed values; a file with an
unknown, missing or ill-typed key fails to load with a message naming the key, the
value found and what is allowed.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import PolicyError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_CODES = ("77295", "77301", "77306", "77307")


def _str_list(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return "a list of strings"
    return None


def _regex_list(value: Any) -> str | None:
    if _str_list(value):
        return "a list of regular expressions (strings)"
    for pattern in value:
        try:
            re.compile(pattern)
        except re.error as exc:
            return f"valid regular expressions ({pattern!r}: {exc})"
    return None


def _number(lo: float | None = None, hi: float | None = None, integer: bool = False):
    def check(value: Any) -> str | None:
        kind = "a whole number" if integer else "a number"
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            return kind
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = f" from {lo} to {hi}" if hi is not None else f" of at least {lo}"
            return kind + bounds
        return None

    return check


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "a non-empty string"


def _one_of(*allowed: str):
    def check(value: Any) -> str | None:
        return None if value in allowed else "one of " + ", ".join(repr(a) for a in allowed)

    return check


SCHEMA = {
    "policy.name": _text,
    "policy.version": _text,
    "policy.description": _text,
    "intent.not_billable": _str_list,
    "beams.treatment_delivery_types": _str_list,
    "beams.min_meterset_mu": _number(0),
    "modulation.dynamic_leaf_travel_mm": _number(0),
    "modulation.segment_tolerance_mm": _number(0),
    "modulation.fif_max_segments": _number(1, integer=True),
    "modulation.fif_min_main_segment_mu_fraction": _number(0, 1),
    "modulation.fif_inside_tolerance_mm": _number(0),
    "modulation.arc_min_gantry_travel_deg": _number(0, 360),
    "modulation.vmat_min_mu_per_degree_cv": _number(0),
    "modulation.arc_aperture_change_mm": _number(0),
    "modulation.dca_min_convexity": _number(0, 1),
    "modulation.small_aperture_width_mm": _number(0),
    "modulation.pencil_beam_scanning_code": _one_of(*_CODES),
    "isodose.rectangular_mlc_is_unmodified": _boolean,
    "isodose.rectangle_tolerance_mm": _number(0),
    "isodose.bolus_is_modifier": _boolean,
    "isodose.electron_cutout_is_modifier": _boolean,
    "isodose.dynamic_wedge_is_modifier": _boolean,
    "isodose.max_simple_ports": _number(1, integer=True),
    "isodose.same_area_isocentre_distance_mm": _number(0),
    "isodose.couch_rotation_min_deg": _number(0, 180),
    "isodose.tangent_opposed_tolerance_deg": _number(0, 90),
    "isodose.tangent_min_oblique_deg": _number(0, 45),
    "three_d.min_targets": _number(1, integer=True),
    "three_d.min_organs_at_risk": _number(0, integer=True),
    "three_d.accept_dose_grid_as_dvh_evidence": _boolean,
    "three_d.missing_companion_demotes": _boolean,
    "roles.target_types": _str_list,
    "roles.organ_types": _str_list,
    "roles.external_types": _str_list,
    "roles.target_name_patterns": _regex_list,
    "roles.organ_name_patterns": _regex_list,
    "brachytherapy.simple_max_channels": _number(1, integer=True),
    "brachytherapy.intermediate_max_channels": _number(1, integer=True),
    "brachytherapy.simple_max_sources": _number(1, integer=True),
    "brachytherapy.intermediate_max_sources": _number(1, integer=True),
    "approval.flag_statuses": _str_list,
    "limits.max_file_size_mb": _number(1),
    "limits.max_beams": _number(1, integer=True),
    "limits.max_control_points_per_beam": _number(2, integer=True),
    "limits.max_leaf_pairs": _number(1, integer=True),
    "limits.max_meterset_mu": _number(1),
}


@dataclass(frozen=True)
class Policy:
    """A validated policy: look values up by dotted key, e.g. ``p["isodose.max_simple_ports"]``."""

    values: Mapping[str, Any]
    source: str
    sha256: str

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def name(self) -> str:
        return self.values["policy.name"]

    @property
    def version(self) -> str:
        return self.values["policy.version"]

    def summary(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


def builtin_names() -> list[str]:
    folder = resources.files("rtcode") / "policies"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load(name_or_path: str | Path = "default") -> Policy:
    """Load a shipped policy by name, or a TOML file by path."""
    text_name = str(name_or_path)
    path = Path(text_name)
    if path.suffix != ".toml" and text_name in builtin_names():
        data = (resources.files("rtcode") / "policies" / f"{text_name}.toml").read_bytes()
        return parse(data, f"builtin:{text_name}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        names = ", ".join(builtin_names())
        raise PolicyError(
            f"cannot read policy {text_name!r}: {exc.strerror or exc};"
            f" give a TOML file or one of the shipped policies: {names}"
        ) from None
    return parse(data, text_name)


def parse(data: bytes, source: str) -> Policy:
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"{source}: not valid TOML: {exc}") from None
    flat: dict[str, Any] = {}
    for section, table in doc.items():
        if not isinstance(table, dict):
            raise PolicyError(f"{source}: top-level key {section!r} must be a [section] table")
        for key, value in table.items():
            flat[f"{section}.{key}"] = value
    unknown = sorted(set(flat) - set(SCHEMA))
    if unknown:
        raise PolicyError(
            f"{source}: unknown setting {unknown[0]!r}; known settings in that section: "
            + ", ".join(k for k in SCHEMA if k.split(".")[0] == unknown[0].split(".")[0])
        )
    missing = [k for k in SCHEMA if k not in flat]
    if missing:
        raise PolicyError(f"{source}: setting {missing[0]!r} is missing")
    for key, check in SCHEMA.items():
        problem = check(flat[key])
        if problem:
            raise PolicyError(
                f"{source}: {key} = {flat[key]!r} is not allowed; it must be {problem}"
            )
    return Policy(MappingProxyType(flat), source, hashlib.sha256(data).hexdigest())
