"""KServe's controller played on the fake Kubernetes API server (kube_api.py), for the promotion tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fakes.kube_api import KubeAPIServer


def play_kserve(server: KubeAPIServer, url_for: Callable[[dict[str, Any]], str]) -> None:
    """Play KServe's controller (Serverless mode) for InferenceServices: each new predictor spec becomes a revision
    (a change of ``canaryTrafficPercent`` alone moves traffic, no new revision); with a canary share and a revision
    already rolled out, the new one gets the share and the old one the rest, else all of it. The status is Ready,
    with ``observedGeneration``, the revisions, traffic (the latest revision tagged ``latest`` with its own URL,
    ``url_for(obj)``) and the service URL."""
    revisions: dict[str, list[str]] = {}  # name -> predictor specs (without the canary share), in order

    def hook(event: str, obj: dict[str, Any]) -> None:
        if event == "DELETED":
            revisions.pop(obj["metadata"]["name"], None)
            return
        name, generation = obj["metadata"]["name"], obj["metadata"]["generation"]
        status = obj.get("status") or {}
        if status.get("observedGeneration") == generation:
            return
        predictor = {k: v for k, v in obj["spec"]["predictor"].items() if k != "canaryTrafficPercent"}
        specs = revisions.setdefault(name, [])
        key = json.dumps(predictor, sort_keys=True)
        if not specs or specs[-1] != key:
            specs.append(key)
        revision = f"{name}-predictor-{len(specs):05d}"
        before = (status.get("components") or {}).get("predictor") or {}
        rolled = before.get("latestRolledoutRevision")
        canary = obj["spec"]["predictor"].get("canaryTrafficPercent")
        url = url_for(obj)
        traffic = [{"revisionName": revision, "latestRevision": True, "tag": "latest", "url": url, "percent": 100}]
        if canary is not None and rolled and rolled != revision:
            traffic[0]["percent"] = canary
            traffic.append({"revisionName": rolled, "latestRevision": False, "tag": "prev", "percent": 100 - canary})
        else:
            rolled = revision
        ready = [{"type": t, "status": "True"} for t in ("IngressReady", "PredictorReady", "Ready")]
        obj["status"] = {
            "observedGeneration": generation,
            "url": f"http://{name}.{obj['metadata'].get('namespace')}.example.com",
            "conditions": ready,
            "components": {
                "predictor": {
                    "latestCreatedRevision": revision,
                    "latestReadyRevision": revision,
                    "latestRolledoutRevision": rolled,
                    "traffic": traffic,
                }
            },
        }

    server.on("inferenceservices", hook)
