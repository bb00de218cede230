"""The coding policy: a versioned TOML file, loaded and validated with clear errors.

Policies are data, parsed as TOML only (never executed). Every key the classifier
reads is declared in ``SCHEMA`` with its type and allowed values; a file with an
unknown, missing or ill-typed key fails to load with a message naming the key, the
value found and what is allowed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rtcode.coding import sections
from rtcode.model.errors import PolicyError
from rtcode.model.limits import Limits

AUDIT_SEVERITIES = ("error", "warning", "info")  # of an audit finding, most severe first

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_CODES = ("77295", "77301", "77306", "77307")


Check = Callable[[Any], "str | None"]  # a setting's check: None, or what it must be


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


def _number(lo: float | None = None, hi: float | None = None, integer: bool = False) -> Check:
    def check(value: Any) -> str | None:
        kind = "a whole number" if integer else "a number"
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            return kind
        if not math.isfinite(value):  # TOML allows nan and inf: never a threshold
            return f"{kind}, finite (not nan or inf)"
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = f" from {lo} to {hi}" if hi is not None else f" of at least {lo}"
            return kind + bounds
        return None

    return check


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "a non-empty string"


def _one_of(*allowed: str) -> Check:
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
    "modulation.closed_leaf_gap_mm": _number(0),
    "modulation.fif_nested_max_outside_share": _number(0, 1),
    "modulation.fif_modulated_min_outside_share": _number(0, 1),
    "modulation.arc_min_gantry_travel_deg": _number(0, 360),
    "modulation.vmat_min_mu_per_degree_cv": _number(0),
    "modulation.arc_aperture_change_mm": _number(0),
    "modulation.dca_min_convexity": _number(0, 1),
    "modulation.small_aperture_width_mm": _number(0),
    "modulation.pencil_beam_scanning_code": _one_of(*_CODES),
    "modulation.compensator_is_imrt": _boolean,
    "isodose.rectangular_mlc_is_unmodified": _boolean,
    "isodose.rectangle_tolerance_mm": _number(0),
    "isodose.corner_leaves_max_area_share": _number(0, 1),
    "isodose.corner_leaves_max_extent_share": _number(0, 0.5),
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
    "roles.helper_name_patterns": _regex_list,
    "roles.name_may_promote_types": _str_list,
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
    "limits.max_control_points_per_plan": _number(2, integer=True),
    "limits.max_data_elements": _number(1, integer=True),
}


def _device_tiers(value: Any) -> str | None:
    allowed = ("77332", "77333", "77334", "")
    kinds = ("wedge", "block", "electron_cutout", "mlc_aperture", "compensator", "bolus")
    if not isinstance(value, dict):
        return "a table of device kind = code"
    for kind, code in value.items():
        if kind not in kinds:
            return "a table whose keys are " + ", ".join(kinds) + f" (found {kind!r})"
        if code not in allowed:
            return f'codes 77332, 77333, 77334 or "" (not reported); {kind} = {code!r}'
    return None


SCHEMA.update(
    {
        "electron.plan_code": _one_of("77307", "77321"),
        "related.max_basic_dosimetry_per_date": _number(1, integer=True),
        "related.sbrt_max_fractions": _number(1, integer=True),
        "devices.tier": _device_tiers,
        "imrt.require_inverse_planning_evidence": _boolean,
        "bundling.imrt_bundles": _str_list,
    }
)

# [audit]: billed charges against plans (rtcode audit). The finding kinds are those of
# rtcode/audit/findings.py; every kind needs a severity so no finding is ever left unranked.
AUDIT_FINDING_KINDS = (
    "billed_not_supported",
    "expected_not_billed",
    "code_higher_than_plan",
    "code_lower_than_plan",
    "bundled_pair",
    "frequency",
    "charge_before_approval",
    "charge_timing_unverifiable",
    "needs_documentation",
    "ncci_ptp",
    "code_not_in_force",
    "plan_versions_differ",
    "supported_only_by_unapproved_plan",
)
AUDIT_CHARGE_FIELDS = ("patient_id", "date_of_service", "cpt", "units", "modifiers", "plan", "fee")


def _audit_severities(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "a table of finding kind = severity"
    for kind, severity in value.items():
        if kind not in AUDIT_FINDING_KINDS:
            return "a table whose keys are " + ", ".join(AUDIT_FINDING_KINDS) + f" (found {kind!r})"
        if severity not in AUDIT_SEVERITIES:
            return f'"error", "warning" or "info" for each kind; {kind} = {severity!r}'
    missing = [k for k in AUDIT_FINDING_KINDS if k not in value]
    return f"a severity for every finding kind (missing: {', '.join(missing)})" if missing else None


def _audit_columns(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "a table of field = column name"
    for key, name in value.items():
        if key not in AUDIT_CHARGE_FIELDS:
            return "a table whose keys are " + ", ".join(AUDIT_CHARGE_FIELDS) + f" (found {key!r})"
        if not isinstance(name, str) or not name.strip():
            return f"a non-empty column name for each field; {key} = {name!r}"
    return None


SCHEMA.update(
    {
        "audit.course_window_days": _number(0, 3650, integer=True),
        "audit.same_course_relationships": _str_list,
        "audit.verification_relationships": _str_list,
        "audit.needs_documentation_codes": _str_list,
        "audit.ptp_bypass_modifiers": _str_list,
        "audit.severity": _audit_severities,
        "audit.columns": _audit_columns,
    }
)

# [dvh]: what rtcode report shows of a dose-volume histogram and when a DVH it computes
# agrees with the one stored in the RT Dose (rtcode/measure/dvh.py DvhSettings.from_policy).


def _doses_gy(value: Any) -> str | None:
    allowed = "a list of one or more distinct doses in Gy (numbers of at least 0)"
    if not isinstance(value, list) or not value:
        return allowed
    for dose in value:
        number = isinstance(dose, (int, float)) and not isinstance(dose, bool)
        if not number or not math.isfinite(dose) or dose < 0:
            return f"{allowed}; {dose!r} is not one"
    if len({float(dose) for dose in value}) != len(value):
        return f"{allowed}; a dose is listed twice"
    return None


def _percent(value: Any) -> str | None:
    ok = _number(0, 100)(value) is None and math.isfinite(value)
    return None if ok else "a number from 0 to 100 (per cent)"


SCHEMA.update(
    {
        "dvh.v_values_gy": _doses_gy,
        "dvh.agreement_mean_dose_pct": _percent,
        "dvh.agreement_d95_pct": _percent,
        "dvh.truncated_last_bin_pct": _percent,
        "dvh.max_d95_prescription_difference_pct": _percent,
        "dvh.min_dose_voxels": _number(0, integer=True),
        "dvh.max_volume_difference_pct": _percent,
    }
)
OPTIONAL = {"policy.extends": _text}
# Pairs of settings of which the first may not exceed the second: the ends of a range.
ORDERED = (
    ("modulation.fif_nested_max_outside_share", "modulation.fif_modulated_min_outside_share"),
)


@dataclass(frozen=True)
class Policy:
    """A validated policy. The rules read its typed sections, built at load:
    ``p.isodose.max_simple_ports``; ``p["isodose.max_simple_ports"]`` reads the same
    value by its dotted key (what the file says).

    ``validity`` maps a code to its first and last valid day (None: open-ended).
    ``sha256`` identifies the effective settings (after ``extends``), so two files
    that say the same thing hash the same.
    """

    values: Mapping[str, Any]
    source: str
    sha256: str
    validity: Mapping[str, tuple[dt.date | None, dt.date | None]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    # The typed sections (rtcode/coding/sections.py), built from ``values``.
    intent: sections.Intent = field(init=False, repr=False, compare=False)
    beams: sections.Beams = field(init=False, repr=False, compare=False)
    modulation: sections.Modulation = field(init=False, repr=False, compare=False)
    electron: sections.Electron = field(init=False, repr=False, compare=False)
    isodose: sections.Isodose = field(init=False, repr=False, compare=False)
    three_d: sections.ThreeD = field(init=False, repr=False, compare=False)
    roles: sections.Roles = field(init=False, repr=False, compare=False)
    brachytherapy: sections.Brachytherapy = field(init=False, repr=False, compare=False)
    approval: sections.Approval = field(init=False, repr=False, compare=False)
    limits: Limits = field(init=False, repr=False, compare=False)
    related: sections.Related = field(init=False, repr=False, compare=False)
    devices: sections.Devices = field(init=False, repr=False, compare=False)
    imrt: sections.Imrt = field(init=False, repr=False, compare=False)
    bundling: sections.Bundling = field(init=False, repr=False, compare=False)
    audit: sections.Audit = field(init=False, repr=False, compare=False)
    dvh: sections.Dvh = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for cls in sections.SECTIONS:
            object.__setattr__(self, sections.section_name(cls), sections.build(cls, self.values))

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def __reduce__(self) -> tuple[Any, ...]:
        # read-only mappings do not pickle: send plain dicts to workers
        return (
            _unpickle_policy,
            (dict(self.values), self.source, self.sha256, dict(self.validity)),
        )

    @property
    def name(self) -> str:
        return str(self.values["policy.name"])

    @property
    def version(self) -> str:
        return str(self.values["policy.version"])

    def summary(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}

    def to_toml(self) -> str:
        """The effective policy as TOML (what ``rtcode policy show`` prints)."""
        lines = [f"# effective policy from {self.source}, sha256 {self.sha256}"]
        section = None
        for key in sorted(self.values, key=_section_order):
            head, name = key.split(".", 1)
            if head != section:
                lines += ["", f"[{head}]"]
                section = head
            lines.append(f"{name} = {_toml_value(self.values[key])}")
        if self.validity:
            lines += ["", "[validity]"]
            for code, (start, end) in sorted(self.validity.items()):
                pair = [start.isoformat() if start else "", end.isoformat() if end else ""]
                lines.append(f"{code} = {_toml_value(pair)}")
        return "\n".join(lines) + "\n"


def _section_order(key: str) -> tuple[int, str]:
    order = [k.split(".")[0] for k in SCHEMA]
    head = key.split(".")[0]
    return (order.index(head) if head in order else len(order), key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


# The shipped policies, beside this module (as cache.build_id reads them): a file
# path, not importlib.resources, which costs a nightly rescan more than the read.
POLICIES = Path(__file__).resolve().parent.parent / "policies"


def builtin_names() -> list[str]:
    return sorted(p.name[:-5] for p in POLICIES.iterdir() if p.name.endswith(".toml"))


def load(name_or_path: str | Path = "default") -> Policy:
    """Load a shipped policy by name, or a TOML file by path."""
    text_name = str(name_or_path)
    path = Path(text_name)
    if path.suffix != ".toml" and text_name in builtin_names():
        data = (POLICIES / f"{text_name}.toml").read_bytes()
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


def parse(data: bytes, source: str, _seen: tuple[str, ...] = ()) -> Policy:
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"{source}: not valid TOML: {exc}") from None
    validity_doc = doc.pop("validity", {})
    flat: dict[str, Any] = {}
    for section, table in doc.items():
        if not isinstance(table, dict):
            raise PolicyError(f"{source}: top-level key {section!r} must be a [section] table")
        for key, value in table.items():
            flat[f"{section}.{key}"] = value
    unknown = sorted(set(flat) - set(SCHEMA) - set(OPTIONAL))
    if unknown:
        raise PolicyError(
            f"{source}: unknown setting {unknown[0]!r}; known settings in that section: "
            + ", ".join(k for k in SCHEMA if k.split(".")[0] == unknown[0].split(".")[0])
        )
    validity = _validity(validity_doc, source)
    base_name = flat.pop("policy.extends", None)
    if base_name is not None:
        if not isinstance(base_name, str) or base_name not in builtin_names():
            raise PolicyError(
                f"{source}: policy.extends = {base_name!r} is not allowed; it must be one of"
                " the shipped policies: " + ", ".join(builtin_names())
            )
        if base_name in _seen:
            raise PolicyError(f"{source}: policy.extends makes a loop: {' -> '.join(_seen)}")
        base_data = (POLICIES / f"{base_name}.toml").read_bytes()
        base = parse(base_data, f"builtin:{base_name}", (*_seen, base_name))
        flat = {**base.values, **flat}
        validity = {**base.validity, **validity}
    missing = [k for k in SCHEMA if k not in flat]
    if missing:
        raise PolicyError(f"{source}: setting {missing[0]!r} is missing")
    for key, check in SCHEMA.items():
        problem = check(flat[key])
        if problem:
            raise PolicyError(
                f"{source}: {key} = {flat[key]!r} is not allowed; it must be {problem}"
            )
    for low, high in ORDERED:
        if flat[low] > flat[high]:
            raise PolicyError(
                f"{source}: {low} = {flat[low]!r} is not allowed; it must be at most"
                f" {high} ({flat[high]!r})"
            )
    canonical = json.dumps(
        {
            "values": flat,
            "validity": {k: [str(a), str(b)] for k, (a, b) in sorted(validity.items())},
        },
        sort_keys=True,
        default=str,
    )
    return Policy(
        MappingProxyType(flat),
        source,
        hashlib.sha256(canonical.encode()).hexdigest(),
        MappingProxyType(validity),
    )


def _validity(table: Any, source: str) -> dict[str, tuple[dt.date | None, dt.date | None]]:
    if not isinstance(table, dict):
        raise PolicyError(f"{source}: [validity] must be a table of code = [first day, last day]")
    out: dict[str, tuple[dt.date | None, dt.date | None]] = {}
    for code, window in table.items():
        where = f"{source}: validity.{code} = {window!r} is not allowed;"
        if not (isinstance(window, list) and len(window) == 2):
            raise PolicyError(f'{where} it must be [first day, last day] ("" for open)')
        days: list[dt.date | None] = []
        for text in window:
            if not isinstance(text, str):
                raise PolicyError(f'{where} days must be strings like "2026-01-01" or ""')
            if not text:
                days.append(None)
                continue
            try:
                days.append(dt.date.fromisoformat(text))
            except ValueError:
                raise PolicyError(f"{where} {text!r} is not an ISO date (YYYY-MM-DD)") from None
        if days[0] and days[1] and days[1] < days[0]:
            raise PolicyError(f"{where} the last day is before the first")
        out[str(code)] = (days[0], days[1])
    return out


def _unpickle_policy(
    values: dict[str, Any],
    source: str,
    sha256: str,
    validity: dict[str, tuple[dt.date | None, dt.date | None]],
) -> Policy:
    return Policy(MappingProxyType(values), source, sha256, MappingProxyType(validity))
