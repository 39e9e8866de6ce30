"""The cluster manifests, checked offline.

Every overlay builds with ``kubectl kustomize``; built-in kinds pass kubernetes-validate's strict schemas and
custom resources their CRD's ``openAPIV3Schema`` (from ../shared/schemas, unknown fields rejected); the namespace
enforces the "restricted" Pod Security Standard and every pod meets it, on a read-only root filesystem, with
requests and limits; third-party images are pinned by digest; egress is denied by default and opened per workload
to exactly what it needs; RBAC is least-privilege; names match the code; the alerts pass ``promtool check rules``
and their unit tests; YAML is lint-clean; no secret value is committed. Each check is also shown to reject a planted
mistake.
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from conftest import REPO

SCHEMAS = REPO.parent / "shared" / "schemas"
MANIFESTS = REPO / "manifests"
OVERLAYS = ("local", "dev", "prod")
NAMESPACE = "audiomcq"
KUBE_VERSIONS = ("1.30.0", kubernetes_validate.latest_version() + ".0")  # oldest supported, newest known
CRDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "kserve/serving.kserve.io_inferenceservices.yaml",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "kserve/serving.kserve.io_servingruntimes.yaml",
    ("trainer.kubeflow.org/v1alpha1", "TrainJob"): "kubeflow-trainer/trainer.kubeflow.org_trainjobs.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "prometheus-operator/monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com/v1", "PodMonitor"): "prometheus-operator/monitoring.coreos.com_podmonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheus-operator/monitoring.coreos.com_prometheusrules.yaml",
}
KUBECTL = shutil.which("kubectl")
PROMTOOL = shutil.which("promtool")
needs_kubectl = pytest.mark.skipif(not KUBECTL, reason="kubectl is not installed (Debian package kubectl)")
needs_promtool = pytest.mark.skipif(not PROMTOOL, reason="promtool is not installed (Debian package prometheus)")


# --- building -------------------------------------------------------------------------------------------------


def kustomize(path: Path) -> list[dict]:
    """The objects ``kubectl kustomize path`` renders; raises with kustomize's message when it fails."""
    out = subprocess.run([KUBECTL, "kustomize", str(path)], check=False, capture_output=True, text=True, timeout=60)
    if out.returncode:
        raise RuntimeError(f"kubectl kustomize {path}: {out.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@functools.cache
def _rendered(overlay: str) -> tuple[dict, ...]:
    return tuple(kustomize(MANIFESTS / "overlays" / overlay))


def rendered(overlay: str) -> list[dict]:
    """An overlay's objects (built once per session; a fresh copy each call, free to change)."""
    return copy.deepcopy(list(_rendered(overlay)))


def templates() -> list[dict]:
    return [
        doc
        for path in sorted((MANIFESTS / "templates").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
    ]


def named(objs: list[dict], kind: str, name: str) -> dict:
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)


# --- schema validation ----------------------------------------------------------------------------------------


def _strict(schema: dict) -> dict:
    """The CRD schema with unknown fields rejected, as the API server's strict field validation does: every object
    with ``properties`` and no ``additionalProperties`` (or preserve-unknown-fields) gets ``additionalProperties:
    false``."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_strict(v) for v in schema]
    return schema


@functools.cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    crd = next(doc for doc in yaml.safe_load_all((SCHEMAS / CRDS[api_version, kind]).read_text()) if doc)
    version = api_version.rsplit("/", 1)[1]
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]
    return jsonschema.Draft7Validator(_strict(schema))


def schema_problems(objs: list[dict]) -> list[str]:
    """Every object against its schema: custom resources against their CRD, built-in kinds against Kubernetes'
    strict schemas for each version in ``KUBE_VERSIONS``; a kind with neither is itself a problem (the
    kubernetes-validate CLI only warns "Couldn't find schema" and exits 0)."""
    found = []
    for obj in objs:
        key = (obj.get("apiVersion"), obj.get("kind"))
        where = f"{key[1]}/{obj.get('metadata', {}).get('name')}"
        if key in CRDS:
            found += [f"{where}: {e.json_path}: {e.message}" for e in crd_validator(*key).iter_errors(obj)]
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                found.append(f"{where}: no schema ({key[0]} is neither a built-in API nor a known CRD)")
                break
            except kubernetes_validate.ValidationError as err:
                found.append(f"{where} (Kubernetes {version}): {err.message}")
    return found


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


# --- pod security, resources, RBAC --------------------------------------------------------------------------------


def _pods(obj: dict) -> list[tuple[dict, list[dict]]]:
    """(pod-level spec, containers) of every pod an object makes; ServingRuntimes have container-level only."""
    kind, spec = obj["kind"], obj.get("spec", {})
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        pod = spec["template"]["spec"]
    elif kind == "CronJob":
        pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    elif kind == "Pod":
        pod = spec
    elif kind == "ServingRuntime":
        return [({}, spec.get("containers", []))]
    elif kind == "InferenceService":
        pred = spec["predictor"]
        return [
            (pred, [pred["model"], *pred.get("containers", [])] if "model" in pred else pred.get("containers", []))
        ]
    else:
        return []
    return [(pod, pod.get("initContainers", []) + pod.get("containers", []))]


def pod_security_problems(objs: list[dict]) -> list[str]:
    """The "restricted" Pod Security Standard (non-root, no privilege escalation, all capabilities dropped,
    seccomp RuntimeDefault, no host namespaces or paths), a read-only root filesystem (writable emptyDirs where a
    process writes), plus CPU and memory requests and limits, per container; a Namespace must enforce
    "restricted"."""
    found = []
    for obj in objs:
        if obj["kind"] == "Namespace":
            enforced = obj["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce")
            if enforced != "restricted":
                found.append(f"Namespace/{obj['metadata']['name']}: enforces {enforced}, not restricted")
        for pod, containers in _pods(obj):
            where = f"{obj['kind']}/{obj['metadata']['name']}"
            psc = pod.get("securityContext", {})
            if any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")):
                found.append(f"{where}: uses a host namespace")
            if any("hostPath" in v for v in pod.get("volumes", [])):
                found.append(f"{where}: mounts a hostPath")
            for c in containers:
                at = f"{where}/{c.get('name', 'model')}"
                sc = c.get("securityContext", {})
                if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
                    found.append(f"{at}: runAsNonRoot is not true")
                if sc.get("runAsUser", psc.get("runAsUser")) == 0:
                    found.append(f"{at}: runs as uid 0")
                if sc.get("allowPrivilegeEscalation") is not False or sc.get("privileged"):
                    found.append(f"{at}: privilege escalation is not turned off")
                if sc.get("readOnlyRootFilesystem") is not True:
                    found.append(f"{at}: the root filesystem is writable")
                caps = sc.get("capabilities", {})
                if "ALL" not in caps.get("drop", []) or caps.get("add"):
                    found.append(f"{at}: capabilities are not all dropped")
                seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
                if seccomp not in ("RuntimeDefault", "Localhost"):
                    found.append(f"{at}: seccomp profile is {seccomp}, not RuntimeDefault")
                res = c.get("resources", {})
                for part in ("requests", "limits"):
                    missing = {"cpu", "memory"} - set(res.get(part, {}))
                    if missing:
                        found.append(f"{at}: no {part} for {', '.join(sorted(missing))}")
    return found


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


# --- network policies ---------------------------------------------------------------------------------------------


class Peer:
    """One end of a connection: a pod (its namespace and labels) or an address outside the cluster."""

    def __init__(self, what: str, namespace: str | None = None, labels: dict | None = None, ip: str = "") -> None:
        self.what, self.namespace, self.labels, self.ip = what, namespace, labels or {}, ip


def _selects(selector: dict, labels: dict) -> bool:
    """A label selector (matchLabels, matchExpressions) against labels; an empty selector selects everything."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        key, values = e["key"], e.get("values", [])
        if {
            "In": labels.get(key) not in values,
            "NotIn": labels.get(key) in values if key in labels else False,
            "Exists": key not in labels,
            "DoesNotExist": key in labels,
        }[e["operator"]]:
            return False
    return True


def _in_block(ip: str, block: dict) -> bool:
    address = ipaddress.ip_address(ip)
    inside = address in ipaddress.ip_network(block["cidr"])
    return inside and not any(address in ipaddress.ip_network(cidr) for cidr in block.get("except", []))


def _reaches(rule: dict, dest: Peer, port: int, protocol: str, namespace: str) -> bool:
    """Whether one egress rule of a policy in ``namespace`` lets traffic to ``dest``:``port``/``protocol`` out."""
    ports = rule.get("ports")
    if ports and not any(
        p.get("protocol", "TCP") == protocol and p.get("port", port) <= port <= p.get("endPort", p.get("port", port))
        for p in ports
    ):
        return False
    if "to" not in rule:  # a rule without peers reaches every destination on its ports
        return True
    for to in rule["to"]:
        if "ipBlock" in to:
            if dest.ip and _in_block(dest.ip, to["ipBlock"]):
                return True
            continue
        if dest.namespace is None:  # pod and namespace selectors only ever select pods
            continue
        ns = to.get("namespaceSelector")
        in_ns = (
            dest.namespace == namespace
            if ns is None
            else _selects(ns, {"kubernetes.io/metadata.name": dest.namespace})
        )
        if in_ns and _selects(to.get("podSelector", {}), dest.labels):
            return True
    return False


def egress_allowed(objs: list[dict], pod: Peer, dest: Peer, port: int, protocol: str = "TCP") -> bool:
    """What the NetworkPolicy API says a network plugin lets through: a pod no egress policy selects may go
    anywhere; a selected one only where a rule of one of the policies selecting it lets it."""
    policies = [
        o
        for o in objs
        if o["kind"] == "NetworkPolicy"
        and "Egress" in o["spec"].get("policyTypes", [])
        and o["metadata"].get("namespace", NAMESPACE) == pod.namespace
        and _selects(o["spec"]["podSelector"], pod.labels)
    ]
    if not policies:
        return True
    return any(
        _reaches(rule, dest, port, protocol, pod.namespace) for p in policies for rule in p["spec"].get("egress", [])
    )


def _template_labels(objs: list[dict], kind: str, name: str) -> dict:
    return named(objs, kind, name)["spec"]["template"]["metadata"].get("labels", {})


def egress_problems(objs: list[dict]) -> list[str]:
    """Egress is denied unless allowed, every workload reaches what it needs, and the servers that need nothing
    outside (the Pushgateway, the S3 store) cannot reach the outside. The platform's pods are named by the labels
    their controllers set (KFP's v2_component, JobSet's jobset-name, KServe's inferenceservice)."""
    found = []
    deny = [
        o
        for o in objs
        if o["kind"] == "NetworkPolicy"
        and o["spec"]["podSelector"] == {}
        and o["spec"].get("policyTypes") == ["Egress"]
        and not o["spec"].get("egress")
    ]
    if not deny:
        found.append("no default-deny egress policy")
    dns = Peer("DNS", "kube-system", {"k8s-app": "kube-dns"})
    push = Peer("the Pushgateway", NAMESPACE, _template_labels(objs, "Deployment", "audiomcq-pushgateway"))
    internet = Peer("S3 or an LLM API outside the cluster", ip="203.0.113.10")
    api = Peer("the Kubernetes API", ip="10.0.0.1")
    kfp = Peer("the KFP API", "kubeflow", {"app": "ml-pipeline"})
    mlmd = Peer("ML Metadata", "kubeflow", {"component": "metadata-grpc-server"})
    llm = Peer("the in-cluster LLM endpoint", "llm", {"app": "vllm"})
    gateway = Peer("the serving gateway", "istio-system", {"app": "knative-local-gateway"})
    istiod = Peer("istiod", "istio-system", {"app": "istiod"})
    step = Peer("a pipeline step", NAMESPACE, {"pipelines.kubeflow.org/v2_component": "true"})
    node = Peer("a TrainJob node", NAMESPACE, {"jobset.sigs.k8s.io/jobset-name": "w2s-grpo"})
    predictor = Peer("a predictor", NAMESPACE, {"serving.kserve.io/inferenceservice": "audiomcq"})
    pushgateway = Peer("the Pushgateway", NAMESPACE, push.labels)
    peer = Peer("another node of the job", NAMESPACE, node.labels)
    needs = [(p, dns, 53, "UDP") for p in (step, node, predictor)] + [(p, dns, 53, "TCP") for p in (step, node)]
    needs += [(p, push, 9091, "TCP") for p in (step, node)]
    needs += [(p, istiod, 15012, "TCP") for p in (predictor, pushgateway)]
    needs += [
        (step, dest, port, "TCP")
        for dest, port in (
            (kfp, 8887),
            (mlmd, 8080),
            (internet, 443),
            (api, 6443),
            (api, 443),
            (llm, 8000),
            (gateway, 8081),
        )
    ]
    needs += [(node, internet, 443, "TCP"), (node, peer, 29500, "TCP"), (predictor, internet, 443, "TCP")]
    never = [(pushgateway, internet, 443), (predictor, kfp, 8887), (predictor, api, 6443), (node, kfp, 8887)]
    if any(o["kind"] == "Deployment" and o["metadata"]["name"] == "audiomcq-seaweedfs" for o in objs):
        store = Peer("the S3 store", NAMESPACE, _template_labels(objs, "Deployment", "audiomcq-seaweedfs"))
        bucket = Peer("the bucket Job", NAMESPACE, _template_labels(objs, "Job", "audiomcq-seaweedfs-bucket"))
        needs += [(p, store, 8333, "TCP") for p in (step, node, predictor, bucket)] + [(bucket, dns, 53, "UDP")]
        needs += [(store, store, 19333, "TCP")]  # its master's gRPC port, on its own address
        never += [(store, internet, 443), (bucket, internet, 443)]
    for pod, dest, port, protocol in needs:
        if not egress_allowed(objs, pod, dest, port, protocol):
            found.append(f"{pod.what} cannot reach {dest.what} ({port}/{protocol})")
    for pod, dest, port in never:
        if egress_allowed(objs, pod, dest, port):
            found.append(f"{pod.what} can reach {dest.what} ({port}/TCP)")
    return found


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_egress_is_denied_by_default_and_opened_per_workload(overlay):
    assert egress_problems(rendered(overlay)) == []


@needs_kubectl
def test_egress_check_rejects_planted_mistakes():
    """Without the pipeline steps' policy the steps reach nothing but DNS and the Pushgateway; without the
    default deny the check says so; a predictor policy that selects every pod opens the outside to the
    Pushgateway."""
    objs = rendered("dev")
    without = [o for o in objs if o["metadata"]["name"] != "audiomcq-egress-pipeline-steps"]
    found = egress_problems(without)
    for what in ("the KFP API", "ML Metadata", "S3 or an LLM API", "the Kubernetes API", "the serving gateway"):
        assert any(f.startswith(f"a pipeline step cannot reach {what}") for f in found), what
    assert not any("the Pushgateway" in f or "DNS" in f for f in found)
    assert egress_problems([o for o in objs if o["metadata"]["name"] != "audiomcq-default-deny-egress"]) == [
        "no default-deny egress policy"
    ]
    named(objs, "NetworkPolicy", "audiomcq-egress-predictors")["spec"]["podSelector"] = {}
    assert "the Pushgateway can reach S3 or an LLM API outside the cluster (443/TCP)" in egress_problems(objs)
    assert egress_allowed(objs, Peer("x", "elsewhere"), Peer("y", ip="203.0.113.10"), 443)  # no policy: open


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


# --- secrets ------------------------------------------------------------------------------------------------------

SECRET_PATTERNS = {
    "an AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "an AWS secret access key": re.compile(r"(?i)aws_secret_access_key[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+=]{40}"),
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "a password": re.compile(r"(?i)\bpassword[\"']?\s*:\s*[\"']?[^\s\"'{}<>$][^\s\"']*"),
    "a Secret with values": re.compile(r"(?m)^kind:\s*Secret\s*$(?=[\s\S]*?^(?:data|stringData):)"),
}
SCANNED = ("manifests", "pipelines/compiled", "images", "skaffold.yaml")


def secret_findings(text: str) -> list[str]:
    return [what for what, pattern in SECRET_PATTERNS.items() if pattern.search(text)]


def test_no_secret_value_is_committed():
    paths = [p for root in SCANNED for p in ([REPO / root] if (REPO / root).is_file() else (REPO / root).rglob("*"))]
    files = [p for p in paths if p.is_file() and "__pycache__" not in p.parts]
    assert len(files) > 20
    for path in files:
        text = path.read_text(errors="replace")
        assert secret_findings(text) == [], path
        if path.suffix in (".yaml", ".yml"):
            for doc in yaml.safe_load_all(text):
                if isinstance(doc, dict) and doc.get("kind") == "Secret":
                    assert not doc.get("data") and not doc.get("stringData"), path


def test_secret_scan_finds_planted_values():
    key_id = "AKIA" + "IOSFODNN7" + "EXAMPLE"  # AWS's documentation example, assembled so this file holds no key
    secret = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
    planted = {
        "an AWS access key id": f"env:\n  - name: AWS_ACCESS_KEY_ID\n    value: {key_id}\n",
        "an AWS secret access key": f"AWS_SECRET_ACCESS_KEY={secret}\n",
        "a private key": "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIE\n",
        "a password": "auth:\n  password: hunter2\n",
        "a Secret with values": "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  k: aGk=\n",
    }
    for what, text in planted.items():
        assert what in secret_findings(text), what
    assert secret_findings("password: ''\npasswordFrom: {secretKeyRef: {name: s}}\nkind: Secret\n") == []


# --- lint and alerts ---------------------------------------------------------------------------------------------


def yamllint(*paths: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "yamllint", "-c", str(REPO / ".yamllint"), "-f", "parsable", *map(str, paths)]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60, cwd=REPO)


