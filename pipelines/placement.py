"""Where and how each stage runs on a cluster, in one table, applied by ``place(task, stage)``.

- Requests and limits for CPU and memory everywhere; GPU stages ask for ``nvidia.com/gpu`` and land on the GPU node
  pool through a node selector and a toleration whose names are set at compile time:
  - ``AUDIOMCQ_GPU_NODE_SELECTOR``: ``label=value``; default ``nvidia.com/gpu.present=true``;
  - ``AUDIOMCQ_GPU_TOLERATION``: a taint key; default ``nvidia.com/gpu``.
- Retries only where a failure can be transient: GPU stages run on preemptible pools and get retries with
  backoff, and so do the downloads of the ingest pipeline (a dropped connection; a retry resumes where the last
  attempt stopped). Other CPU stages are deterministic, so a failure is real and is not retried. Local runs
  (kfp.local) set no retries: nothing is preempted there.
- Caching on for stages whose outputs depend only on their inputs; off for training (GPU kernels are not bit-stable
  and a rerun should train again) and for resolving a hub revision (a branch moves).
- Every step runs as the images' non-root user (uid/gid 10001), so its pod passes the namespace's "restricted"
  Pod Security admission.
- Credentials only by *name*: the S3 keys come from the Secret ``AUDIOMCQ_S3_SECRET`` (default ``audiomcq-s3``),
  the LLM key from ``AUDIOMCQ_LLM_SECRET`` (default ``audiomcq-llm``), the Hugging Face token of the ingest steps
  from ``AUDIOMCQ_HF_SECRET`` (default ``audiomcq-hf``, key ``token``, as ``HF_TOKEN``). The endpoints come from
  the ConfigMap ``AUDIOMCQ_CONFIGMAP`` (default ``audiomcq-config``). No value is compiled into the YAML.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from audiomcq.infra.k8s.trainjob import CONFIG_KEYS, IMAGE_USER, gpu_pool


@dataclass(frozen=True)
class Stage:
    cpu: str = "1"
    memory: str = "4Gi"
    gpus: int = 0
    retries: int = 0
    cache: bool = True
    timeout_s: int = 6 * 3600
    llm: bool = False  # needs the LLM endpoint's key
    hub: bool = False  # talks to the Hugging Face Hub: gets its token

    @property
    def cpu_limit(self) -> str:
        return str(2 * int(self.cpu))


STAGES: dict[str, Stage] = {
    "synth": Stage(cpu="2", memory="8Gi"),
    "generate": Stage(cpu="4", memory="8Gi", llm=True, timeout_s=48 * 3600),
    "plan": Stage(cpu="1", memory="1Gi"),
    "merge": Stage(cpu="1", memory="4Gi"),
    "pretrain": Stage(cpu="4", memory="32Gi", gpus=1, retries=2, cache=False),
    "filter": Stage(cpu="8", memory="64Gi", gpus=1, retries=2, timeout_s=24 * 3600),
    "train": Stage(cpu="16", memory="256Gi", gpus=8, retries=2, cache=False, timeout_s=72 * 3600),
    # submits a multi-node TrainJob and follows it; a retry re-attaches to the same job
    "submit": Stage(cpu="1", memory="1Gi", retries=2, cache=False, timeout_s=73 * 3600),
    "eval": Stage(cpu="8", memory="64Gi", gpus=1, retries=2),
    "select": Stage(cpu="1", memory="2Gi"),
    "report": Stage(cpu="1", memory="2Gi"),
    "promote": Stage(cpu="1", memory="2Gi", cache=False, timeout_s=3600),  # reads and changes live cluster state
    # the demo pipeline: tiny models, sized for CPU nodes (training is never cached: a rerun trains again)
    "demo_train": Stage(cpu="2", memory="8Gi", cache=False, timeout_s=4 * 3600),
    "demo_infer": Stage(cpu="2", memory="8Gi", timeout_s=2 * 3600),
    # the ingest pipeline: a hub revision resolved to its commit now (never cached: a branch moves), then the fetch
    # at that commit, cached on it; a download that breaks is retried and resumes
    "resolve": Stage(cpu="1", memory="1Gi", retries=2, cache=False, timeout_s=900, hub=True),
    "fetch": Stage(cpu="2", memory="8Gi", retries=2, timeout_s=48 * 3600, hub=True),
}
S3_KEYS = {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"}
HF_KEYS = {"token": "HF_TOKEN"}  # the variable the fetch library reads the hub token from (its token_env default)


def stage(name: str) -> Stage:
    """A stage's settings, with overrides from the YAML file ``AUDIOMCQ_PLACEMENT`` names (compile time), e.g.
    ``train: {gpus: 1, memory: 32Gi}`` for a small model."""
    import dataclasses

    path = os.environ.get("AUDIOMCQ_PLACEMENT")
    if not path:
        return STAGES[name]
    import yaml

    overrides = (yaml.safe_load(open(path)) or {}).get(name, {})  # noqa: SIM115 - read once at compile time
    return dataclasses.replace(STAGES[name], **overrides)


def _pool() -> tuple[str, str, str]:
    (label, value), taint = next(iter(gpu_pool()[0].items())), gpu_pool()[1]
    return label, value, taint


def place(task: Any, name: str, reads_uris: bool = False) -> Any:
    """Apply stage ``name``'s settings to a pipeline task; returns the task. ``reads_uris``: the task reads its
    inputs by a name whose content may change under it (an ``s3://`` URI, a hub repo's default branch), so a cached
    result could be stale: such a task is never cached (tasks fed by upstream artifacts keep the stage's
    caching)."""
    from kfp import kubernetes

    s = stage(name)
    task.set_cpu_request(s.cpu).set_cpu_limit(s.cpu_limit).set_memory_request(s.memory).set_memory_limit(s.memory)
    task.set_caching_options(s.cache and not reads_uris)
    if s.gpus:
        label, value, taint = _pool()
        task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(s.gpus)
        kubernetes.add_node_selector(task, label_key=label, label_value=value)
        kubernetes.add_toleration(task, key=taint, operator="Exists", effect="NoSchedule")
    if s.retries and not os.environ.get("AUDIOMCQ_PIPELINE_LOCAL"):  # nothing is preempted in a local run
        task.set_retry(num_retries=s.retries, backoff_duration="60s", backoff_factor=2.0, backoff_max_duration="600s")
    kubernetes.set_timeout(task, s.timeout_s)
    kubernetes.set_security_context(task, run_as_user=IMAGE_USER, run_as_group=IMAGE_USER, run_as_non_root=True)
    kubernetes.use_secret_as_env(task, os.environ.get("AUDIOMCQ_S3_SECRET", "audiomcq-s3"), S3_KEYS)
    if s.llm:
        # optional: the template backend needs no key, and a missing Secret must not stop the pod from starting
        kubernetes.use_secret_as_env(
            task, os.environ.get("AUDIOMCQ_LLM_SECRET", "audiomcq-llm"), {"api_key": "LLM_API_KEY"}, optional=True
        )
    if s.hub:
        # optional: public repos need no token, and a missing Secret must not stop the pod from starting
        kubernetes.use_secret_as_env(task, os.environ.get("AUDIOMCQ_HF_SECRET", "audiomcq-hf"), HF_KEYS, optional=True)
    # optional: a cluster without a Pushgateway (or with default TLS/region) leaves those keys out
    kubernetes.use_config_map_as_env(
        task, os.environ.get("AUDIOMCQ_CONFIGMAP", "audiomcq-config"), CONFIG_KEYS, optional=True
    )
    return task
