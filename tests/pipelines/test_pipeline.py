"""The KFP pipelines compile, reproducibly, to the committed YAML: components are thin shims, every stage is placed
(GPUs, Secrets, retries, caching, resources, pinned images), the kfp CLI and ``audiomcq pipeline compile`` write the
same bytes, and the KFP UI, docs/pipelines.md and the Kubernetes manifests describe every pipeline."""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path

import pytest
import yaml
from conftest import REPO

pytest.importorskip("kfp")


def test_pipeline_compiles_to_one_yaml(tmp_path):
    from audiomcq.pipelines.run import compile_all

    paths = compile_all(tmp_path)
    names = [
        "audiomcq-demo",
        "audiomcq-filter",
        "audiomcq-sdg",
        "audiomcq-evaluate",
        "audiomcq-train",
        "audiomcq-ingest",
    ]
    assert [p.name for p in paths] == [f"{n}.yaml" for n in names]
    path = paths[0]
    spec = next(yaml.safe_load_all(path.read_text()))
    assert spec["pipelineInfo"]["name"] == "audiomcq-demo"
    tasks = spec["root"]["dag"]["tasks"]
    assert {"synth", "pretrain", "acf-filter", "evaluate", "select", "report"} <= set(tasks)
    assert "install_kfp_package" not in path.read_text() and "pip install" not in path.read_text()
    # Reproducible: compiling again gives the same bytes.
    again = compile_all(tmp_path / "again")
    assert [p.read_text() for p in again] == [p.read_text() for p in paths]