def test_yaml_is_lint_clean(tmp_path):
    out = yamllint(MANIFESTS, REPO / "skaffold.yaml", REPO / ".yamllint")
    assert out.returncode == 0, out.stdout + out.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\na: 2\nb:   [1,2]   \n")
    out = yamllint(bad)
    assert out.returncode != 0 and "key-duplicates" in out.stdout and "trailing-spaces" in out.stdout


def _rules_and_tests(tmp_path: Path) -> tuple[Path, Path]:
    """The PrometheusRule's groups as a Prometheus rules file, beside a copy of its unit tests."""
    rule = yaml.safe_load((MANIFESTS / "base" / "monitoring" / "alerts.yaml").read_text())
    rules = tmp_path / "alerts.rules.yaml"
    rules.write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    tests = tmp_path / "alerts.test.yaml"
    shutil.copy(MANIFESTS / "base" / "monitoring" / "tests" / "alerts.test.yaml", tests)
    return rules, tests


def promtool(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PROMTOOL, *map(str, args)], check=False, capture_output=True, text=True, timeout=60, cwd=cwd
    )


@needs_promtool
def test_alert_rules_check_and_pass_their_unit_tests(tmp_path):
    rules, tests = _rules_and_tests(tmp_path)
    out = promtool("check", "rules", rules, cwd=tmp_path)
    assert out.returncode == 0 and "SUCCESS: 9 rules found" in out.stdout, out.stdout + out.stderr
    out = promtool("test", "rules", tests, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    # every alert has a unit test that expects it to fire
    tested = {
        t["alertname"]
        for case in yaml.safe_load(tests.read_text())["tests"]
        for t in case["alert_rule_test"]
        if t.get("exp_alerts")
    }
    alerts = {r["alert"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]}
    assert tested == alerts


@needs_promtool
def test_promtool_rejects_planted_mistakes(tmp_path):
    rules, tests = _rules_and_tests(tmp_path)
    text = rules.read_text()
    rules.write_text(text.replace("> 0.05", "> 0.5"))  # an error-rate threshold that would never fire
    out = promtool("test", "rules", tests, cwd=tmp_path)
    assert out.returncode != 0 and "AudiomcqServeErrorRate" in out.stdout + out.stderr
    rules.write_text(
        text.replace("max_over_time(audiomcq_train_reward[2h])", "max_over_time(audiomcq_train_reward)", 1)
    )
    out = promtool("check", "rules", rules, cwd=tmp_path)
    assert out.returncode != 0


def _metric_names(expr: str) -> set[str]:
    """Series names in a PromQL expression (identifiers followed by a selector, range or end of a term)."""
    keywords = {
        "by",
        "on",
        "unless",
        "and",
        "or",
        "without",
        "ignoring",
        "bool",
        "time",
        "rate",
        "sum",
        "max",
        "max_over_time",
        "histogram_quantile",
        "le",
    }
    names = set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?=\{|\[|\)|\s|$)", re.sub(r"\{[^}]*\}", "{}", expr)))
    labels = set(re.findall(r"\(([a-z_, ]+)\)", expr))
    label_names = {n.strip() for group in labels for n in group.split(",")}
    return {n for n in names if n not in keywords and n not in label_names and not n[0].isdigit()}


