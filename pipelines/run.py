"""Compile the pipelines to IR YAML, or run one locally with kfp.local (lightweight components in subprocesses).

Each pipeline is a module-level ``@dsl.pipeline`` object in its own module, which is what ``kfp dsl compile --py
pipelines/<module>.py`` compiles. Placement and image pins are read when a pipeline's graph is traced, so
``compile_all``, ``run_local`` and ``submit`` trace it again (``fresh``) under the settings of the moment: with no
settings the result is byte-identical to the module-level object's.
"""

from __future__ import annotations

import builtins
import hashlib
import os
from pathlib import Path
from typing import Any

from kfp import compiler, dsl
from kfp.dsl.graph_component import GraphComponent

from audiomcq.pipelines.demo import audiomcq_demo
from audiomcq.pipelines.evaluate import audiomcq_evaluate
from audiomcq.pipelines.filter import audiomcq_filter
from audiomcq.pipelines.ingest import audiomcq_ingest
from audiomcq.pipelines.sdg import audiomcq_sdg
from audiomcq.pipelines.train import audiomcq_train

PIPELINES: dict[str, Any] = {
    "audiomcq-demo": audiomcq_demo,
    "audiomcq-filter": audiomcq_filter,
    "audiomcq-sdg": audiomcq_sdg,
    "audiomcq-evaluate": audiomcq_evaluate,
    "audiomcq-train": audiomcq_train,
    "audiomcq-ingest": audiomcq_ingest,
}
# where each one is defined, for `kfp dsl compile --py`
MODULES = {
    name: f"pipelines/{getattr(p, 'pipeline_func', p).__module__.rsplit('.', 1)[-1]}.py"
    for name, p in PIPELINES.items()
}


def fresh(pipeline: Any) -> GraphComponent:
    """The pipeline traced again now, so that placement overrides and pinned images set since its module was
    imported apply (a builder function, called, is accepted too)."""
    if not isinstance(pipeline, GraphComponent):
        return pipeline()
    spec = pipeline.component_spec
    return dsl.pipeline(
        pipeline.pipeline_func, name=spec.name, description=spec.description, pipeline_config=pipeline.pipeline_config
    )


def version_name(name: str, package: str | os.PathLike[str]) -> str:
    """A pipeline version's name from its compiled YAML's content: ``<name>-<first 12 hex of its sha256>``. KFP
    versions are immutable, so a changed pipeline gets a new version and an unchanged one keeps its name."""
    return f"{name}-{hashlib.sha256(Path(package).read_bytes()).hexdigest()[:12]}"


def compile_all(out_dir: str | Path, manifests: bool = False) -> list[Path]:
    """Write ``<name>.yaml`` for every pipeline (and, with ``manifests``, ``<name>.k8s.yaml``: the
    ``Pipeline``/``PipelineVersion`` custom resources for a cluster that takes pipelines as Kubernetes objects, the
    version named by ``version_name``). The output is deterministic for a given kfp version and placement
    settings."""
    from kfp.compiler import KubernetesManifestOptions

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, pipeline in PIPELINES.items():
        path = out / f"{name}.yaml"
        traced = fresh(pipeline)
        compiler.Compiler().compile(traced, str(path))
        paths.append(path)
        if manifests:
            options = KubernetesManifestOptions(
                pipeline_name=name, pipeline_version_name=version_name(name, path), include_pipeline_manifest=True
            )
            crs = out / f"{name}.k8s.yaml"
            compiler.Compiler().compile(
                traced, str(crs), kubernetes_manifest_format=True, kubernetes_manifest_options=options
            )
            paths.append(crs)
    return paths


def run_local(
    root: str | Path,
    recipe: str | None = None,
    overrides: list[str] | None = None,
    pipeline: str = "audiomcq-demo",
    **params: object,
) -> Path:
    """Run a pipeline with kfp.local's SubprocessRunner; returns the run's directory. ``recipe`` (default ``demo``
    for ``audiomcq-demo``) and ``overrides`` are passed when given; other parameters go in ``params``."""
    from kfp import local

    # Independent tasks run side by side here (two at a time); one math thread each keeps them from fighting over
    # the cores (two 2-thread torch processes on 2 cores ran ~3x slower than one thread each).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.glob(f"{pipeline}-*"))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    if pipeline == "audiomcq-demo":
        recipe = recipe or "demo"
    if recipe is not None:
        params["recipe"] = recipe
    if overrides is not None:
        params["overrides"] = list(overrides)
    # kfp.local indents print() by swapping builtins.print per task; ParallelFor threads restore it out of order,
    # leaving an indenting print behind for the rest of the process. Put the real one back.
    real_print = builtins.print
    os.environ["AUDIOMCQ_PIPELINE_LOCAL"] = "1"  # placement: no preemption retries in a local run
    try:
        fresh(PIPELINES[pipeline])(**params)
    finally:
        builtins.print = real_print
        del os.environ["AUDIOMCQ_PIPELINE_LOCAL"]
    (run_dir,) = set(root.glob(f"{pipeline}-*")) - before
    return run_dir


def submit(
    name: str,
    arguments: dict[str, object],
    experiment: str,
    run_name: str | None = None,
    token_env: str = "KFP_TOKEN",
    service_account: str | None = None,
) -> str:
    """Compile ``name`` and start a run on the KFP API at ``KFP_ENDPOINT`` (namespace ``KFP_NAMESPACE``; bearer
    token from the variable ``token_env`` names, never printed), its pods running as ``service_account`` (default
    ``KFP_SERVICE_ACCOUNT``; the manifests' ``audiomcq-pipeline`` holds the RBAC for TrainJobs and
    InferenceServices); returns the run id."""
    import tempfile

    import kfp

    from audiomcq.errors import AudioMCQError

    if name not in PIPELINES:
        raise AudioMCQError(f"unknown pipeline {name!r}; known: {', '.join(PIPELINES)}")
    host = os.environ.get("KFP_ENDPOINT")
    if not host:
        raise AudioMCQError("KFP_ENDPOINT is not set (the KFP API, e.g. https://kubeflow.example.com/pipeline)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.yaml"
        compiler.Compiler().compile(fresh(PIPELINES[name]), str(path))
        try:
            client = kfp.Client(
                host=host,
                existing_token=os.environ.get(token_env) or None,
                namespace=os.environ.get("KFP_NAMESPACE", "kubeflow"),
            )
            account = service_account or os.environ.get("KFP_SERVICE_ACCOUNT") or None
            run = client.create_run_from_pipeline_package(
                str(path), arguments=arguments, run_name=run_name, experiment_name=experiment, service_account=account
            )
        except Exception as err:  # the client raises urllib3/ApiException/ValueError; name the endpoint once
            raise AudioMCQError(f"{host}: could not start {name}: {type(err).__name__}: {str(err)[:300]}") from err
    return run.run_id
