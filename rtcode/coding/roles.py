"""The role of a structure-set ROI (target, organ at risk, external, helper, other),
from its type and name and the policy's ``[roles]`` section."""

from __future__ import annotations

import re
from functools import lru_cache

from rtcode.coding.policy import Policy
from rtcode.coding.sections import Roles
from rtcode.model.facts import Roi, StructureSet


def roi_role(roi: Roi, policy: Policy) -> tuple[str, str]:
    """('target' | 'organ_at_risk' | 'external' | 'helper' | 'other', how it was decided:
    "type", "name" or "none"). ``role_reason`` says it in words."""
    role, how, _ = _role(roi.name, roi.interpreted_type, policy.roles)
    return role, how


def role_reason(roi: Roi, policy: Policy) -> str:
    """Why the ROI has its role, in words ("typed ORGAN, named like a target")."""
    return _role(roi.name, roi.interpreted_type, policy.roles)[2]


def rois_with_role(ss: StructureSet, role: str, policy: Policy) -> tuple[Roi, ...]:
    """The contoured ROIs of ``ss`` with that role (an ROI without contours does not count)."""
    return tuple(
        r for r in ss.rois if r.has_contours is not False and roi_role(r, policy)[0] == role
    )


def roi_list(rois: tuple[Roi, ...], policy: Policy) -> str:
    """ROIs in words, each with its type or why its name gave it its role."""
    if not rois:
        return "none"
    parts = []
    for r in rois:
        _, how = roi_role(r, policy)
        parts.append(
            f"{r.name} ({role_reason(r, policy)})"
            if how == "name"
            else f"{r.name} ({r.interpreted_type or 'no type'})"
        )
    return ", ".join(parts)


@lru_cache(maxsize=4096)
def _role(name: str | None, interpreted_type: str | None, roles: Roles) -> tuple[str, str, str]:
    """(role, how, why) from the ROI's name and type and the policy's role settings: a
    pure function of them, cached (a scan asks for the same few names again and again,
    in the rules and in the report).

    An explicit type decides, except that a name may promote an ROI whose type is
    missing or generic (``name_may_promote_types``: Monaco types every ROI ORGAN, PTVs
    included); a type such as ISOCENTER, MARKER, CONTROL or BOLUS is never overridden by
    a name. Helper structures (rings, walls, optimisation copies, expansions: the
    ``helper_name_patterns``) are neither targets nor organs at risk, whatever their type.
    """
    name = (name or "").strip()
    rtype = (interpreted_type or "").upper()
    typed = f"typed {rtype}" if rtype else "no type"
    if any(re.search(p, name, re.IGNORECASE) for p in roles.helper_name_patterns):
        return (
            "helper",
            "name",
            f"{typed}, named like a helper structure (ring, wall, optimisation)",
        )
    if rtype in roles.target_types:
        return "target", "type", typed
    promotable = not rtype or rtype in roles.name_may_promote_types
    target_like = any(re.match(p, name, re.IGNORECASE) for p in roles.target_name_patterns)
    if target_like and promotable:
        return "target", "name", f"{typed}, named like a target"
    if rtype in roles.organ_types:
        return "organ_at_risk", "type", typed
    if rtype in roles.external_types:
        return "external", "type", typed
    if promotable and any(re.match(p, name, re.IGNORECASE) for p in roles.organ_name_patterns):
        return "organ_at_risk", "name", f"{typed}, named like an organ at risk"
    if target_like:
        return "other", "type", f"{typed}: a name does not override this type"
    return "other", "type" if rtype else "none", typed
