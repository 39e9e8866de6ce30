"""Run a rendered Kubeflow Trainer ``TrainJob`` to its end from a pipeline step.

The object (``audiomcq.trainjob.render``, validated against the CRD in tests) is created through the Kubernetes
API as rendered: the Kubeflow SDK's own ``train()`` builds jobs from its trainer types, which cannot carry env
vars from Secrets by name. Following it is the SDK's job: ``TrainerClient.wait_for_job_status`` reads the
TrainJob's conditions and its node pods; each status change is logged, and when the job fails, the step fails
with the job's own reason and the last lines of node-0's log. A job of that name that already exists (the step was
retried after its pod was lost) is followed rather than created again, so a retry never trains twice.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from audiomcq.errors import AudioMCQError
from audiomcq.k8s.client import TRAIN_JOB, Kube, KubeError, configuration, status_summary

log = logging.getLogger(__name__)


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