@pytest.mark.parametrize("module", ["ingest", "filter", "sdg", "evaluate", "train", "demo"])
def test_components_are_thin_shims(module):
    tree = ast.parse((REPO / "components" / f"{module}.py").read_text())
    for fn in [n for n in tree.body if isinstance(n, ast.FunctionDef)]:
        body = [n for n in fn.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
        imports = [n for n in body if isinstance(n, ast.ImportFrom)]
        assert len(imports) == 1 and imports[0].module.startswith("audiomcq"), fn.name
        assert len(body) <= 3, f"{fn.name} holds logic"
        assert fn.end_lineno - fn.lineno <= 30, fn.name


def _compiled(tmp_path, name="audiomcq-demo"):
    from audiomcq.pipelines.run import compile_all

    (path,) = [p for p in compile_all(tmp_path) if p.name == f"{name}.yaml"]
    spec, platform = yaml.safe_load_all(path.read_text())
    tasks = {}
    for dag in [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]:
        tasks.update(dag["tasks"])
    executors = {name: spec["components"][t["componentRef"]["name"]].get("executorLabel") for name, t in tasks.items()}
    return path.read_text(), spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"], tasks, executors


# Per pipeline: the tasks that ask for GPUs (and how many), and the tasks never cached.
PLACEMENT = {
    # the demo trains tiny models: every task on CPU nodes
    "audiomcq-demo": ({}, {"post-train", "pretrain", "pretrain-2", "promote"}),
    "audiomcq-filter": ({"filter-answer": "1"}, None),  # None: caching is checked by the pipeline's own tests
    "audiomcq-evaluate": ({"eval-task": "1"}, None),
}


@pytest.mark.parametrize("pipeline", sorted(PLACEMENT))
def test_compiled_yaml_places_every_stage(pipeline, tmp_path, monkeypatch):
    """GPU requests, the GPU pool's selector and toleration, Secrets by name only, retries for preemptible GPU
    stages only, caching per stage, timeouts and resources everywhere."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value-never-compiled")
    monkeypatch.setenv("AUDIOMCQ_GPU_NODE_SELECTOR", "pool=h100")
    text, spec, k8s, tasks, executors = _compiled(tmp_path, pipeline)
    assert "s3cr3t-value-never-compiled" not in text
    gpu, uncached = PLACEMENT[pipeline]
    assert set(gpu) <= set(tasks)
    for name, task in tasks.items():
        if name.startswith("for-loop"):
            continue
        executor = executors[name]
        resources = spec["deploymentSpec"]["executors"][executor]["container"]["resources"]
        placement = k8s[executor]
        assert resources["resourceCpuRequest"] and resources["resourceMemoryLimit"], name
        assert int(placement["activeDeadlineSeconds"]) > 0, name
        secrets = {s["secretName"]: {e["envVar"] for e in s["keyToEnv"]} for s in placement["secretAsEnv"]}
        assert secrets["audiomcq-s3"] == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}, name
        # the images' non-root user, so that the pod passes a namespace enforcing "restricted"
        assert placement["securityContext"] == {"runAsUser": "10001", "runAsGroup": "10001", "runAsNonRoot": True}
        if name in gpu:
            assert resources["accelerator"]["resourceCount"] == gpu[name], name
            assert placement["nodeSelector"]["labels"] == {"pool": "h100"}, name
            assert placement["tolerations"] == [
                {"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}
            ]
            assert task["retryPolicy"]["maxRetryCount"] == 2, name
        else:
            assert "accelerator" not in resources and "nodeSelector" not in placement, name
            assert "retryPolicy" not in task, name  # deterministic CPU stages are not retried
        if uncached is not None:
            assert task["cachingOptions"].get("enableCache", False) is (name not in uncached), name
    if pipeline == "audiomcq-demo":  # sized for the tiny models: no task asks for more than 2 CPUs and 8 GiB
        for executor in {e for e in executors.values() if e}:
            resources = spec["deploymentSpec"]["executors"][executor]["container"]["resources"]
            assert float(resources["resourceCpuRequest"]) <= 2 and resources["resourceMemoryRequest"].endswith(
                ("Gi", "G", "Mi", "M")
            ), resources


def test_train_pipeline_branches_on_the_recipes_node_count(tmp_path):
    """One node: the GPU step trains; more: a CPU-only step submits the TrainJob (retried: it re-attaches)."""
    _, spec, _, tasks, executors = _compiled(tmp_path, "audiomcq-train")
    resources = {
        n: spec["deploymentSpec"]["executors"][executors[n]]["container"]["resources"]
        for n in executors
        if executors[n]
    }
    assert resources["train-paradigm"]["accelerator"]["resourceCount"] == "8"
    assert "accelerator" not in resources["train-on-cluster"] and tasks["train-on-cluster"]["retryPolicy"]
    conditions = [t["triggerPolicy"]["condition"] for t in tasks.values() if "triggerPolicy" in t]
    assert len(conditions) == 2 and all("launch-nodes" in c for c in conditions)


def test_tasks_reading_s3_uris_are_never_cached(tmp_path):
    """An object can change under the same URI, so the fan-out pipelines' URI readers are not cached; the LLM
    Secret is optional (the template backend needs none)."""
    _, _, k8s, tasks, executors = _compiled(tmp_path, "audiomcq-filter")
    assert not tasks["filter-answer"]["cachingOptions"].get("enableCache")
    assert tasks["filter-cells"]["cachingOptions"]["enableCache"]  # from its parameters alone
    _, _, k8s, tasks, executors = _compiled(tmp_path, "audiomcq-sdg")
    (llm,) = [s for s in k8s[executors["generate-shard"]]["secretAsEnv"] if s["secretName"] == "audiomcq-llm"]
    assert llm["optional"] and not tasks["generate-shard"]["cachingOptions"].get("enableCache")


def test_placement_overrides_come_from_a_file_at_compile_time(tmp_path, monkeypatch):
    (tmp_path / "small.yaml").write_text("demo_train: {gpus: 1, memory: 32Gi}\n")  # the demo's training on a GPU
    monkeypatch.setenv("AUDIOMCQ_PLACEMENT", str(tmp_path / "small.yaml"))
    _, spec, _, _, executors = _compiled(tmp_path / "out")
    resources = spec["deploymentSpec"]["executors"][executors["post-train"]]["container"]["resources"]
    assert resources["accelerator"]["resourceCount"] == "1" and resources["resourceMemoryLimit"] == "32Gi"


def test_committed_compiled_pipelines_are_current(tmp_path, monkeypatch):
    """CI fails when `audiomcq pipeline compile --out pipelines/compiled --manifests` was not rerun after a change."""
    _clean_compile_env(monkeypatch)
    from audiomcq.pipelines.run import compile_all

    fresh = {p.name: p.read_text() for p in compile_all(tmp_path, manifests=True)}
    committed = {p.name: p.read_text() for p in (REPO / "pipelines" / "compiled").glob("*.yaml")}
    assert set(fresh) == set(committed)
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, (
        f"stale compiled pipelines {stale}: run `audiomcq pipeline compile --out pipelines/compiled --manifests`"
    )


def _clean_compile_env(monkeypatch) -> None:
    """No placement override and no pinned image: the settings the committed YAML was compiled with."""
    for name in (
        "AUDIOMCQ_PLACEMENT",
        "AUDIOMCQ_GPU_NODE_SELECTOR",
        "AUDIOMCQ_GPU_TOLERATION",
        "AUDIOMCQ_S3_SECRET",
        "AUDIOMCQ_LLM_SECRET",
        "AUDIOMCQ_HF_SECRET",
        "AUDIOMCQ_CONFIGMAP",
        "AUDIOMCQ_PIPELINE_LOCAL",
    ):
        monkeypatch.delenv(name, raising=False)
    for name in [n for n in os.environ if n.startswith("AUDIOMCQ_IMAGE_")]:
        monkeypatch.delenv(name)


def test_the_kfp_cli_compiles_every_pipeline_module_like_audiomcq(tmp_path, monkeypatch):
    """`kfp dsl compile --py pipelines/<module>.py` (no --function: one pipeline per module), run from another
    directory, writes the same bytes as `audiomcq pipeline compile`, which the committed YAML is."""
    import subprocess
    import sys

    from audiomcq.pipelines.run import MODULES

    _clean_compile_env(monkeypatch)
    kfp = Path(sys.executable).parent / "kfp"
    assert sorted(MODULES) == sorted(
        p.name.removesuffix(".yaml")
        for p in (REPO / "pipelines" / "compiled").glob("*.yaml")
        if not p.name.endswith(".k8s.yaml")
    )
    for name, module in MODULES.items():
        out = tmp_path / f"{name}.yaml"
        done = subprocess.run(
            [str(kfp), "dsl", "compile", "--py", str(REPO / module), "--output", str(out)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert out.read_bytes() == (REPO / "pipelines" / "compiled" / f"{name}.yaml").read_bytes(), name


def run_form_problems(spec: dict) -> list[str]:
    """What the KFP UI would show without explanation: a pipeline without a description, a run-form parameter
    without one (a dict or list parameter also needs "Example:" followed by a JSON value of its type), a task of the
    run graph showing its generated name (no display name)."""
    found = [] if len(spec["pipelineInfo"].get("description", "")) > 100 else ["pipeline: no description"]
    for param, definition in spec["root"]["inputDefinitions"]["parameters"].items():
        text = definition.get("description", "")
        kind = {"STRUCT": dict, "LIST": list}.get(definition["parameterType"])
        if len(text.strip()) < 20:
            found.append(f"{param}: no description")
        elif kind:
            where = text.find("Example:")
            try:
                example = json.JSONDecoder().raw_decode(" ".join(text[where + len("Example:") :].split()))[0]
            except ValueError:
                example = None
            if where < 0 or not isinstance(example, kind):
                found.append(f"{param}: no example {kind.__name__}")
    found += [f"task {key}: no display name" for key, shown in _display_names(spec).items() if shown == key]
    return found


def _display_names(spec: dict) -> dict[str, str]:
    """Every task of the run graph (in the root and in every loop or condition): its name shown in the UI."""
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    return {key: task["taskInfo"]["name"] for dag in dags for key, task in dag["tasks"].items()}


@pytest.mark.parametrize(
    "name",
    [
        "audiomcq-demo",
        "audiomcq-filter",
        "audiomcq-sdg",
        "audiomcq-evaluate",
        "audiomcq-train",
        "audiomcq-ingest",
    ],
)
def test_compiled_pipelines_describe_every_parameter_and_name_every_task(name):
    """The committed YAML, as the KFP UI shows it: descriptions for the pipeline and every parameter of the run
    form (dicts and lists with an example of their shape), and a display name for every task of the run graph."""
    spec = next(yaml.safe_load_all((REPO / "pipelines" / "compiled" / f"{name}.yaml").read_text()))
    assert run_form_problems(spec) == []
    assert "embedded default" not in spec["pipelineInfo"]["description"]
    expected = {
        "audiomcq-demo": {"pretrain base", "pretrain filter model", "evaluate base", "filter models"},
        "audiomcq-filter": {"filter model × shard", "model × shard cells"},
        "audiomcq-sdg": {"generate shard", "merge shards"},
        "audiomcq-evaluate": {"evaluate benchmark task", "evaluation table"},
        "audiomcq-train": {"train in this pod", "train on a TrainJob"},
        "audiomcq-ingest": {
            "models",
            "resolve model revision",
            "fetch model",
            "datasets",
            "fetch dataset",
            "benchmarks",
            "fetch benchmark",
        },
    }[name]
    assert expected <= set(_display_names(spec).values())


BARE_PIPELINE = '''
from kfp import dsl

from audiomcq.components.train import run_prefix


@dsl.pipeline(name="bare")
def bare(publish: str, shards: list = [0], prefix: str = "") -> None:
    """A pipeline whose description is long enough to pass, but whose parameters and tasks are not all
    described: the check must point at each of them, one by one, by name.

    Args:
        shards: the shard indices, one task each. Example: [0, 1,
        prefix: where the outputs go, an s3:// prefix or a directory in the pod.
    """
    run_prefix(publish=publish, run_id=prefix).set_display_name("run prefix")
    run_prefix(publish=publish, run_id="x")
'''


def test_run_form_check_rejects_planted_mistakes(tmp_path):
    """A parameter missing from the docstring's Args, a list whose example is not JSON, a task left with its
    generated name: each is reported (the pipeline is loaded from a file, as the kfp CLI does)."""
    import importlib.util

    from kfp import compiler

    (tmp_path / "bare.py").write_text(BARE_PIPELINE)
    spec = importlib.util.spec_from_file_location("bare", tmp_path / "bare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    compiler.Compiler().compile(module.bare, str(tmp_path / "bare.yaml"))
    found = run_form_problems(next(yaml.safe_load_all((tmp_path / "bare.yaml").read_text())))
    assert found == ["publish: no description", "shards: no example list", "task run-prefix-2: no display name"]


def test_docs_list_every_parameter_of_every_pipeline():
    """docs/pipelines.md has a table per pipeline, with a row for each of its parameters and no others."""
    from audiomcq.pipelines.run import PIPELINES

    text = (REPO / "docs" / "pipelines.md").read_text()
    for name, pipeline in PIPELINES.items():
        section = text.split(f"### `{name}`\n", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
        rows = set(re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE))
        assert rows == set(pipeline.component_spec.inputs), name


def test_kubernetes_manifests_name_the_version_by_content():
    """A PipelineVersion is immutable, so `<name>.k8s.yaml` names it after its YAML's digest: a rebuild that changes
    the pipeline applies as a new version instead of being refused."""
    from audiomcq.pipelines.run import version_name

    for path in sorted((REPO / "pipelines" / "compiled").glob("*.k8s.yaml")):
        name = path.name.removesuffix(".k8s.yaml")
        (version,) = [d for d in yaml.safe_load_all(path.read_text()) if d["kind"] == "PipelineVersion"]
        assert version["metadata"]["name"] == version_name(name, path.with_name(f"{name}.yaml"))
        assert version["spec"]["pipelineName"] == name


def test_compile_pins_the_images_skaffold_built(tmp_path):
    """`skaffold build --file-output` -> `pipeline compile --images`: every task runs the built digest, no dev tag
    is left for a built image (in a subprocess: pinning changes this process's component definitions)."""
    import subprocess
    import sys

    ref = "registry.example.com/audiomcq-train:v1@sha256:" + "a" * 64
    base = {"imageName": "registry.example.com/audiomcq-base", "tag": "registry.example.com/b:1"}
    builds = {"builds": [{"imageName": "registry.example.com/audiomcq-train", "tag": ref}, base]}
    (tmp_path / "build.json").write_text(json.dumps(builds))
    cmd = [
        sys.executable,
        "-m",
        "audiomcq.cli",
        "pipeline",
        "compile",
        "--out",
        str(tmp_path / "out"),
        "--images",
        str(tmp_path / "build.json"),
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    text = (tmp_path / "out" / "audiomcq-demo.yaml").read_text()
    assert text.count(ref) >= 2 and "audiomcq-train:dev" not in text and "audiomcq-tools:dev" in text
