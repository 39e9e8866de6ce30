"""A Kubeflow Trainer ``TrainJob`` for a multi-node ``audiomcq train`` run: rendered as a plain object, and run to its
end from a pipeline step (``run_trainjob``).

The trainer container runs the same ``audiomcq train`` command a single node would, with ``--nnodes`` and
``--nproc-per-node``; the runtime (a ``ClusterTrainingRuntime`` such as ``torch-distributed``) sets torchrun's
``PET_*`` variables (node rank, master address), which the relaunch under torchrun reads. S3 credentials come from
a Secret by name, endpoints from a ConfigMap, as in the pipelines. Nothing here talks to a cluster: the object is
validated against the TrainJob CRD in tests and applied by whoever holds the credentials (``kubectl apply``, the
Kubeflow SDK, or a pipeline step).

The node pods pass the Pod Security "restricted" profile, patched onto the runtime's node job: the images' non-root
user, no privilege escalation, no capabilities, the runtime's default seccomp profile, and a read-only root
filesystem. What training writes goes to emptyDir volumes: ``$HOME`` (the working directory, and the Hugging Face,
Triton and DeepSpeed caches under it), ``/tmp`` (torch's compile caches, temporary files) and the staging area
``AUDIOMCQ_STAGING`` points at (the inputs a node localizes from S3, and the run it writes before uploading it).

``run_trainjob`` creates the rendered object through the Kubernetes API as it is: the Kubeflow SDK's own ``train()``
builds jobs from its trainer types, which cannot carry env vars from Secrets by name. Following it is the SDK's job:
``TrainerClient.wait_for_job_status`` reads the TrainJob's conditions and its node pods; each status change is logged,
and when the job fails, the step fails with the job's own reason and the last lines of node-0's log. A job of that name
that already exists (the step was retried after its pod was lost) is followed rather than created again, so a retry
never trains twice.
"""

from __future__ import annotations

import logging
import os
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from audiomcq.errors import AudioMCQError
from audiomcq.infra.k8s.client import TRAIN_JOB, Kube, KubeError, configuration, status_summary

log = logging.getLogger(__name__)

API = "trainer.kubeflow.org/v1alpha1"
# ConfigMap key -> environment variable, the same for pipeline steps (pipelines/placement.py) and TrainJob nodes
# (kube_namespace: where steps create TrainJobs, and `audiomcq promote` without --namespace its InferenceService,
# when that is not their own namespace; the pipeline's promotion step uses its `serving` parameter's namespace)
CONFIG_KEYS = {
    "s3_endpoint": "AUDIOMCQ_S3_ENDPOINT",
    "s3_secure": "AUDIOMCQ_S3_SECURE",
    "s3_region": "AUDIOMCQ_S3_REGION",
    "pushgateway": "AUDIOMCQ_PUSHGATEWAY",
    "kube_namespace": "AUDIOMCQ_KUBE_NAMESPACE",
}
NODE = "node"  # the replicated job and the trainer container of Kubeflow Trainer's torch runtimes
IMAGE_USER = 10001  # the non-root USER (uid and gid) of every audiomcq image (images/*/Dockerfile)
IMAGE_HOME = "/home/audiomcq"  # the images' HOME and working directory
STAGING = "/staging"  # AUDIOMCQ_STAGING on a node
# the writable directories of a node whose root filesystem is read-only: emptyDir volume name -> mount path
SCRATCH = {"audiomcq-home": IMAGE_HOME, "audiomcq-tmp": "/tmp", "audiomcq-staging": STAGING}


def gpu_pool() -> tuple[dict[str, str], str]:
    """The GPU node pool's node selector and the taint key its nodes carry: ``AUDIOMCQ_GPU_NODE_SELECTOR``
    (``label=value``) and ``AUDIOMCQ_GPU_TOLERATION``, read where objects are rendered (compile or submit time)."""
    label, _, value = os.environ.get("AUDIOMCQ_GPU_NODE_SELECTOR", "nvidia.com/gpu.present=true").partition("=")
    return {label: value}, os.environ.get("AUDIOMCQ_GPU_TOLERATION", "nvidia.com/gpu")