def exported_metric_names() -> set[str]:
    """Series our code exports, and the third-party ones the alerts rely on (with where they come from)."""
    import importlib.util

    from prometheus_client.metrics import MetricWrapperBase

    import audiomcq.serve.metrics as serve_metrics
    from audiomcq.infra.metrics import metric_name

    names = set()
    for metric in vars(serve_metrics).values():
        kind = metric._type if isinstance(metric, MetricWrapperBase) else None
        if kind == "counter":
            names.add(metric._name + "_total")
        elif kind == "histogram":
            names.update(metric._name + s for s in ("_bucket", "_sum", "_count"))

    def source(module: str) -> str:
        return Path(importlib.util.find_spec(module).origin).read_text()

    # training: the keys trl's GRPO trainer and transformers' Trainer log, pushed as audiomcq_train_<key>
    logged = {
        "reward": "trl.trainer.grpo_trainer",
        "frac_reward_zero_std": "trl.trainer.grpo_trainer",
        "train_loss": "transformers.trainer",
    }
    for key, module in logged.items():
        assert f'"{key}"' in source(module), f"{module} no longer logs {key}"
        names.add(metric_name("audiomcq_train", key))
    assert "request_predict_seconds" in source("kserve.metrics")
    names.update({"request_predict_seconds_bucket", "up", "push_time_seconds"})  # kserve; Prometheus; Pushgateway
    names.add("vllm:e2e_request_latency_seconds_bucket")  # vLLM's request histogram (not installed here)
    return names


def test_alerts_use_series_the_code_exports():
    rule = yaml.safe_load((MANIFESTS / "base" / "monitoring" / "alerts.yaml").read_text())
    used = {n for g in rule["spec"]["groups"] for r in g["rules"] for n in _metric_names(r["expr"])}
    assert {"audiomcq_serve_requests_total", "audiomcq_train_reward", "push_time_seconds"} <= used
    assert used <= exported_metric_names(), used - exported_metric_names()
    assert "audiomcq_serve_request_total" not in exported_metric_names()  # a misspelling is caught
