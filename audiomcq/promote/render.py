"""The KServe ``InferenceService`` serving a checkpoint, built with the kserve SDK's typed models.

The predictor is a ``model`` with our model format and ServingRuntime (which runs ``audiomcq serve``), the V1
protocol, the checkpoint's ``storageUri`` (``s3://…``; the storage initializer reads the S3 credentials through
the service account's Secret, by name), resources (GPUs with a node selector and tolerations when asked) and an
optional ``canaryTrafficPercent``. Canary traffic splitting needs Knative, so the deployment mode is Serverless,
and tag routing is on so the new revision has its own URL for the smoke query. The object is serialized as the
API server receives it (``audiomcq.infra.k8s.serialize``) and can be validated against the CRD's ``openAPIV3Schema``
(``validate``; the CRD file is not shipped in images).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiomcq.errors import AudioMCQError

log = logging.getLogger(__name__)
API_VERSION = "serving.kserve.io/v1beta1"
GPU = "nvidia.com/gpu"
TAG_ROUTING = "serving.kserve.io/enable-tag-routing"
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class Serving:
    """Where and how the model is served."""

    name: str = "audiomcq"
    namespace: str = "audiomcq"
    service_account: str = "audiomcq-s3"  # its Secret holds the S3 credentials (referenced by name)
    runtime: str = "audiomcq"  # the ServingRuntime running `audiomcq serve`
    model_format: str = "audiomcq"
    protocol: str = "v1"
    gpus: int = 0
    cpu: str = "4"
    memory: str = "16Gi"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, str], ...] = ()
    min_replicas: int = 1
    max_replicas: int = 1

    def __post_init__(self) -> None:
        if not DNS_1035.fullmatch(self.name):
            raise AudioMCQError(f"InferenceService name {self.name!r} must be a DNS-1035 label (a-z, 0-9, '-', <= 63)")
        if self.gpus < 0 or self.min_replicas < 0 or self.max_replicas < max(self.min_replicas, 1):
            raise AudioMCQError("gpus and replicas must be >= 0, and max replicas >= max(min replicas, 1)")


def parse_toleration(text: str) -> dict[str, str]:
    """``key[=value]:Effect`` (``nvidia.com/gpu:NoSchedule``) as a toleration (Exists without a value)."""
    spec, sep, effect = text.rpartition(":")
    if not sep or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute") or not spec:
        raise AudioMCQError(f"toleration {text!r}: expected KEY[=VALUE]:NoSchedule|PreferNoSchedule|NoExecute")
    key, eq, value = spec.partition("=")
    tol = {"key": key, "operator": "Equal" if eq else "Exists", "effect": effect}
    if eq:
        tol["value"] = value
    return tol


def render(
    storage_uri: str,
    serving: Serving = Serving(),
    canary: int | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The InferenceService as a plain object (what ``kubectl apply`` would send)."""
    import kserve

    from audiomcq.infra.k8s import serialize

    if canary is not None and not 0 <= canary <= 100:
        raise AudioMCQError(f"canary traffic {canary}% must be between 0 and 100")
    resources: dict[str, dict[str, Any]] = {
        "requests": {"cpu": serving.cpu, "memory": serving.memory},
        "limits": {"memory": serving.memory},
    }
    if serving.gpus:
        resources["requests"][GPU] = resources["limits"][GPU] = str(serving.gpus)
    model = kserve.V1beta1ModelSpec(
        model_format=kserve.V1beta1ModelFormat(name=serving.model_format),
        runtime=serving.runtime,
        protocol_version=serving.protocol,
        storage_uri=storage_uri,
        resources=resources,  # core types as plain dicts: only audiomcq.infra.k8s imports the kubernetes client
    )
    predictor = kserve.V1beta1PredictorSpec(
        model=model,
        service_account_name=serving.service_account,
        min_replicas=serving.min_replicas,
        max_replicas=serving.max_replicas,
        canary_traffic_percent=canary,
        node_selector=dict(serving.node_selector) or None,
        tolerations=[dict(t) for t in serving.tolerations] or None,
    )
    meta = {
        "name": serving.name,
        "namespace": serving.namespace,
        "labels": {"app.kubernetes.io/part-of": "audiomcq", "audiomcq/stage": "serve"},
        "annotations": {DEPLOYMENT_MODE: "Serverless", TAG_ROUTING: "true", **(annotations or {})},
    }
    isvc = kserve.V1beta1InferenceService(
        api_version=API_VERSION,
        kind="InferenceService",
        metadata=meta,
        spec=kserve.V1beta1InferenceServiceSpec(predictor=predictor),
    )
    obj = serialize(isvc)
    if obj["spec"]["predictor"]["model"].get("name") == "":  # the SDK's default; the container name is the runtime's
        del obj["spec"]["predictor"]["model"]["name"]
    return obj


@functools.lru_cache(maxsize=4)
def crd_schema(crd_path: str | Path, version: str = "v1beta1") -> dict[str, Any]:
    """The ``openAPIV3Schema`` of one version of a CRD file (read once; the KServe CRD is 2 MB of YAML)."""
    import yaml

    path = Path(crd_path)
    try:
        crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        versions = {v["name"]: v for v in crd["spec"]["versions"]}
        return versions[version]["schema"]["openAPIV3Schema"]
    except (yaml.YAMLError, KeyError, TypeError) as err:
        raise AudioMCQError(f"{path}: not a CRD with an openAPIV3Schema for {version} ({err!r})") from None


def _strict(schema: Any) -> Any:
    """The schema with unknown fields refused (``kubectl --validate=strict``), where the CRD does not keep them."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    keeps_unknown = "additionalProperties" in schema or schema.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in schema and not keeps_unknown:
        out["additionalProperties"] = False
    return out


@functools.lru_cache(maxsize=4)
def _validator(crd_path: str, strict: bool) -> Any:
    import jsonschema

    schema = crd_schema(crd_path)
    return jsonschema.Draft7Validator(_strict(schema) if strict else schema)


def validate(obj: dict[str, Any], crd_path: str | Path, strict: bool = True) -> list[str]:
    """Errors of ``obj`` against the CRD's schema (empty when valid), plus what KServe's webhook checks on names
    and canary traffic. Each error names the field."""
    validator = _validator(str(crd_path), strict)
    errors = [
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    ]
    name = (obj.get("metadata") or {}).get("name", "")
    if not DNS_1035.fullmatch(str(name)):
        errors.append(f"metadata.name: {name!r} is not a DNS-1035 label")
    canary = ((obj.get("spec") or {}).get("predictor") or {}).get("canaryTrafficPercent")
    if isinstance(canary, int) and not 0 <= canary <= 100:
        errors.append(f"spec.predictor.canaryTrafficPercent: {canary} is not between 0 and 100")
    return errors


def to_yaml(objects: Iterable[dict[str, Any]]) -> str:
    """Objects as one multi-document YAML stream."""
    import yaml

    return "---\n".join(yaml.safe_dump(o, sort_keys=False) for o in objects)
