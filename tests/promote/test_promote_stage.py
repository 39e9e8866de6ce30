"""The pipeline's promotion stage: it decides on the selected model's own evaluation and passes its serving and
smoke settings on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from audiomcq.errors import AudioMCQError
from audiomcq.promote.render import validate
from audiomcq.promote.smoke import SmokeSettings
from promote.promote_helpers import CRD


def _stage_inputs(tmp_path: Path) -> tuple[str, list[str]]:
    """selection.json and metrics.json as the loop's select and evaluate stages write them."""
    model = tmp_path / "models" / "weak_to_strong" / "grpo"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (tmp_path / "selection").mkdir()
    selection = {"selected": "weak_to_strong/grpo", "model": str(model), "accuracy": 62.5}
    (tmp_path / "selection" / "selection.json").write_text(json.dumps(selection))
    audio = {
        "total": {"accuracy": 62.5, "correct": 5, "count": 8},
        "ac_strong": {"accuracy": 75.0, "correct": 3, "count": 4},
    }
    task = {"task": "synthetic", "items": 8, "modes": {"audio": audio}}
    summary = {"model": str(model), "tasks": {"synthetic": task}}
    (tmp_path / "results" / "weak_to_strong" / "grpo").mkdir(parents=True)
    (tmp_path / "results" / "weak_to_strong" / "grpo" / "metrics.json").write_text(json.dumps(summary))
    index = {"weak_to_strong/grpo": {**summary, "stage": "grpo", "step": 4}}
    (tmp_path / "results" / "metrics.json").write_text(json.dumps(index))
    return str(tmp_path / "selection"), [str(tmp_path / "results")]


def test_the_stage_decides_on_the_selected_models_own_eval_metrics(tmp_path):
    """The gate reads the evaluate step's ``audiomcq eval`` output of the selected model as it is."""
    from audiomcq.stages.demo import promote_stage

    selection, results = _stage_inputs(tmp_path)
    (tmp_path / "out").mkdir()
    done = promote_stage(selection, results, str(tmp_path), str(tmp_path), str(tmp_path / "out"), {"floor": 60})
    model = str(tmp_path / "models" / "weak_to_strong" / "grpo")
    assert done == {"action": "dry-run", "promote": True, "model": model}
    decision = json.loads((tmp_path / "out" / "decision.json").read_text())
    assert decision["sources"]["candidate"] == [str(tmp_path / "results" / "weak_to_strong" / "grpo" / "metrics.json")]
    assert decision["candidate"]["synthetic"]["accuracy"] == 62.5
    assert decision["candidate"]["synthetic"]["ac_strong"] == 75.0
    assert "ok: synthetic accuracy 62.50 >= floor 60.00" in decision["reasons"]
    with pytest.raises(AudioMCQError, match="'mixed_to_strong/sft' has no evaluation"):
        (Path(selection) / "selection.json").write_text(json.dumps({"selected": "mixed_to_strong/sft", "model": "m"}))
        promote_stage(selection, results, str(tmp_path), str(tmp_path), str(tmp_path / "out"), {})


def test_the_stage_refuses_to_apply_a_local_model_path(kube_api, tmp_path):
    from audiomcq.stages.demo import promote_stage

    selection, results = _stage_inputs(tmp_path)
    (tmp_path / "out").mkdir()
    with pytest.raises(AudioMCQError, match=r"apply: true needs the pipeline's publish=s3://"):
        promote_stage(selection, results, str(tmp_path), str(tmp_path), str(tmp_path / "out"), {"apply": True})
    assert kube_api.requests == [] and kube_api.objects == {}  # the cluster was never touched


def test_the_stage_places_gpu_serving_with_a_node_selector_and_tolerations(tmp_path):
    from audiomcq.stages.demo import promote_stage

    selection, results = _stage_inputs(tmp_path)
    (tmp_path / "out").mkdir()
    settings = {
        "gpus": 1,
        "node_selector": {"nvidia.com/gpu.present": "true"},
        "tolerations": ["nvidia.com/gpu:NoSchedule", "pool=gpu:NoExecute"],
    }
    done = promote_stage(selection, results, str(tmp_path), str(tmp_path), str(tmp_path / "out"), settings)
    assert done["action"] == "dry-run"
    isvc = yaml.safe_load((tmp_path / "out" / "inferenceservice.yaml").read_text())
    predictor = isvc["spec"]["predictor"]
    assert predictor["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert predictor["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert predictor["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "pool", "operator": "Equal", "effect": "NoExecute", "value": "gpu"},
    ]
    assert validate(isvc, CRD) == []
    with pytest.raises(AudioMCQError, match=r"toleration 'nvidia\.com/gpu'"):
        promote_stage(
            selection,
            results,
            str(tmp_path),
            str(tmp_path),
            str(tmp_path / "out"),
            {"tolerations": ["nvidia.com/gpu"]},
        )


def test_the_stage_passes_its_smoke_settings_to_the_check(tmp_path):
    """``smoke_*`` keys of the pipeline's serving settings reach the smoke check (a bad pair is refused there);
    a misspelt one is refused by name."""
    from audiomcq.stages.demo import _smoke, promote_stage

    selection, results = _stage_inputs(tmp_path)
    (tmp_path / "out").mkdir()
    assert _smoke({"smoke_size": "48", "smoke_tolerance": 10, "margin": 1}) == SmokeSettings(size=48, tolerance=10.0)
    with pytest.raises(AudioMCQError, match="smoke set: min size 20 must be between 1 and the size 8"):
        promote_stage(
            selection,
            results,
            str(tmp_path),
            str(tmp_path),
            str(tmp_path / "out"),
            {"smoke_size": 8, "smoke_min_size": 20},
        )
    with pytest.raises(AudioMCQError, match=r"unknown promotion setting\(s\) \['smoke_seed'\]"):
        promote_stage(selection, results, str(tmp_path), str(tmp_path), str(tmp_path / "out"), {"smoke_seed": 1})
