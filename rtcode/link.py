"""Linking, after reading: each plan with its structure set and doses.

RT Dose -> plan by ReferencedRTPlanSequence; plan -> structure set by
ReferencedStructureSetSequence. Companions may be missing from the export. Several
files can share one SOPInstanceUID with different content: every plan file stays a
plan of its own, and where a reference could mean more than one file, the one in
the same folder is preferred and the ambiguity is noted.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass

from rtcode.model.facts import Dose, Inventory, Plan, StructureSet


@dataclass(frozen=True)
class LinkedPlan:
    plan: Plan
    structure_set: StructureSet | None
    # "linked", "not_referenced" (the plan names none) or "not_in_export"
    structure_set_status: str
    doses: tuple[Dose, ...]
    notes: tuple[str, ...]  # linking facts a reviewer should see (ambiguity, mismatches)
    duplicate_uid_paths: tuple[str, ...]  # other plan files with the same SOPInstanceUID


def link(inventory: Inventory) -> list[LinkedPlan]:
    ss_by_uid: dict[str, list[StructureSet]] = defaultdict(list)
    for each in inventory.structure_sets:
        if each.sop_instance_uid:
            ss_by_uid[each.sop_instance_uid].append(each)
    doses_by_plan: dict[str, list[Dose]] = defaultdict(list)
    for dose in inventory.doses:
        for uid in dict.fromkeys(dose.referenced_plan_uids):
            doses_by_plan[uid].append(dose)
    plans_by_uid: dict[str, list[Plan]] = defaultdict(list)
    for plan in inventory.plans:
        if plan.sop_instance_uid:
            plans_by_uid[plan.sop_instance_uid].append(plan)

    linked = []
    for plan in inventory.plans:
        notes: list[str] = []
        twins = tuple(
            p.path for p in plans_by_uid.get(plan.sop_instance_uid or "", []) if p is not plan
        )
        if twins:
            notes.append(
                f"{len(twins)} other plan file(s) share this SOPInstanceUID: " + ", ".join(twins)
            )
        ss: StructureSet | None = None
        status = "not_referenced"
        if plan.referenced_structure_set_uid:
            candidates = ss_by_uid.get(plan.referenced_structure_set_uid, [])
            status = "linked" if candidates else "not_in_export"
            if candidates:
                ss = _nearest(plan.path, candidates)
                if len(candidates) > 1:
                    notes.append(
                        f"{len(candidates)} structure set files share the referenced UID;"
                        f" used {ss.path}"
                    )
        doses = doses_by_plan.get(plan.sop_instance_uid or "", [])
        if twins and doses:
            near = [d for d in doses if _same_folder(d.path, plan.path)]
            if near:
                doses = near
            notes.append("the dose files reference a UID that several plan files carry")
        companions: list[StructureSet | Dose | None] = [ss, *doses]
        for other in companions:
            if (
                other is not None
                and other.patient_id
                and plan.patient_id
                and other.patient_id != plan.patient_id
            ):
                notes.append(
                    f"patient ID differs: plan {plan.patient_id!r}, {other.path}"
                    f" {other.patient_id!r}"
                )
        linked.append(LinkedPlan(plan, ss, status, tuple(doses), tuple(notes), twins))
    return linked


def _same_folder(a: str, b: str) -> bool:
    return os.path.dirname(a) == os.path.dirname(b)


def _nearest(path: str, candidates: list[StructureSet]) -> StructureSet:
    for c in candidates:
        if _same_folder(c.path, path):
            return c
    return candidates[0]
