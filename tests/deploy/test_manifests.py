"""The cluster manifests' objects, checked offline.

Every overlay builds with ``kubectl kustomize`` and every object, the templates and the TrainJob the code emits pass
their schemas; the namespace enforces the "restricted" Pod Security Standard and every pod meets it, on a read-only
root filesystem, with requests and limits; third-party images are pinned by digest. Each check is also shown to
reject a planted mistake.
"""

from __future__ import annotations

import re

import pytest
from deploy.k8s_checks import (
    NAMESPACE,
    OVERLAYS,
    _pods,
    kustomize,
    named,
    needs_kubectl,
    pod_security_problems,
    rendered,
    schema_problems,
    templates,
)

# --- schema validation ----------------------------------------------------------------------------------------


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_and_every_object_is_valid(overlay):
    objs = rendered(overlay)
    kinds = {o["kind"] for o in objs}
    assert {
        "Namespace",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Deployment",
        "Service",
        "ServingRuntime",
        "NetworkPolicy",
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
    } <= kinds
    assert "Secret" not in kinds
    for obj in objs:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]["name"]
    assert schema_problems(objs) == []


def test_templates_are_valid():
    objs = templates()
    assert {o["metadata"]["name"] for o in objs} == {"audiomcq", "audiomcq-vllm"}
    assert schema_problems(objs) == []
    assert pod_security_problems(objs) == []


def test_trainjob_from_the_code_is_valid():
    from audiomcq.infra.k8s.trainjob import render

    job = render("w2s-grpo", ["run", "--recipe", "weak_to_strong"])
    assert schema_problems([job]) == []


def test_schema_check_rejects_planted_mistakes():
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": "two", "selector": {}, "template": {}},
    }
    isvc = next(o for o in templates() if o["metadata"]["name"] == "audiomcq")
    isvc["spec"]["predictr"] = isvc["spec"].pop("predictor")
    runtime = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": "r"},
        "spec": {"containers": [{"name": "c", "image": "i", "argz": []}]},
    }
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    found = schema_problems([deployment, isvc, runtime, unknown])
    assert any("Deployment/x" in p and "'two' is not of type 'integer'" in p for p in found), found
    assert any("InferenceService/audiomcq" in p and "'predictr' was unexpected" in p for p in found), found
    assert any("ServingRuntime/r" in p and "'argz' was unexpected" in p for p in found), found
    assert any("Widget/w: no schema" in p for p in found), found


@needs_kubectl
def test_kustomize_failure_is_reported(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    with pytest.raises(RuntimeError, match=r"missing\.yaml"):
        kustomize(tmp_path)


# --- pod security, resources -------------------------------------------------------------------------------------


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_restricted_with_requests_and_limits(overlay):
    objs = rendered(overlay)
    assert sum(len(_pods(o)) for o in objs) >= 3
    assert pod_security_problems(objs) == []


def test_pod_security_check_rejects_planted_mistakes():
    pod = {
        "securityContext": {"runAsUser": 0},
        "hostNetwork": True,
        "containers": [
            {
                "name": "app",
                "image": "x",
                "resources": {"requests": {"cpu": "1"}},
                "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}},
            }
        ],
    }
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bad"},
        "spec": {"template": {"spec": pod}},
    }
    found = "\n".join(pod_security_problems([bad]))
    for expected in (
        "host namespace",
        "runAsNonRoot is not true",
        "runs as uid 0",
        "privilege escalation",
        "capabilities",
        "seccomp",
        "no requests for memory",
        "no limits for cpu, memory",
        "root filesystem is writable",
    ):
        assert expected in found, expected


@needs_kubectl
def test_pod_security_check_rejects_a_writable_root_filesystem_and_a_baseline_namespace():
    """From a clean overlay, one container whose root filesystem is writable again, and the namespace back at
    "baseline": each is reported, and nothing else."""
    objs = rendered("dev")
    pod = named(objs, "Deployment", "audiomcq-seaweedfs")["spec"]["template"]["spec"]
    del pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"]
    named(objs, "Namespace", NAMESPACE)["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = "baseline"
    assert pod_security_problems(objs) == [
        f"Namespace/{NAMESPACE}: enforces baseline, not restricted",
        "Deployment/audiomcq-seaweedfs/seaweedfs: the root filesystem is writable",
    ]


# --- images ---------------------------------------------------------------------------------------------------

DIGEST = re.compile(r"^[^@\s]+:[\w][\w.-]{0,127}@sha256:[0-9a-f]{64}$")  # name:tag@sha256:<64 hex>


def image_problems(objs: list[dict]) -> list[str]:
    """Third-party images are pinned by digest (with their tag beside it, for people); our own (``audiomcq-*``)
    are named by tag here and pinned at deploy time (skaffold, kustomize ``images:``), so they are left out."""
    found = []
    for obj in objs:
        for _, containers in _pods(obj):
            for c in containers:
                image = c.get("image")
                if image is None or image.rsplit("/", 1)[-1].startswith("audiomcq-"):
                    continue
                if not DIGEST.match(image):
                    found.append(
                        f"{obj['kind']}/{obj['metadata']['name']}/{c['name']}: {image} is not pinned by digest"
                    )
    return found


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_third_party_images_are_pinned_by_digest(overlay):
    objs = rendered(overlay)
    third_party = {c["image"] for o in objs for _, cs in _pods(o) for c in cs if "audiomcq-" not in c.get("image", "")}
    assert third_party and image_problems(objs) == []
    assert image_problems(templates()) == []


@needs_kubectl
def test_image_check_rejects_a_tag_pinned_image():
    objs = rendered("dev")
    init = named(objs, "Deployment", "audiomcq-seaweedfs")["spec"]["template"]["spec"]["initContainers"][0]
    init["image"] = init["image"].split("@")[0]  # the tag alone: whatever it points at when the node pulls
    assert image_problems(objs) == [
        f"Deployment/audiomcq-seaweedfs/s3-identity: {init['image']} is not pinned by digest"
    ]
    assert DIGEST.match("docker.io/prom/pushgateway:v1.11.3@sha256:" + "0" * 64)
    assert not DIGEST.match("docker.io/prom/pushgateway@sha256:" + "0" * 63)
