"""Who the manifests let do what, and the names they share with the code, checked offline.

RBAC is least-privilege: namespaced Roles only, the pipeline's account gets exactly what the pipelines do, the
predictors' none; the opt-in trainer-sdk component adds only its runtime reads. The ConfigMap's keys, the Secret and
Service names, node pool, images and model formats match what the pipelines and TrainJobs use. Each check is also
shown to reject a planted mistake.
"""

from __future__ import annotations

import pytest
from deploy.k8s_checks import (
    MANIFESTS,
    NAMESPACE,
    OVERLAYS,
    kustomize,
    named,
    needs_kubectl,
    rendered,
    schema_problems,
    templates,
)

# --- RBAC ---------------------------------------------------------------------------------------------------------

ALLOWED_RULES = {
    ("serving.kserve.io", "inferenceservices"): {"create", "get", "list", "watch", "patch", "delete"},
    ("trainer.kubeflow.org", "trainjobs"): {"create", "get", "list", "watch", "patch", "delete"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "pods/log"): {"get", "list", "watch"},
}


def rbac_problems(objs: list[dict]) -> list[str]:
    """Only namespaced Roles; the pipeline runner gets exactly ``ALLOWED_RULES``; the predictor account gets no role
    and no token."""
    found = [f"{o['kind']}/{o['metadata']['name']}: cluster-wide" for o in objs if o["kind"].startswith("Cluster")]
    granted: dict[tuple[str, str], set[str]] = {}
    for role in (o for o in objs if o["kind"] == "Role"):
        for rule in role["rules"]:
            if rule.get("resourceNames") or rule.get("nonResourceURLs"):
                found.append(f"Role/{role['metadata']['name']}: unexpected rule {rule}")
            for group in rule.get("apiGroups", []):
                for resource in rule.get("resources", []):
                    granted.setdefault((group, resource), set()).update(rule.get("verbs", []))
    for key, verbs in granted.items():
        extra = verbs - ALLOWED_RULES.get(key, set())
        if extra:
            found.append(f"{key[0] or 'core'}/{key[1]}: verbs beyond the pipeline's needs: {sorted(extra)}")
    if granted != ALLOWED_RULES:
        found.append(f"granted {granted}, expected exactly {ALLOWED_RULES}")
    for binding in (o for o in objs if o["kind"] == "RoleBinding"):
        subjects = [(s["kind"], s["name"], s.get("namespace")) for s in binding["subjects"]]
        if subjects != [("ServiceAccount", "audiomcq-pipeline", binding["metadata"]["namespace"])]:
            found.append(f"RoleBinding/{binding['metadata']['name']}: subjects {subjects}")
    predictor = named(objs, "ServiceAccount", "audiomcq-s3")
    if predictor.get("automountServiceAccountToken") is not False:
        found.append("ServiceAccount/audiomcq-s3: mounts a token")
    return found


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rbac_is_least_privilege(overlay):
    assert rbac_problems(rendered(overlay)) == []


