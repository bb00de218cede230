"""The policy file: shipped default loads; bad files fail naming the key."""

from __future__ import annotations

import pytest

from rtcode.coding.policy import SCHEMA, builtin_names, load, parse
from rtcode.model.errors import PolicyError


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


# ------------------------------------------------------ profiles and commands

from click.testing import CliRunner  # noqa: E402

from rtcode.cli import main  # noqa: E402


@pytest.mark.parametrize("name", ["default", "medicare", "example-local"])
def test_shipped_profiles_load_and_round_trip(name):
    p = load(name)
    again = parse(p.to_toml().encode(), "round-trip")
    assert dict(again.values) == dict(p.values)
    assert dict(again.validity) == dict(p.validity)
    assert again.sha256 == p.sha256  # the hash names the effective settings


def test_profile_extends_default():
    base, medicare = load("default"), load("medicare")
    changed = {k for k in base.values if base.values[k] != medicare.values[k]}
    assert changed == {
        "policy.name", "policy.description", "imrt.require_inverse_planning_evidence",
        "three_d.min_organs_at_risk",
    }  # fmt: skip
    assert medicare.sha256 != base.sha256


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[policy]\nextends = "nope"\n', "policy.extends = 'nope' is not allowed"),
        (
            '[policy]\nextends = "default"\nname="x"\nversion="1"\ndescription="d"\n[validity]\n77385 = ["2026-13-01", ""]\n',
            "not an ISO date",
        ),
        (
            '[policy]\nextends = "default"\nname="x"\nversion="1"\ndescription="d"\n[validity]\n77385 = ["2026-01-01", "2025-01-01"]\n',
            "last day is before",
        ),
        (
            '[policy]\nextends = "default"\nname="x"\nversion="1"\ndescription="d"\n[devices]\ntier = { laser = "77334" }\n',
            "devices.tier",
        ),
    ],
)
def test_invalid_profiles(text, message):
    with pytest.raises(PolicyError) as info:
        parse(text.encode(), "local.toml")
    assert message in str(info.value)


def test_policy_commands(tmp_path):
    runner = CliRunner()
    show = runner.invoke(main, ["policy", "show", "medicare"])
    assert show.exit_code == 0 and "min_organs_at_risk = 2" in show.output
    check = runner.invoke(main, ["policy", "check", "rtcode/policies/example-local.toml"])
    assert check.exit_code == 0 and check.output.startswith("valid: example-local")
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[policy]\nextends = "default"\nname="x"\nversion="1"\ndescription="d"\n[isodose]\nmax_simple_ports = "two"\n'
    )
    result = runner.invoke(main, ["policy", "check", str(bad)])
    assert result.exit_code == 2 and "isodose.max_simple_ports" in result.output
    diff = runner.invoke(main, ["policy", "diff", "default", "medicare"])
    assert diff.exit_code == 1 and "three_d.min_organs_at_risk: 1 -> 2" in diff.output
    same = runner.invoke(main, ["policy", "diff", "default", "default"])
    assert same.exit_code == 0 and "no differences" in same.output


def test_every_setting_is_explained_for_auditors():
    from conftest import ROOT

    doc = (ROOT / "docs" / "policy.md").read_text()
    for key in SCHEMA:
        assert f"`{key.split('.', 1)[1]}`" in doc, key