@dataclass(frozen=True)
class Cluster:
    """Where the job runs and how big each node is."""

    namespace: str = "audiomcq"
    image: str = "audiomcq-train:dev"
    runtime: str = "torch-distributed"
    nodes: int = 2
    gpus_per_node: int = 8
    cpu_per_node: str = "64"
    memory_per_node: str = "1000Gi"
    # the names the pipelines compile in (AUDIOMCQ_S3_SECRET, AUDIOMCQ_CONFIGMAP at render time), so a renamed
    # Secret or ConfigMap reaches the TrainJob's nodes too
    s3_secret: str = field(default_factory=lambda: os.environ.get("AUDIOMCQ_S3_SECRET", "audiomcq-s3"))
    config_map: str = field(default_factory=lambda: os.environ.get("AUDIOMCQ_CONFIGMAP", "audiomcq-config"))
    deadline_s: int = 72 * 3600
    node_selector: dict[str, str] = field(default_factory=lambda: gpu_pool()[0])
    toleration: str = field(default_factory=lambda: gpu_pool()[1])  # taint key on the GPU nodes (NoSchedule)


def job_name(run_uri: str) -> str:
    """A TrainJob name that is the same for every attempt at one run (its output URI), so a retried pipeline step
    finds the job it already started instead of starting a second one."""
    import hashlib

    return f"audiomcq-train-{hashlib.sha256(run_uri.encode()).hexdigest()[:12]}"


def from_recipe(launch: dict[str, Any], namespace: str, image: str) -> Cluster:
    """The cluster shape a recipe's ``launch`` section asks for (nodes, GPUs, resources, runtime, deadline)."""
    known = {"nodes", "gpus_per_node", "cpu_per_node", "memory_per_node", "runtime", "timeout_s"}
    unknown = set(launch) - known
    if unknown:
        raise AudioMCQError(f"unknown launch setting(s) {sorted(unknown)}; known: {sorted(known)}")
    base = Cluster()
    return Cluster(
        namespace=namespace,
        image=image,
        runtime=launch.get("runtime", base.runtime),
        nodes=int(launch.get("nodes", 1)),
        gpus_per_node=int(launch.get("gpus_per_node", base.gpus_per_node)),
        cpu_per_node=str(launch.get("cpu_per_node", base.cpu_per_node)),
        memory_per_node=str(launch.get("memory_per_node", base.memory_per_node)),
        deadline_s=int(launch.get("timeout_s", base.deadline_s)),
    )


