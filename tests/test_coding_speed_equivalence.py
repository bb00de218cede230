"""The faster per-plan coding paths against the plain ones they replace.

ROI roles are cached (``coding.roles._role``): the same answers as deciding every ROI
afresh, for every policy (the cache keys on the role settings, so two policies never
share an answer). The table text wraps a line that fits without textwrap: the same
lines as textwrap. Segments are named tuples: the same segments, as the same values,
as the frozen dataclass made. A beam's couch angle in the JSON is the first known one,
as before.
"""

from __future__ import annotations

import itertools
import math
import random
import re
import textwrap
from dataclasses import replace

import builders as b
import numpy as np
import pytest
from test_metrics_speed_equivalence import random_beam

from rtcode.coding import policy as policy_mod
from rtcode.coding.classify import roi_role
from rtcode.engine.scan import scan
from rtcode.measure.metrics import Segment, beam_metrics
from rtcode.model.codes import BeamAssessment, Technique
from rtcode.output.render import _wrap, beam_json
from rtcode.output.terminal import shown


def role_reference(roi, policy) -> tuple[str, str]:
    """roi_role as it was meant: decided afresh every time."""
    name = (roi.name or "").strip()
    rtype = (roi.interpreted_type or "").upper()
    if any(re.search(p, name, re.IGNORECASE) for p in policy["roles.helper_name_patterns"]):
        return "helper", "name"
    if rtype in policy["roles.target_types"]:
        return "target", "type"
    promotable = not rtype or rtype in policy["roles.name_may_promote_types"]
    named = any(re.match(p, name, re.IGNORECASE) for p in policy["roles.target_name_patterns"])
    if promotable and named:
        return "target", "name"
    if rtype in policy["roles.organ_types"]:
        return "organ_at_risk", "type"
    if rtype in policy["roles.external_types"]:
        return "external", "type"
    organ = any(re.match(p, name, re.IGNORECASE) for p in policy["roles.organ_name_patterns"])
    if promotable and organ:
        return "organ_at_risk", "name"
    return "other", "type" if rtype else "none"


NAMES = ["PTV", "ptv_70", " CTV1 ", "GTVp", "Boost", "tumour bed", "Rectum", "heart",
         "Lung_L", "spinal cord", "BODY", "External", "Couch", "z_opt", "PTV1_WALL",
         "Ring_PTV", "PTV+3mm", "Rectum-PTV", "ptv4", "", None]  # fmt: skip
TYPES = ["PTV", "ctv", "GTV", "ORGAN", "AVOIDANCE", "EXTERNAL", "CONTROL", "ISOCENTER", "",
         None]  # fmt: skip
# The role settings turned around: what default calls an organ is a target here, etc.
OTHER_ROLES = b"""[policy]
extends = "default"
name = "roles turned"
[roles]
target_types = ["ORGAN"]
organ_types = ["PTV", "CTV"]
external_types = ["CONTROL"]
target_name_patterns = ['^heart$', '^lung.*']
organ_name_patterns = ['^p?tv.*', '^boost$']
helper_name_patterns = ['^couch$']
name_may_promote_types = ["CONTROL", "AVOIDANCE"]
"""


@pytest.fixture(scope="module")
def policies():
    return [policy_mod.load(), policy_mod.parse(OTHER_ROLES, "test:roles")]


def test_roi_roles_match_deciding_afresh_under_every_policy(policies):
    rois = [b.roi(i, name, rtype) for i, (name, rtype) in enumerate(
        (n, t) for n in NAMES for t in TYPES)]  # fmt: skip
    # alternate the policies so that a cached answer of one would show under the other
    for _ in range(2):
        for policy in policies:
            for roi in rois:
                assert roi_role(roi, policy) == role_reference(roi, policy), (roi, policy.name)
    default, other = policies
    assert roi_role(b.roi(1, "Heart", "ORGAN"), default) == ("organ_at_risk", "type")
    assert roi_role(b.roi(1, "Heart", "ORGAN"), other) == ("target", "type")


def test_roi_roles_of_the_sample_plans(policies, sample_data):
    result = scan([str(sample_data)], policies[0])
    rois = [r for p in result.plans if p.linked.structure_set for r in p.linked.structure_set.rois]
    assert rois
    for policy in policies:
        for roi in rois:
            assert roi_role(roi, policy) == role_reference(roi, policy)


def wrap_reference(text: str) -> list[str]:
    # Controls (tab and newline among them) are shown escaped, then the text is wrapped.
    return textwrap.wrap(
        " ".join(shown(text).split()), 100, initial_indent="    ", subsequent_indent="      "
    )


def test_wrap_matches_textwrap_on_random_text():
    rng = random.Random(20261128)
    alphabet = "ab-,.;:()/=+ 0123456789\t\n\xa0\u2003\u00e9\u65e5"
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 130)))
        assert _wrap(text) == wrap_reference(text), repr(text)
    for length in range(90, 103):  # around the width: first line just fitting, or not
        for text in ("x" * length, "ab " * (length // 3), " " + "y" * length + " "):
            assert _wrap(text) == wrap_reference(text), repr(text)


def test_wrap_matches_textwrap_on_the_findings_of_the_sample_plans(sample_data):
    result = scan([str(sample_data)], policy_mod.load())
    texts = []
    for p in result.plans:
        c = p.classification
        texts += [f"because {e.finding}" for e in c.evidence]
        texts += [f"alternative {a.code} {a.condition}" for a in c.alternatives]
        texts += [f"check: {f.message}" for f in c.flags]
    assert any(len(t) > 96 for t in texts) and any(len(t) <= 96 for t in texts)
    for text in texts:
        assert _wrap(text) == wrap_reference(text)


@pytest.mark.parametrize("shape", ["outline", "islands", "coarse", "carved"])
def test_segments_are_the_same_values(shape):
    for seed, n in ((1, 2), (2, 16), (3, 40), (4, 90)):
        beam = random_beam(seed, n, 20, shape)
        m = beam_metrics(beam, 1.0, 10.0)
        for s in m.segments:
            assert type(s) is Segment
            assert (s.first_cp, s.last_cp, s.mu_fraction) == tuple(s)
        # as the dataclass had them: consecutive, covering the beam-on intervals
        assert all(a.last_cp == z.first_cp for a, z in itertools.pairwise(m.segments))
        assert math.isclose(sum(s.mu_fraction for s in m.segments), 1.0)


@pytest.mark.parametrize(
    "couch",
    [[0.0, 0.0], [np.nan, 270.0, 10.0], [np.nan, np.nan], [355.5, np.nan], [np.nan]],
)
def test_beam_couch_angle_is_the_first_known(couch):
    cps = b.control_points([b.rect(-10, 10)] * len(couch), list(np.linspace(0, 1, len(couch))))
    cps = replace(cps, couch_deg=np.array(couch))
    beam = b.beam(1, cps)
    m = beam_metrics(beam)
    item = beam_json(BeamAssessment(beam, m, 100.0, 1, True, None, Technique.OPEN, ""))
    known = [c for c in couch if not math.isnan(c)]
    assert item["couch_deg"] == (round(known[0], 2) if known else None)
