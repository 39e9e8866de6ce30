"""What the deploy tests share: rendering the manifests and checking objects against schemas and Pod Security.

Overlays are built with ``kubectl kustomize`` (once per session); built-in kinds are checked against
kubernetes-validate's strict schemas and custom resources against their CRD's ``openAPIV3Schema`` (from
../shared/schemas, unknown fields rejected); pods against the "restricted" Pod Security Standard. Not a test module,
so pytest does not collect it; every user imports it as ``deploy.k8s_checks`` so they share one copy and one cache
(tests/infra checks the TrainJob the code emits with the same functions).
"""

from __future__ import annotations

import copy
import functools
import shutil
import subprocess
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
needs_kubectl = pytest.mark.skipif(not KUBECTL, reason="kubectl is not installed (Debian package kubectl)")


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


# --- pod security -----------------------------------------------------------------------------------------------


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
