"""Promotion gate, lineage and the cluster adapter, against a local Kubernetes API server (tests/kube_api.py)."""

from __future__ import annotations

import pytest

from audiomcq.k8s import INFERENCE_SERVICE, Kube, KubeError


def _isvc(uri: str) -> dict:
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "audiomcq", "namespace": "serving"},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "audiomcq"}, "storageUri": uri}}}}  # fmt: skip


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
    assert (
        kube.delete(INFERENCE_SERVICE, "audiomcq", "serving")
        and kube.get(INFERENCE_SERVICE, "audiomcq", "serving") is None
    )


def test_a_request_without_the_token_is_refused(kube_api, tmp_path, monkeypatch):
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token")
    monkeypatch.setenv("AUDIOMCQ_KUBE_TOKEN_FILE", str(wrong))
    with pytest.raises(KubeError) as err:
        Kube().get(INFERENCE_SERVICE, "audiomcq", "serving")
    assert err.value.status == 401 and "not-the-token" not in str(err.value)
