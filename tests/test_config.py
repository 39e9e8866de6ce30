"""Recipes: packaged names, overrides, and unknown keys as errors."""

from __future__ import annotations

import pytest

from audiomcq.config import load_recipe, recipe_names
from audiomcq.errors import AudioMCQError


def test_packaged_recipes():
    assert {"demo", "smoke"} <= set(recipe_names())
    demo = load_recipe("demo")
    assert demo["filter"]["min_correct"] == 2 and len(demo["filters"]) == 3
    assert set(demo) == set(load_recipe("smoke"))  # the smoke recipe exercises every section


def test_overrides_parse_yaml_values_and_reach_list_items(tmp_path):
    r = load_recipe("demo", ["sft.steps=7", "filters.1.lr=0.01", "filter.probes=[silence:30]", "paradigms=[all_sft]"])
    assert r["sft"]["steps"] == 7 and r["filters"][1]["lr"] == 0.01 and r["filter"]["probes"] == ["silence:30"]
    assert r["paradigms"] == ["all_sft"]
    assert load_recipe("demo")["sft"]["steps"] != 7  # the packaged recipe is not mutated
    path = tmp_path / "mine.yaml"
    path.write_text("sft: {steps: 3}\n")
    assert load_recipe(str(path), ["sft.steps=4"]) == {"sft": {"steps": 4}}


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("demo", ["sft.stepz=1"], "unknown recipe key 'sft.stepz'"),
        ("demo", ["filters.9.lr=1"], "unknown recipe key 'filters.9.lr'"),
        ("demo", ["sft.steps"], "must look like section.key=value"),
        ("nope", [], "unknown recipe 'nope'"),
        ("missing.yaml", [], "missing.yaml: no such recipe file"),
    ],
)
def test_bad_recipes_are_clear_errors(name, overrides, message):
    with pytest.raises(AudioMCQError, match=None) as info:
        load_recipe(name, overrides)
    assert message in str(info.value)