@needs_kubectl
def test_rbac_check_rejects_planted_grants():
    objs = rendered("prod")
    role = named(objs, "Role", "audiomcq-pipeline")
    role["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})
    role["rules"][0]["verbs"].append("update")
    named(objs, "RoleBinding", "audiomcq-pipeline")["subjects"].append(
        {"kind": "ServiceAccount", "name": "audiomcq-s3", "namespace": NAMESPACE}
    )
    objs.append({"kind": "ClusterRoleBinding", "metadata": {"name": "x"}})
    found = "\n".join(rbac_problems(objs))
    for expected in ("core/secrets", "['update']", "subjects", "ClusterRoleBinding/x: cluster-wide"):
        assert expected in found, expected


@needs_kubectl
def test_trainer_sdk_component_adds_only_the_runtime_reads(tmp_path):
    """The opt-in component for following TrainJobs with the Kubeflow SDK: one more namespaced read and one
    cluster-wide read, both ``get`` on training runtimes, for the pipeline's account only."""
    import os

    rel = os.path.relpath(MANIFESTS, tmp_path)  # kustomize refuses absolute paths
    (tmp_path / "kustomization.yaml").write_text(
        f"resources:\n  - {rel}/overlays/prod\ncomponents:\n  - {rel}/components/trainer-sdk\n"
    )
    objs = kustomize(tmp_path)
    assert schema_problems(objs) == []
    role = named(objs, "Role", "audiomcq-pipeline")
    assert role["rules"][-1] == {
        "apiGroups": ["trainer.kubeflow.org"],
        "resources": ["trainingruntimes"],
        "verbs": ["get"],
    }
    cluster = [o for o in objs if o["kind"].startswith("Cluster")]
    assert [(o["kind"], o["metadata"]["name"]) for o in cluster] == [
        ("ClusterRole", "audiomcq-read-cluster-training-runtimes"),
        ("ClusterRoleBinding", "audiomcq-read-cluster-training-runtimes"),
    ]
    assert cluster[0]["rules"] == [
        {"apiGroups": ["trainer.kubeflow.org"], "resources": ["clustertrainingruntimes"], "verbs": ["get"]}
    ]
    assert cluster[1]["subjects"] == [{"kind": "ServiceAccount", "name": "audiomcq-pipeline", "namespace": NAMESPACE}]


# --- names shared with the code -----------------------------------------------------------------------------------


def _refs(obj, kind: str) -> list[dict]:
    """Every ``secretKeyRef`` / ``configMapKeyRef`` inside an object."""
    if isinstance(obj, dict):
        return ([obj[kind]] if kind in obj else []) + [r for v in obj.values() for r in _refs(v, kind)]
    if isinstance(obj, list):
        return [r for v in obj for r in _refs(v, kind)]
    return []


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_names_match_the_pipelines_and_trainjobs(overlay, monkeypatch):
    from audiomcq.components.images import DEFAULTS
    from audiomcq.infra.k8s.trainjob import Cluster
    from audiomcq.pipelines import placement

    for var in ("AUDIOMCQ_GPU_NODE_SELECTOR", "AUDIOMCQ_GPU_TOLERATION", "AUDIOMCQ_S3_SECRET", "AUDIOMCQ_CONFIGMAP"):
        monkeypatch.delenv(var, raising=False)
    objs = rendered(overlay)
    config = named(objs, "ConfigMap", "audiomcq-config")
    assert set(config["data"]) == set(placement.CONFIG_KEYS)
    assert (Cluster().namespace, Cluster().config_map, Cluster().s3_secret) == (
        NAMESPACE,
        "audiomcq-config",
        "audiomcq-s3",
    )
    for ref in _refs(objs, "secretKeyRef"):
        assert ref["name"] == "audiomcq-s3" and ref["key"] in placement.S3_KEYS, ref
    for ref in _refs(objs, "configMapKeyRef"):
        assert ref["name"] == "audiomcq-config" and ref["key"] in placement.CONFIG_KEYS, ref
    service = named(objs, "Service", "audiomcq-pushgateway")
    assert (
        config["data"]["pushgateway"] == f"audiomcq-pushgateway.{NAMESPACE}.svc:{service['spec']['ports'][0]['port']}"
    )
    host = config["data"]["s3_endpoint"].split(":")[0]
    if overlay in ("local", "dev"):
        store = named(objs, "Service", "audiomcq-seaweedfs")
        assert (
            config["data"]["s3_endpoint"] == f"audiomcq-seaweedfs.{NAMESPACE}.svc:{store['spec']['ports'][0]['port']}"
        )
        assert config["data"]["s3_secure"] == "false"
    else:
        assert not host.endswith(".svc") and config["data"]["s3_secure"] == "true"
    label, value, taint = placement._pool()
    gpu = named(objs, "ServingRuntime", "audiomcq-vllm")["spec"]
    assert gpu["nodeSelector"] == {label: value}
    assert gpu["tolerations"] == [{"key": taint, "operator": "Exists", "effect": "NoSchedule"}]
    assert gpu.get("disabled", False) is (overlay == "local")
    images = {c["image"] for o in objs if o["kind"] == "ServingRuntime" for c in o["spec"]["containers"]}
    assert images == {DEFAULTS["serve"], DEFAULTS["infer"]}
    predictor_sa = {o["spec"]["predictor"]["serviceAccountName"] for o in templates()}
    assert predictor_sa == {"audiomcq-s3"} and named(objs, "ServiceAccount", "audiomcq-s3")["secrets"] == [
        {"name": "audiomcq-s3"}
    ]
    runtimes = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ServingRuntime"}
    for isvc in templates():
        model = isvc["spec"]["predictor"]["model"]
        formats = [f["name"] for f in runtimes[model["runtime"]]["spec"]["supportedModelFormats"]]
        assert model["modelFormat"]["name"] in formats
