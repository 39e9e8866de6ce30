"""The one cluster adapter: the only package of ``audiomcq`` that imports ``kubernetes`` (and the Kubeflow SDK).

Everything else hands it plain dicts (manifests as ``kubectl`` sees them) and gets plain dicts back.
"""

from audiomcq.infra.k8s.client import (
    CLUSTER_TRAINING_RUNTIME,
    INFERENCE_SERVICE,
    TRAIN_JOB,
    Kube,
    KubeError,
    Resource,
    api_client,
    configuration,
    default_namespace,
    serialize,
    status_summary,
    wait_for,
)

__all__ = [
    "CLUSTER_TRAINING_RUNTIME",
    "INFERENCE_SERVICE",
    "TRAIN_JOB",
    "Kube",
    "KubeError",
    "Resource",
    "api_client",
    "configuration",
    "default_namespace",
    "serialize",
    "status_summary",
    "wait_for",
]
