"""The cluster side of promotion: the k8s adapter against the local API server, and the InferenceService the
gate renders (checked against KServe's CRD, printed by ``--dry-run``)."""

from __future__ import annotations

import json

import pytest
import yaml

from audiomcq.infra.k8s import INFERENCE_SERVICE, Kube, KubeError
from audiomcq.promote.render import Serving, parse_toleration, render, validate
from promote.promote_helpers import CRD, _isvc, make_run

# --- the k8s adapter ---------------------------------------------------------------------------------------------


def test_apply_creates_then_replaces_with_the_live_resource_version(kube_api):
    kube = Kube()
    created = kube.apply(INFERENCE_SERVICE, _isvc("s3://models/a"))
    kube_api.set_status("inferenceservices", "audiomcq", {"url": "http://x"}, namespace="serving")
    replaced = kube.apply(INFERENCE_SERVICE, _isvc("s3://models/b"))
    assert replaced["metadata"]["uid"] == created["metadata"]["uid"]
    assert replaced["metadata"]["generation"] == 2
    stored = kube_api.get("inferenceservices", "audiomcq", "serving")
    assert stored["spec"]["predictor"]["model"]["storageUri"] == "s3://models/b"
    assert stored["status"] == {"url": "http://x"}  # the replace kept the controller's status
    assert [m for m, _ in kube_api.requests] == ["POST", "POST", "GET", "PUT"]
    assert kube.delete(INFERENCE_SERVICE, "audiomcq", "serving")
    assert kube.get(INFERENCE_SERVICE, "audiomcq", "serving") is None


def test_a_request_without_the_token_is_refused(kube_api, tmp_path, monkeypatch):
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token")
    monkeypatch.setenv("AUDIOMCQ_KUBE_TOKEN_FILE", str(wrong))
    with pytest.raises(KubeError) as err:
        Kube().get(INFERENCE_SERVICE, "audiomcq", "serving")
    assert err.value.status == 401 and "not-the-token" not in str(err.value)


# --- rendering -----------------------------------------------------------------------------------------------------


def test_rendered_inference_services_validate_against_the_crd_and_a_planted_bad_one_fails():
    serving = Serving(
        name="audiomcq",
        namespace="serving",
        gpus=2,
        node_selector={"nvidia.com/gpu.present": "true"},
        tolerations=(parse_toleration("nvidia.com/gpu:NoSchedule"),),
    )
    obj = render("s3://models/w2s/grpo/final", serving, canary=10, annotations={"audiomcq/lineage": "s3://x"})
    assert validate(obj, CRD) == []
    predictor = obj["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10 and predictor["serviceAccountName"] == "audiomcq-s3"
    assert predictor["model"]["modelFormat"] == {"name": "audiomcq"} and "name" not in predictor["model"]
    assert predictor["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert validate(render("s3://m", Serving()), CRD) == []
    bad = json.loads(json.dumps(obj))
    bad["spec"]["predictr"] = bad["spec"].pop("predictor")
    bad["spec"]["predictr"]["minReplicas"] = "two"
    errors = validate(bad, CRD)
    assert "spec: 'predictor' is a required property" in errors
    assert "spec: Additional properties are not allowed ('predictr' was unexpected)" in errors
    bad = json.loads(json.dumps(obj))
    bad["spec"]["predictor"]["minReplicas"], bad["spec"]["predictor"]["canaryTrafficPercent"] = "two", 150
    assert validate(bad, CRD) == [
        "spec.predictor.minReplicas: 'two' is not of type 'integer'",
        "spec.predictor.canaryTrafficPercent: 150 is not between 0 and 100",
    ]


def test_dry_run_prints_the_object_and_the_decision_without_a_cluster(corpus, metrics, tmp_path, capsys, monkeypatch):
    from audiomcq.cli import main

    monkeypatch.setenv("AUDIOMCQ_KUBE_HOST", "http://127.0.0.1:9")  # nothing listens there: any call would fail
    monkeypatch.setenv("AUDIOMCQ_KUBE_TOKEN_FILE", str(tmp_path / "absent"))
    run = make_run(tmp_path, corpus[1])
    code = main(
        [
            "promote",
            "--model",
            str(run / "grpo" / "final"),
            "--metrics",
            str(metrics["better"]),
            "--baseline",
            str(metrics["prod"]),
            "--namespace",
            "serving",
            "--dry-run",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    isvc, rest = out.split("---\n", 1)
    obj = yaml.safe_load(isvc)
    assert obj["spec"]["predictor"]["canaryTrafficPercent"] == 10 and validate(obj, CRD) == []
    assert obj["metadata"]["annotations"]["audiomcq/run"] == str(run)
    assert json.loads(rest[: rest.index("\ndecision:")])["promote"] is True
    assert "dry-run: nothing applied; would promote" in out
