"""Helpers for the network tests: compare codings made from received or retrieved
instances with those of ``rtcode scan`` on the same files.

Paths differ (``sample_data/06_four_field_box_3d/RP.dcm``, a stored file, a WADO-RS
URL), so every path of a DICOM object in a plan's JSON is replaced by that object's
SOP Instance UID; everything else (codes, evidence, observed values, thresholds,
settings, flags, related codes, beams) must be equal, character for character.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from rtcode import policy as policy_mod
from rtcode.render import plan_json
from rtcode.scan import ScanResult, scan

POLICY = policy_mod.load("default")


def canonical(plans: list[dict[str, Any]], uid_of_path: dict[str, str]) -> list[str]:
    """Each plan as sorted-key JSON with object paths replaced by ``<UID>``; sorted."""
    paths = sorted(uid_of_path, key=len, reverse=True)  # longest first: no partial hits
    out = []
    for plan in plans:
        text = json.dumps(plan, sort_keys=True, ensure_ascii=False)
        for path in paths:
            text = text.replace(json.dumps(path)[1:-1], f"<{uid_of_path[path]}>")
        out.append(text)
    return sorted(out)


def uids_of(result: ScanResult) -> dict[str, str]:
    inv = result.inventory
    return {x.path: x.sop_instance_uid or "" for x in [*inv.plans, *inv.structure_sets, *inv.doses]}


def scan_canonical(paths: list[Any]) -> list[str]:
    """``rtcode scan`` of the paths (files, folders or entries), canonical."""
    result = scan(paths, POLICY)
    return canonical([plan_json(p, POLICY) for p in result.plans], uids_of(result))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
