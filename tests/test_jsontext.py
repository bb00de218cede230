"""Every JSON rtcode writes is JSON: no NaN or Infinity literals, whatever the numbers."""

from __future__ import annotations

import json
import math

import pytest

from rtcode.output.jsontext import dumps, finite, indented


def strict(text: str):
    def refuse(name: str):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_become_null_at_any_depth(bad):
    value = {"a": bad, "b": [1.5, bad, {"c": (bad, 2)}], "d": "NaN", "e": 0.0}
    assert strict(dumps(value)) == {
        "a": None,
        "b": [1.5, None, {"c": [None, 2]}],
        "d": "NaN",
        "e": 0.0,
    }
    assert strict(dumps(value, indent=2)) == strict(dumps(value))


def test_finite_values_are_written_as_json_would_with_text_kept():
    value = {"name": "Ödem", "mu": 1e308, "tiny": 5e-324, "n": 3, "ok": True, "none": None}
    assert dumps(value) == json.dumps(value, ensure_ascii=False)
    assert finite(value) == value


def test_sorted_keys_are_kept_for_stable_text():
    assert dumps({"b": math.nan, "a": 1}, sort_keys=True) == '{"a": 1, "b": null}'


@pytest.mark.parametrize(
    "value",
    [
        {},
        [],
        {"a": [], "b": {}, "c": [[], {}]},
        {"name": 'Ödem \u2066\x1b"q"\\', "mu": 1e308, "tiny": 5e-324, "n": -3},
        {"flags": (True, False, None), "deep": [{"x": [1, [2.5, {"y": "z"}]]}]},
        [1, "two", 3.0, None],
        "text",
        7,
    ],
)
def test_indented_is_the_standard_indenting_encoder(value):
    assert indented(value) == json.dumps(value, ensure_ascii=False, indent=2)
    nested = json.dumps({"k": value}, ensure_ascii=False, indent=2)
    assert nested == '{\n  "k": ' + indented(value, "  ") + "\n}"


def test_indented_writes_non_finite_numbers_as_null_and_converts_odd_keys():
    assert indented({"a": [math.nan, -math.inf]}) == dumps({"a": [None, None]}, indent=2)
    assert indented({1: "x", None: 2}) == dumps({1: "x", None: 2}, indent=2)
