"""The promotion gate end to end: a better model goes canary, passes the smoke check and takes all traffic with
its lineage; a worse one changes nothing; every failure after the canary brings the previous model back."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from audiomcq.errors import AudioMCQError
from audiomcq.infra.k8s import INFERENCE_SERVICE, Kube
from audiomcq.promote import lineage
from audiomcq.promote.decision import Criteria
from audiomcq.promote.gate import RolledBack, run_gate
from audiomcq.promote.render import validate
from promote.promote_helpers import CLIPS, CRD, Predictor, _isvc, gate_config, live, make_run


def test_better_model_goes_canary_then_takes_all_traffic_with_its_lineage(cluster, corpus, metrics, s3, capsys):
    """From S3: the first model is created at 100% directly; the better one is read against the first's recorded
    metrics, rolled out at 10%, smoke-checked on its own revision URL with real WAVs and their silent twins by a
    predictor that hears the tones, then promoted, with the smoke result in the decision and the lineage."""
    from audiomcq.cli import main
    from audiomcq.infra import storage

    root, records = corpus
    run = make_run(root / "s3-src", records)
    storage.publish(run, "s3://data/runs/w2s")
    storage.publish(root / "audio", "s3://data/audio")
    for name in ("prod", "better"):
        storage.publish(metrics[name].parent, f"s3://data/eval/{name}")
    first, second = "s3://data/runs/w2s/sft/final", "s3://data/runs/w2s/grpo/final"
    predictor = Predictor("listens")
    cluster.urls = {first: predictor.url, second: predictor.url}

    cfg = gate_config(root, smoke_audio_root="s3://data/audio")
    created = run_gate(first, ["s3://data/eval/prod/metrics.json"], Criteria(floors={"synthetic": 50}), cfg)
    assert created.action == "promoted" and "canaryTrafficPercent" not in live(cluster)["spec"]["predictor"]
    writes = len(cluster.requests)

    code = main(
        [
            "promote",
            "--model",
            second,
            "--metrics",
            "s3://data/eval/better/metrics.json",
            "--name",
            "audiomcq",
            "--namespace",
            "serving",
            "--margin",
            "5",
            "--canary",
            "10",
            "--timeout",
            "5",
            "--poll",
            "0.02",
            "--smoke-audio-root",
            "s3://data/audio",
            "--smoke-tolerance",
            "20",
            "--gpus",
            "1",
            "--toleration",
            "nvidia.com/gpu:NoSchedule",
            "--validate-against",
            str(CRD),
            "--out",
            str(root / "promotion"),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "decision: promote" in printed and "promoted s3://data/runs/w2s/grpo/final to 100%" in printed
    patches = [p for m, p in cluster.requests[writes:] if m == "PATCH"]
    assert len(patches) == 2  # the canary, then the promotion
    isvc = live(cluster)
    predictor_spec = isvc["spec"]["predictor"]
    assert predictor_spec["model"]["storageUri"] == second and "canaryTrafficPercent" not in predictor_spec
    assert predictor_spec["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert isvc["status"]["components"]["predictor"]["traffic"][0]["percent"] == 100
    strong = {r["question"] for r in records if r["audio-contribution"] == "strong"}
    assert len(predictor.seen) == 2 * (CLIPS + len(strong))  # each gate: every question with audio, 16 in silence
    for gate in (predictor.seen[: len(predictor.seen) // 2], predictor.seen[len(predictor.seen) // 2 :]):
        assert {path for path, *_ in gate} == {"/v1/models/audiomcq:predict"}
        assert {(n, rate) for _, _, n, rate, _ in gate} == {(4000, 16000)}  # the silence is as long as the clip
        assert sorted(q for _, q, _, _, silent in gate if not silent) == sorted(r["question"] for r in records)
        assert sorted(q for _, q, _, _, silent in gate if silent) == sorted(strong)
    assert "ok: smoke: accuracy with audio 100.0% (32/32) >= pass mark 68.8% (evaluated 87.5% on synthetic" in printed
    smoke = json.loads((root / "promotion" / "decision.json").read_text())["smoke"]
    assert smoke["ok"] and smoke["numbers"]["tolerance_source"] == "fixed" and smoke["numbers"]["tolerance"] == 20
    assert smoke["numbers"]["listening_accuracy_audio"] == 100 and smoke["numbers"]["listening_accuracy_silence"] == 25
    assert len(smoke["answers"]) == CLIPS
    assert smoke["numbers"]["endpoint"] == f"{predictor.url}/v1/models/audiomcq:predict"

    notes = isvc["metadata"]["annotations"]
    doc = lineage.read_json(notes["audiomcq/lineage"])
    assert notes["audiomcq/lineage"] == f"{second}/lineage.json"
    selection = hashlib.sha256((run / "data" / "selection.jsonl").read_bytes()).hexdigest()
    assert doc["data"]["splits"]["selection.jsonl"]["sha256"] == selection
    assert notes["audiomcq/data-sha256"] == doc["data"]["sha256"][:16]
    recipe = json.loads((run / "recipe.resolved.json").read_text())
    assert (
        doc["recipe"]["sha256"]
        == hashlib.sha256(json.dumps(recipe, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    )
    assert doc["run"]["uri"] == "s3://data/runs/w2s" and doc["run"]["paradigm"] == "weak_to_strong"
    assert doc["run"]["grpo_init"]["step"] == 5 and doc["run"]["grpo_init"]["init"] == "sft@best"
    assert (doc["checkpoint"]["stage"], doc["checkpoint"]["step"]) == ("grpo", 20)
    assert doc["checkpoint"]["digest"]["kind"] == "s3-etags" and doc["checkpoint"]["digest"]["files"] == 2
    assert doc["evaluation"]["tasks"]["synthetic"]["modes"]["audio"]["total"]["accuracy"] == 87.5
    assert doc["inference_service"]["revision"] == "audiomcq-predictor-00002"
    assert doc["previous"] == {"storageUri": first, "lineage": f"{first}/lineage.json"}
    assert doc["decision"]["promote"] and doc["gaps"] == []
    assert doc["decision"]["smoke"] == smoke  # the lineage records the same smoke check
    decision = json.loads((root / "promotion" / "decision.json").read_text())
    assert decision["baseline"]["synthetic"]["accuracy"] == 62.5  # read back through the first model's lineage
    assert yaml.safe_load((root / "promotion" / "inferenceservice.yaml").read_text())["kind"] == "InferenceService"


@pytest.mark.parametrize("profile", ["worse", "strong-regress"])
def test_a_model_that_is_worse_or_regresses_on_ac_strong_items_changes_nothing(
    cluster, production, corpus, metrics, profile
):
    _, candidate, before = production
    writes = len(cluster.requests)
    outcome = run_gate(candidate, [str(metrics[profile])], Criteria(), gate_config(corpus[0]))
    assert outcome.action == "kept" and not outcome.decision.promote
    assert [m for m, _ in cluster.requests[writes:]] == ["GET"]  # read production, wrote nothing
    assert live(cluster) == before
    assert not Path(candidate, "lineage.json").exists()


@pytest.mark.parametrize("mode", ["500", "no-choice", "html"])
def test_a_failed_smoke_query_restores_the_previous_model(cluster, production, corpus, metrics, mode):
    prod, candidate, before = production
    broken = Predictor(mode)
    cluster.urls[candidate] = broken.url
    with pytest.raises(RolledBack) as err:
        run_gate(candidate, [str(metrics["better"])], Criteria(), gate_config(corpus[0]))
    assert "rolled back" in str(err.value) and f"restored the previous model {prod}" in str(err.value)
    expected = {"500": "HTTP 500", "no-choice": "names none of", "html": "gave no JSON answer (JSONDecodeError"}
    assert expected[mode] in str(err.value)
    after = live(cluster)
    assert after["spec"] == before["spec"]  # storageUri back, no canary left
    assert after["metadata"]["annotations"] == before["metadata"]["annotations"]
    assert after["status"]["components"]["predictor"]["traffic"][0]["percent"] == 100
    assert len(broken.seen) == 1 and not Path(candidate, "lineage.json").exists()


@pytest.mark.parametrize("fault", ["no-url", "promotion-refused"])
def test_any_error_after_the_canary_is_applied_restores_the_previous_model(
    cluster, production, corpus, metrics, fault
):
    """Not only a failed smoke query: a Ready status without a URL, or the API refusing the 100% patch, happen
    after the canary took traffic; production must come back exactly, and the gate says why."""
    prod, candidate, before = production

    def strip_urls(event, obj):  # a controller that reports Ready but no URL for the candidate
        if event != "DELETED" and obj["spec"]["predictor"]["model"]["storageUri"] == candidate:
            obj["status"].pop("url", None)
            for target in obj["status"]["components"]["predictor"]["traffic"]:
                target.pop("url", None)

    def refuse_promotion(obj):  # an admission webhook refusing the candidate without a canary share
        predictor = obj["spec"]["predictor"]
        if predictor["model"]["storageUri"] == candidate and "canaryTrafficPercent" not in predictor:
            return ["spec.predictor: refused by policy"]
        return validate(obj, CRD)

    if fault == "no-url":
        cluster.on("inferenceservices", strip_urls)
    else:
        cluster.validators["inferenceservices"] = refuse_promotion
    with pytest.raises(RolledBack) as err:
        run_gate(candidate, [str(metrics["better"])], Criteria(), gate_config(corpus[0]))
    expected = {"no-url": "its status has no URL", "promotion-refused": "promoting the canary to 100% did not finish"}
    assert expected[fault] in str(err.value) and f"restored the previous model {prod}" in str(err.value)
    after = live(cluster)
    assert after["spec"] == before["spec"] and after["metadata"]["annotations"] == before["metadata"]["annotations"]
    assert after["status"]["components"]["predictor"]["traffic"] == [
        {**before["status"]["components"]["predictor"]["traffic"][0], "revisionName": "audiomcq-predictor-00003"}
    ]
    assert not Path(candidate, "lineage.json").exists()


def test_a_failed_rollback_is_not_reported_as_one(cluster, production, corpus, metrics):
    """The API refuses every change once the canary is in: the gate must not claim production was restored."""
    _, candidate, _ = production
    frozen = {"on": False}

    def freeze(obj):
        return ["spec: frozen by policy"] if frozen["on"] else validate(obj, CRD)

    def freeze_after_canary(event, obj):
        frozen["on"] = frozen["on"] or obj["spec"]["predictor"].get("canaryTrafficPercent") == 10

    cluster.validators["inferenceservices"] = freeze
    cluster.on("inferenceservices", freeze_after_canary)
    with pytest.raises(AudioMCQError) as err:
        run_gate(candidate, [str(metrics["better"])], Criteria(), gate_config(corpus[0]))
    assert not isinstance(err.value, RolledBack)
    assert "rolling back failed too" in str(err.value) and "check InferenceService serving/audiomcq" in str(err.value)
    assert live(cluster)["spec"]["predictor"]["model"]["storageUri"] == candidate  # still the canary, as said


def test_a_canary_of_zero_percent_is_promoted(cluster, production, corpus, metrics):
    """``--canary 0``: the new revision is smoke-tested on its tag URL with no user traffic, then promoted."""
    _, candidate, _ = production
    outcome = run_gate(candidate, [str(metrics["better"])], Criteria(), gate_config(corpus[0], canary=0))
    assert outcome.objects[0]["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert outcome.action == "promoted", outcome.message
    assert live(cluster)["spec"]["predictor"]["model"]["storageUri"] == candidate


def test_a_previous_canary_of_zero_percent_is_restored_and_waited_for(cluster, production, corpus, metrics):
    prod, candidate, _ = production
    Kube().patch(INFERENCE_SERVICE, "audiomcq", {"spec": {"predictor": {"canaryTrafficPercent": 0}}}, "serving")
    before = live(cluster)
    cluster.urls[candidate] = Predictor("500").url
    with pytest.raises(RolledBack) as err:
        run_gate(candidate, [str(metrics["better"])], Criteria(), gate_config(corpus[0]))
    assert str(err.value).endswith(f"restored the previous model {prod}")  # and ready: 0% to its new revision
    assert live(cluster)["spec"] == before["spec"]


def test_a_new_service_that_fails_its_smoke_query_is_deleted(cluster, corpus, metrics, tmp_path):
    run = make_run(tmp_path, corpus[1])
    model = str(run / "grpo" / "final")
    cluster.urls[model] = Predictor("500").url
    with pytest.raises(RolledBack, match="deleted the new InferenceService serving/audiomcq"):
        run_gate(model, [str(metrics["better"])], Criteria(), gate_config(corpus[0]))
    assert live(cluster) is None


def test_a_live_service_without_a_record_is_not_overwritten(cluster, corpus, metrics, tmp_path):
    cluster.add("inferenceservices", _isvc("s3://hand/deployed") | {"status": {}})
    run = make_run(tmp_path, corpus[1])
    outcome = run_gate(str(run / "grpo" / "final"), [str(metrics["better"])], Criteria(), gate_config(corpus[0]))
    assert outcome.action == "kept" and "pass --baseline" in outcome.decision.reasons[-1]
    assert "production's metrics are unknown" in outcome.decision.reasons[-1]
