"""The policy file: shipped default loads; bad files fail naming the key."""

from __future__ import annotations

import pytest

from rtcode.errors import PolicyError
from rtcode.policy import SCHEMA, builtin_names, load, parse


def default_text():
    from importlib import resources

    return (resources.files("rtcode") / "policies" / "default.toml").read_text()


def test_default_loads_with_every_setting():
    p = load("default")
    assert set(p.values) == set(SCHEMA)
    assert p.name == "default" and p.version
    assert len(p.sha256) == 64
    assert "default" in builtin_names()


def test_every_setting_is_explained_in_the_file():
    lines = default_text().splitlines()
    previous = 0
    for key in SCHEMA:
        name = key.split(".", 1)[1]
        [i] = [n for n, line in enumerate(lines) if line.startswith(f"{name} =")]
        if key.startswith("policy."):
            continue
        block = lines[previous:i] if previous < i else lines[:i]
        assert any(line.startswith("#") for line in block), f"{key} has no comment above it"
        previous = i + 1


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("max_simple_ports = 2", 'max_simple_ports = "two"', "isodose.max_simple_ports = 'two'"),
        ("max_simple_ports = 2", "max_simple_ports = 0", "a whole number of at least 1"),
        (
            "fif_min_main_segment_mu_fraction = 0.5",
            "fif_min_main_segment_mu_fraction = 1.5",
            "from 0 to 1",
        ),
        ('pencil_beam_scanning_code = "77301"', 'pencil_beam_scanning_code = "77999"', "one of"),
        ("bolus_is_modifier = false", "bolus_is_modifier = 0", "true or false"),
        (
            "bolus_is_modifier = false",
            "bolus_modifier = false",
            "unknown setting 'isodose.bolus_modifier'",
        ),
        ("min_targets = 1\n", "", "setting 'three_d.min_targets' is missing"),
        ("target_types = [", "target_types = [1, ", "a list of strings"),
        ("min_targets = 1", "min_targets = [", "not valid TOML"),
    ],
)
def test_invalid_policy_names_the_key(old, new, message):
    text = default_text()
    assert old in text
    with pytest.raises(PolicyError, match=None) as info:
        parse(text.replace(old, new, 1).encode(), "local.toml")
    assert message in str(info.value)
    assert str(info.value).startswith("local.toml")


def test_bad_regular_expression_is_reported():
    text = default_text().replace("target_name_patterns = [", "target_name_patterns = ['(', ", 1)
    with pytest.raises(PolicyError, match="roles.target_name_patterns"):
        parse(text.encode(), "x.toml")


def test_unknown_policy_name_lists_the_shipped_ones(tmp_path):
    with pytest.raises(PolicyError, match="default"):
        load(str(tmp_path / "missing.toml"))
