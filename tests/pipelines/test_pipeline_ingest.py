"""``audiomcq-ingest``: compiled for CPU pods with caching keyed on the resolved commit and the hub token from a
Secret by name, and run locally (kfp.local) against the hub stand-in and the S3 server: the store ends up holding
the model and the benchmark complete, each with its manifest and the marker written last."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
from fakes.hub_stub import HubStub, StubRepo

pytest.importorskip("kfp")

TOKEN = "hf_ingest_test_token_17"  # a throwaway value for the stand-in's gated repo
WAV = b"RIFF" + bytes(2000)


def _compiled(tmp_path):
    import yaml
    from kfp import compiler

    from audiomcq.pipelines.run import PIPELINES, fresh

    path = tmp_path / "audiomcq-ingest.yaml"
    compiler.Compiler().compile(fresh(PIPELINES["audiomcq-ingest"]), str(path))
    spec, platform = yaml.safe_load_all(path.read_text())
    tasks = {}
    for dag in [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]:
        tasks.update(dag["tasks"])
    executors = {name: spec["components"][t["componentRef"]["name"]].get("executorLabel") for name, t in tasks.items()}
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    return path.read_text(), spec, k8s, tasks, executors


def test_ingest_runs_on_cpu_pods_cached_on_the_resolved_commit_with_the_token_by_name(tmp_path, monkeypatch):
    """Each fetch takes its commit from a resolve step that is never cached, so the fetch's cache key is the repo
    at a commit; benchmarks (audio at the hub's default branch) are never cached; no GPU anywhere; downloads are
    retried; the hub token comes from an optional Secret by name, and no value is compiled in."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    text, spec, k8s, tasks, executors = _compiled(tmp_path)
    assert TOKEN not in text
    steps = {name: task for name, task in tasks.items() if executors[name]}
    assert set(steps) == {"resolve-model", "fetch-model", "resolve-dataset", "fetch-dataset", "fetch-benchmark"}
    cached = {name: bool(task["cachingOptions"].get("enableCache")) for name, task in steps.items()}
    assert cached == {
        "resolve-model": False,
        "fetch-model": True,
        "resolve-dataset": False,
        "fetch-dataset": True,
        "fetch-benchmark": False,
    }
    for fetch, resolve in (("fetch-model", "resolve-model"), ("fetch-dataset", "resolve-dataset")):
        commit = steps[fetch]["inputs"]["parameters"]["commit"]["taskOutputParameter"]
        assert commit == {"outputParameterKey": "Output", "producerTask": resolve}
    for name, task in steps.items():
        resources = spec["deploymentSpec"]["executors"][executors[name]]["container"]["resources"]
        placement = k8s[executors[name]]
        assert "accelerator" not in resources and "nodeSelector" not in placement and "tolerations" not in placement
        assert task["retryPolicy"]["maxRetryCount"] == 2, name
        secrets = {s["secretName"]: s for s in placement["secretAsEnv"]}
        assert secrets["audiomcq-hf"]["keyToEnv"] == [{"envVar": "HF_TOKEN", "secretKey": "token"}], name
        assert secrets["audiomcq-hf"]["optional"] and not secrets["audiomcq-s3"].get("optional"), name
        assert placement["securityContext"] == {"runAsUser": "10001", "runAsGroup": "10001", "runAsNonRoot": True}
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert set(inputs) == {"models", "datasets", "benchmarks", "hub", "sites"}  # no token among them


def _model_repo() -> StubRepo:
    blob = lambda n, k: hashlib.sha256(f"ingest-{k}".encode()).digest() * (n // 32)  # noqa: E731
    files = {
        "config.json": b'{"model_type": "qwen2_audio"}',
        "tokenizer_config.json": b'{"model_max_length": 8}',
        "model.safetensors": blob(4096, 1),  # large enough to be served as an LFS object
        "README.md": b"---\nlicense: apache-2.0\n---\n",
        "pytorch_model.bin": blob(2048, 2),  # a duplicate of the safetensors: never fetched
    }
    return StubRepo(files, card={"license": "apache-2.0"}, gated=True, tokens={TOKEN})


def _mmsu_repo() -> StubRepo:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {
            "id": f"mmsu_{i}",
            "task_name": "emotion",
            "question": "Which emotion?",
            "choice_a": "happy",
            "choice_b": "sad",
            "choice_c": "angry",
            "choice_d": "calm",
            "answer_gt": "sad",
            "category": "perception",
            "audio": {"bytes": WAV + bytes([i]), "path": f"clip{i}.wav"},
        }
        for i in range(3)
    ]
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return StubRepo({"data/test-00000.parquet": buf.getvalue(), "README.md": b"mmsu"})


def _objects(s3, prefix: str) -> dict:
    return {o.object_name.removeprefix(prefix): o for o in s3.list_objects("data", prefix=prefix, recursive=True)}


@pytest.mark.slow
def test_ingest_pipeline_fills_the_store_from_the_hub_locally(s3, tmp_path, monkeypatch):
    """One small gated model and one benchmark from the hub stand-in, through kfp.local: the token reaches the step
    as $HF_TOKEN (as the Secret puts it there) and never appears in the run's files; each prefix holds every file
    verified, the manifest, and _COMPLETE written after everything else; the resolve step's commit is the one the
    fetch used. A second run resolves the revision again and downloads none of the model's files again."""
    from audiomcq.infra import storage
    from audiomcq.pipelines.run import run_local

    monkeypatch.setenv("AUDIOMCQ_STAGING", str(tmp_path / "staging"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no hub cache shared with other tests' stand-in repos
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub = HubStub().start()
    try:
        model = hub.add("model", "Qwen/Tiny-Audio", _model_repo())
        hub.add("dataset", "ddwang2000/MMSU", _mmsu_repo())
        params = {
            "models": [{"repo": "Qwen/Tiny-Audio", "revision": "main", "to": "s3://data/models/ingest-tiny"}],
            "datasets": [],  # an empty list skips that kind
            "benchmarks": [{"name": "mmsu", "to": "s3://data/benchmarks/ingest-mmsu"}],
            "hub": hub.url,
        }
        run_dir = run_local(tmp_path / "root", pipeline="audiomcq-ingest", **params)
        gets = dict(hub.requests)
        run_local(tmp_path / "root", pipeline="audiomcq-ingest", **params)
        again = dict(hub.requests)
    finally:
        hub.stop()

    for prefix in ("models/ingest-tiny/", "benchmarks/ingest-mmsu/"):
        assert storage.is_complete(f"s3://data/{prefix}"), prefix
        objects = _objects(s3, prefix)
        assert "fetch-manifest.json" in objects, prefix
        marker = objects.pop("_COMPLETE").last_modified
        assert all(o.last_modified <= marker for o in objects.values()), f"{prefix}: something landed after the marker"
    wanted = {"config.json", "tokenizer_config.json", "model.safetensors", "README.md"}
    assert set(_objects(s3, "models/ingest-tiny/")) == wanted | {"fetch-manifest.json", "_COMPLETE"}
    for name in wanted:
        assert s3.get_object("data", f"models/ingest-tiny/{name}").read() == model.files[name], name
    manifest = json.loads(s3.get_object("data", "models/ingest-tiny/fetch-manifest.json").read())
    assert manifest["repo"] == "Qwen/Tiny-Audio" and manifest["commit"] == model.commit
    bench = json.loads(s3.get_object("data", "benchmarks/ingest-mmsu/fetch-manifest.json").read())
    assert (bench["layout"]["items"], bench["layout"]["audio_present"]) == (3, 3)
    assert s3.get_object("data", "benchmarks/ingest-mmsu/audio/mmsu_1.wav").read() == WAV + b"\x01"

    outputs = {p.parent.name: json.loads(p.read_text()) for p in run_dir.rglob("executor_output.json")}
    assert outputs["resolve-model"]["parameterValues"]["Output"] == model.commit
    assert outputs["fetch-model"]["parameterValues"]["Output"]["commit"] == model.commit
    assert outputs["fetch-benchmark"]["parameterValues"]["Output"]["layout"]["items"] == 3
    assert not any(TOKEN in p.read_text(errors="replace") for p in run_dir.rglob("*") if p.is_file())

    for name in wanted:  # the second run found every model file in the store with its digest
        assert gets[("GET", f"Qwen/Tiny-Audio/{name}")] == again[("GET", f"Qwen/Tiny-Audio/{name}")] == 1, name
    assert again[("GET", "api:Qwen/Tiny-Audio")] > gets[("GET", "api:Qwen/Tiny-Audio")]  # resolved again