# ------------------------------------------------------------------ [dvh]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("v_values_gy = [5, -20, 30]", "dvh.v_values_gy = [5, -20, 30] is not allowed"),
        ("v_values_gy = [5, -20, 30]", "-20 is not one"),
        ('v_values_gy = ["5 Gy", 20]', "doses in Gy (numbers of at least 0)"),
        ('v_values_gy = "5, 20"', "dvh.v_values_gy = '5, 20' is not allowed"),
        ("v_values_gy = []", "a list of one or more distinct doses"),
        ("v_values_gy = [20, 20.0]", "a dose is listed twice"),
        ("v_values_gy = [5, nan]", "nan is not one"),
        ("agreement_mean_dose_pct = -1.0", "dvh.agreement_mean_dose_pct = -1.0 is not allowed"),
        ('agreement_mean_dose_pct = "1%"', "it must be a number from 0 to 100"),
        ("agreement_d95_pct = nan", "dvh.agreement_d95_pct = nan is not allowed"),
        ("agreement_d95_pct = true", "dvh.agreement_d95_pct = True is not allowed"),
    ],
)
def test_policy_check_names_a_bad_dvh_setting(tmp_path, line, message):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        f'[policy]\nextends = "default"\nname="x"\nversion="1"\ndescription="d"\n[dvh]\n{line}\n'
    )
    result = CliRunner().invoke(main, ["policy", "check", str(bad)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"invalid: {bad}: dvh.")
    assert message in result.output


def test_dvh_settings_are_shown_hashed_and_compared():
    base = load("default")
    assert base["dvh.v_values_gy"] == [5, 20, 30, 40, 50]
    assert (base["dvh.agreement_mean_dose_pct"], base["dvh.agreement_d95_pct"]) == (1.0, 2.0)
    text = '[policy]\nextends = "default"\n[dvh]\nv_values_gy = [5, 20, 30, 40, 45]\n'
    local = parse(text.encode(), "local.toml")
    assert local.sha256 != base.sha256  # the hash names the effective settings
    shown = CliRunner().invoke(main, ["policy", "show"]).output
    section = shown.split("\n[dvh]\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert section == [
        "agreement_d95_pct = 2.0",
        "agreement_mean_dose_pct = 1.0",
        "max_d95_prescription_difference_pct = 10.0",
        "max_volume_difference_pct = 5.0",
        "min_dose_voxels = 30",
        "truncated_last_bin_pct = 5.0",
        "v_values_gy = [5, 20, 30, 40, 50]",
    ]


# --------------------------------------------------------------- [limits]


def test_new_limits_are_settings_with_the_dataclass_defaults():
    from dataclasses import MISSING, fields

    from rtcode.model.limits import Limits

    p = load("default")
    assert p["limits.max_data_elements"] == 2000000
    assert p["limits.max_control_points_per_plan"] == 1000000
    limits = Limits.from_policy(p)
    for f in fields(Limits):  # hand-built Limits default to the shipped policy's values
        if f.default is not MISSING:
            assert getattr(limits, f.name) == f.default, f.name
    text = '[policy]\nextends = "default"\n[limits]\nmax_control_points_per_plan = 5000\n'
    local = Limits.from_policy(parse(text.encode(), "local.toml"))
    assert local.max_control_points_per_plan == 5000
    assert local.max_data_elements == 2000000


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("max_data_elements = -1", "limits.max_data_elements = -1 is not allowed"),
        ('max_data_elements = "2M"', "it must be a whole number"),
        ("max_data_elements = 2.5e6", "limits.max_data_elements = 2500000.0 is not allowed"),
        ("max_control_points_per_plan = 1", "a whole number of at least 2"),
        ("max_control_points_per_plan = true", "limits.max_control_points_per_plan = True"),
    ],
)
def test_policy_check_names_a_bad_limit(tmp_path, line, message):
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[policy]\nextends = "default"\n[limits]\n{line}\n')
    result = CliRunner().invoke(main, ["policy", "check", str(bad)])
    assert result.exit_code == 2 and message in result.output, result.output


_NUMERIC = sorted(
    k
    for k, v in load("default").values.items()
    if isinstance(v, (int, float)) and not isinstance(v, bool) and k in SCHEMA
)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("key", _NUMERIC)
def test_no_numeric_setting_accepts_nan_or_infinity(tmp_path, key, value):
    section, name = key.split(".", 1)
    policy = tmp_path / "p.toml"
    policy.write_text(
        f'[policy]\nextends = "default"\nname = "x"\nversion = "1"\n\n[{section}]\n{name} = {value}\n'
    )
    with pytest.raises(PolicyError, match=key.replace(".", r"\.")):
        load(policy)
    result = CliRunner().invoke(main, ["policy", "check", str(policy)])
    assert result.exit_code == 2 and f"{key} = {value} is not allowed" in result.output


# ------------------------------------------------------------------ typed sections


def test_every_setting_has_a_typed_field_and_every_field_a_setting():
    from rtcode.coding.sections import SECTIONS, fields_of

    typed = [key for cls in SECTIONS for key in fields_of(cls)]
    assert len(typed) == len(set(typed))
    assert set(typed) == {k for k in SCHEMA if not k.startswith("policy.")}


@pytest.mark.parametrize("name", builtin_names())
def test_typed_sections_hold_the_settings_of_the_file(name):
    from rtcode.coding.sections import SECTIONS, fields_of, section_name

    p = load(name)
    for cls in SECTIONS:
        section = getattr(p, section_name(cls))
        assert isinstance(section, cls)
        for key in fields_of(cls):
            value, expected = getattr(section, key.split(".", 1)[1]), p[key]
            if isinstance(expected, list):
                assert value == tuple(expected), key
            elif isinstance(expected, dict):
                assert dict(value) == expected, key
            else:
                assert value == expected and type(value) is type(expected), key


def test_typed_sections_follow_a_local_file_and_cannot_be_changed():
    import dataclasses
    import pickle

    text = (
        '[policy]\nextends = "default"\n[modulation]\narc_min_gantry_travel_deg = 12.5\n'
        '[roles]\ntarget_types = ["PTV"]\n'
    )
    p = parse(text.encode(), "local.toml")
    assert p.modulation.arc_min_gantry_travel_deg == 12.5
    assert p.roles.target_types == ("PTV",)
    assert load().modulation.arc_min_gantry_travel_deg == 5.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.modulation.arc_min_gantry_travel_deg = 1.0
    with pytest.raises(TypeError):
        p.devices.tier["wedge"] = "77332"
    again = pickle.loads(pickle.dumps(p))  # as sent to worker processes
    assert again == p and again.modulation == p.modulation and again.roles == p.roles


def test_default_limits_are_the_shipped_policys_without_loading_it():
    from rtcode.model.limits import Limits, default_limits

    assert default_limits() == Limits() == Limits.from_policy(load("default"))
    assert load("default").limits == Limits()