def render(name: str, train_args: Sequence[str], cluster: Cluster = Cluster()) -> dict[str, Any]:
    """The TrainJob running ``audiomcq train <train_args>`` on ``cluster.nodes`` nodes."""
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name):
        raise AudioMCQError(f"TrainJob name {name!r} must be a DNS label (lower case, digits, '-', <= 63)")
    if cluster.nodes < 1 or cluster.gpus_per_node < 1:
        raise AudioMCQError("a TrainJob needs at least one node and one GPU per node")
    args = [*train_args, f"--nnodes={cluster.nodes}", f"--nproc-per-node={cluster.gpus_per_node}"]
    secret_env = [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": cluster.s3_secret, "key": key}}}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    ]
    config_env = [
        {"name": env, "valueFrom": {"configMapKeyRef": {"name": cluster.config_map, "key": key, "optional": True}}}
        for key, env in CONFIG_KEYS.items()
    ]
    pod = {
        "nodeSelector": cluster.node_selector,  # onto the GPU pool
        "tolerations": [{"key": cluster.toleration, "operator": "Exists", "effect": "NoSchedule"}],
        **restricted_pod(),
    }
    node = {"name": NODE, "template": {"spec": {"template": {"spec": pod}}}}  # the runtime's node job
    resources = {
        "cpu": cluster.cpu_per_node,
        "memory": cluster.memory_per_node,
        "nvidia.com/gpu": cluster.gpus_per_node,
    }
    return {
        "apiVersion": API,
        "kind": "TrainJob",
        "metadata": {
            "name": name,
            "namespace": cluster.namespace,
            "labels": {"app.kubernetes.io/part-of": "audiomcq", "audiomcq/stage": "train"},
        },
        "spec": {
            "runtimeRef": {"name": cluster.runtime, "kind": "ClusterTrainingRuntime", "apiGroup": API.split("/")[0]},
            "activeDeadlineSeconds": cluster.deadline_s,
            "runtimePatches": [
                {"manager": "audiomcq", "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [node]}}}}
            ],
            "trainer": {
                "image": cluster.image,
                "command": ["audiomcq", "train"],
                "args": args,
                "numNodes": cluster.nodes,
                "numProcPerNode": cluster.gpus_per_node,
                "resourcesPerNode": {"requests": resources, "limits": resources},
                "env": secret_env + config_env,
            },
        },
    }


def restricted_pod() -> dict[str, Any]:
    """The part of a node's pod spec that makes it pass Pod Security "restricted" with a read-only root filesystem:
    the pod's and the trainer container's security context, and the emptyDir volumes the container writes to."""
    seccomp = {"type": "RuntimeDefault"}
    user = {"runAsNonRoot": True, "runAsUser": IMAGE_USER, "runAsGroup": IMAGE_USER}
    container = {
        "name": NODE,
        "securityContext": {
            **user,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "seccompProfile": seccomp,
        },
        "volumeMounts": [{"name": name, "mountPath": path} for name, path in SCRATCH.items()],
        "env": [{"name": "AUDIOMCQ_STAGING", "value": STAGING}],
    }
    return {
        "securityContext": {**user, "seccompProfile": seccomp},
        "containers": [container],
        "volumes": [{"name": name, "emptyDir": {}} for name in SCRATCH],
    }


def run_trainjob(job: dict[str, Any], timeout_s: int = 72 * 3600, poll_s: int = 15, log_lines: int = 40) -> dict:
    """Create (or re-attach to) ``job`` and wait until it completes; raises AudioMCQError when it fails or times
    out. Returns ``{name, namespace, status, steps}``."""
    from kubeflow.common.types import KubernetesBackendConfig
    from kubeflow.trainer import TrainerClient

    name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
    kube = Kube()
    try:
        kube.create(TRAIN_JOB, job)
        log.info("TrainJob %s/%s created", namespace, name)
    except KubeError as err:
        if err.status != 409:
            raise
        live = kube.get(TRAIN_JOB, name, namespace) or {}
        if live.get("spec", {}).get("trainer", {}).get("args") != job["spec"]["trainer"]["args"]:
            raise AudioMCQError(
                f"TrainJob {namespace}/{name} exists with other arguments; it belongs to another "
                "run: delete it, or write this run elsewhere"
            ) from None
        log.info("TrainJob %s/%s exists (a retried step): following it", namespace, name)
    trainer = TrainerClient(KubernetesBackendConfig(namespace=namespace, client_configuration=configuration()))
    seen: list[str] = []

    def report(current: Any) -> None:
        steps = ", ".join(f"{s.name}={s.status}" for s in current.steps) or "no pods yet"
        line = f"{current.status} ({steps})"
        if not seen or seen[-1] != line:
            seen.append(line)
            log.info("TrainJob %s/%s: %s", namespace, name, line)

    try:
        final = trainer.wait_for_job_status(
            name,
            {"Complete", "Failed"},
            timeout=timeout_s,
            polling_interval=min(poll_s, max(1, timeout_s - 1)),
            callbacks=[report],
        )
    except TimeoutError as err:
        raise AudioMCQError(
            f"TrainJob {namespace}/{name} did not finish in {timeout_s} s; last: {seen[-1] if seen else 'no status'}"
        ) from err
    except RuntimeError as err:  # the SDK wraps API failures (and unreadable objects) in RuntimeError
        raise AudioMCQError(f"TrainJob {namespace}/{name}: could not follow it: {err}") from err
    if final.status == "Failed":
        live = kube.get(TRAIN_JOB, name, namespace)
        tail = _log_tail(trainer, name, log_lines)
        raise AudioMCQError(
            f"TrainJob {namespace}/{name} failed: {status_summary(live)}"
            + (f"\nlast log lines of node-0:\n{tail}" if tail else "")
        )
    return {
        "name": name,
        "namespace": namespace,
        "status": final.status,
        "steps": [{"name": s.name, "status": s.status, "pod": s.pod_name} for s in final.steps],
    }


def _log_tail(trainer: Any, name: str, lines: int) -> str:
    """The last ``lines`` lines of node-0's log ("" when the pod or its log is gone)."""
    try:
        return "\n".join(deque((line.rstrip("\n") for line in trainer.get_job_logs(name)), maxlen=lines))
    except Exception as err:  # noqa: BLE001 - a missing log must not hide the job's failure
        log.info("TrainJob %s: no log (%s)", name, err)
        return ""
