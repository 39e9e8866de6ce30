"""The pipelines run locally (kfp.local) end to end: the demo loop on the smoke recipe with its artifacts in the
local S3 server, the filter and sdg fan-outs, the evaluate and train pipelines, and the busy time the local run's
stage timings add up to. A run takes minutes: all but the busy-time test are marked slow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytest.importorskip("kfp")


@pytest.mark.slow
def test_local_pipeline_runs_end_to_end_on_the_smoke_recipe(tmp_path, s3):
    """The whole loop as the local KFP pipeline, its big artifacts also kept in the local S3 server."""
    from audiomcq.bench.pipeline import bench_pipeline
    from audiomcq.infra import storage

    bench = bench_pipeline(tmp_path, "smoke", publish="s3://data/loop")  # the local run, with stage timings on
    (run_dir,) = (tmp_path / "root").glob("audiomcq-demo-*")
    assert bench["tasks"] == 14 and 0 < bench["busy_s"] <= bench["wall_s"]  # synth, 4 pretrains, filter, 3 evals, ...
    assert bench["task_compute_s"] > bench["busy_s"]  # the fan-outs really overlapped
    report = (run_dir / "report" / "markdown").read_text()
    assert "## Audio-contribution labels" in report and "| base |" in report
    assert "## Dataset generation (template backend" in report  # the embedded default runs generation too
    sdg = json.loads(next(Path(run_dir).rglob("sdg/summary.json")).read_text())
    assert sdg["samples"] > 0 and sdg["llm"]["backend"] == "template"
    selection = json.loads(next(Path(run_dir).rglob("selection.json")).read_text())
    assert selection["selected"] in {c["name"] for c in selection["candidates"]}
    assert (run_dir / "report" / "html").read_text().startswith("<html>")
    (prefix,) = storage.subprefixes("s3://data/loop")  # this run's own prefix: <publish>/<run id>
    for where in ("corpus", "models/base", "models/2", "labels", "runs/weak_to_strong", "runs/mixed_to_strong"):
        assert storage.is_complete(f"{prefix}/{where}"), where
    outputs = "".join(p.read_text() for p in run_dir.rglob("executor_output.json"))
    assert f'"uri": "{prefix}/runs/weak_to_strong"' in outputs  # each artifact's S3 location, in its metadata
    decision = json.loads((run_dir / "promote" / "decision" / "decision.json").read_text())  # the gate, run dry
    isvc = yaml.safe_load((run_dir / "promote" / "decision" / "inferenceservice.yaml").read_text())
    chosen = selection["selected"]
    where = "models/base" if chosen == "base" else f"runs/{chosen.split('/')[0]}/{chosen.split('/')[1]}/final"
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == f"{prefix}/{where}"
    assert decision["candidate"]["synthetic"]["accuracy"] == selection["accuracy"]  # the evaluate step's own metrics
    assert "Promotion gate" in (run_dir / "promote" / "summary").read_text()


@pytest.mark.slow
def test_filter_and_sdg_pipelines_fan_out_locally_with_artifacts_in_s3(
    s3, tiny_omni, tiny_qwen2_audio, synth_corpus, tmp_path, monkeypatch
):
    """`audiomcq-filter` with 2 filter models x 2 shards (4 cells, side by side) reads its records from S3 and
    publishes labels there equal to a single unsharded run; `audiomcq-sdg` over 2 shards publishes every sample of
    a single run. Both show their summary as Markdown."""
    from audiomcq.acf import FilterConfig, run_filter
    from audiomcq.cli.demo import run_pipeline_quietly
    from audiomcq.pipelines.run import run_local
    from audiomcq.sdg.run import generate_dataset

    data = (synth_corpus / "eval.jsonl").read_bytes()
    s3.put_object("data", "in/eval.jsonl", __import__("io").BytesIO(data), len(data))
    settings = {"probes": ["silence:2"], "min_correct": 1, "chunk_size": 4}  # silence: independent of sharding
    models = [str(tiny_omni), str(tiny_qwen2_audio)]
    timings = tmp_path / "timings.jsonl"
    monkeypatch.setenv("AUDIOMCQ_STAGE_TIMINGS", str(timings))
    run_dir = run_local(
        tmp_path / "root",
        pipeline="audiomcq-filter",
        data="s3://data/in/eval.jsonl",
        models=models,
        audio_root=str(synth_corpus),
        settings=settings,
        shards=[0, 1],
        publish="s3://data/out/acf",
    )
    run_filter(
        synth_corpus / "eval.jsonl", models, synth_corpus, tmp_path / "single", FilterConfig.from_dict(settings)
    )
    published = s3.get_object("data", "out/acf/labelled.jsonl").read()
    assert published == (tmp_path / "single" / "labelled.jsonl").read_bytes()
    assert storage_complete("s3://data/out/acf")
    cells = [json.loads(line) for line in timings.read_text().splitlines() if '"filter_answer"' in line]
    assert len(cells) == 4  # every (model, shard) cell ran as its own task ...
    first_end = min(c["end"] for c in cells)
    assert sum(c["start"] < first_end for c in cells) >= 2  # ... and two ran at the same time
    summary = next(run_dir.rglob("filter-label/summary")).read_text()
    stats = json.loads((tmp_path / "single" / "stats.json").read_text())
    assert f"**{stats['weak']} weak / {stats['strong']} strong**" in summary and "filter1" in summary
    # The sdg run goes through the demo's quiet runner: a child process, one line per task, the logs in a file.
    lines: list[str] = []
    params = {
        "sources": {"synthetic": str(synth_corpus / "train.jsonl")},
        "shards": [0, 1],
        "publish": "s3://data/out/sdg",
    }
    args = [a for k, v in params.items() for a in ("--param", f"{k}={json.dumps(v)}")]
    sdg_dir = run_pipeline_quietly(tmp_path / "root", tmp_path / "sdg.log", args, "audiomcq-sdg", say=lines.append)
    assert sdg_dir.is_dir() and sdg_dir.name.startswith("audiomcq-sdg-")
    finished = [line for line in lines if line.startswith("  [")]
    # 2 shards, then the merge; kfp.local runs the shards in parallel threads and now and then drops one of their
    # "finished" log lines, so one shard line may be missing (the merge's needs both shards done)
    assert 2 <= len(finished) <= 3 and all(" success " in line for line in finished), lines
    assert "generate-shard" in finished[0] and "generate-merge" in finished[-1], lines
    assert "Streamed logs" in (tmp_path / "sdg.log").read_text()  # the executors' output is kept, not shown
    single = generate_dataset({"synthetic": synth_corpus / "train.jsonl"}, tmp_path / "sdg-single")
    merged = json.loads(s3.get_object("data", "out/sdg/summary.json").read())
    assert merged["samples"] == single["samples"] and merged["shards"] == 2
    assert {t: r["count"] for t, r in merged["by_type"].items()} == {
        t: r["count"] for t, r in single["by_type"].items()
    }


def storage_complete(uri):
    from audiomcq.infra import storage

    return storage.is_complete(uri)


def test_busy_time_is_the_union_of_stage_intervals():
    from audiomcq.timing import busy_seconds

    assert busy_seconds([(0, 2), (1, 3), (5, 6), (5.5, 5.8)]) == 4.0
    assert busy_seconds([]) == 0.0


@pytest.mark.slow
def test_evaluate_pipeline_runs_tasks_in_parallel_branches(tiny_omni, synth_corpus, mmau_file, tmp_path):
    import numpy as np
    import soundfile as sf

    from audiomcq.pipelines.run import run_local

    items = json.loads(mmau_file.read_text())[:6]
    (tmp_path / "mmau.json").write_text(json.dumps(items))
    for item in items:  # generated clips at the metadata's own paths
        path = tmp_path / "audio" / item["audio_id"]
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, np.zeros(4000, np.float32), 16000)
    mmau = {"name": "mmau-test-mini", "data": str(tmp_path / "mmau.json"), "audio_root": str(tmp_path / "audio")}
    tasks = [{"name": "synthetic", "data": str(synth_corpus / "eval.jsonl"), "audio_root": str(synth_corpus)}, mmau]
    run_dir = run_local(
        tmp_path / "root",
        pipeline="audiomcq-evaluate",
        model=str(tiny_omni),
        tasks=tasks,
        settings={"max_new_tokens": 4, "silent_control": False},
    )
    table = next(run_dir.rglob("eval-report/markdown")).read_text()
    assert "| synthetic | 16 |" in table and "| mmau-test-mini | 6 |" in table
    assert len(list(run_dir.rglob("predictions-audio.json*"))) == 2


@pytest.mark.slow
def test_train_pipeline_trains_a_paradigm_and_selects_a_checkpoint(tiny_omni, synth_corpus, tmp_path):
    from audiomcq.data.io import read_records, write_records
    from audiomcq.pipelines.run import run_local

    for split in ("train", "eval"):
        records = read_records(synth_corpus / f"{split}.jsonl")
        for r in records:  # labelled as a perfect filter would
            r.audio_contribution = "weak" if r.extra["text_answerable"] else "strong"
        write_records(tmp_path / f"{split}.jsonl", records)
    sets = [
        "allocation.sft_fraction=0.25",
        "allocation.augment=1",
        "grpo.trainer_args.num_generations=2",
        "grpo.trainer_args.max_completion_length=4",
        "grpo.trainer_args.dataloader_num_workers=0",
    ]
    for stage in ("sft", "grpo"):
        sets += [
            f"{stage}.trainer_args.{k}"
            for k in ("bf16=false", "deepspeed=null", "max_steps=2", "per_device_train_batch_size=4", "save_steps=1")
        ]
    run_dir = run_local(
        tmp_path / "root",
        pipeline="audiomcq-train",
        model=str(tiny_omni),
        labelled=str(tmp_path / "train.jsonl"),
        audio_root=str(synth_corpus),
        selection=str(tmp_path / "eval.jsonl"),
        paradigm="mixed_to_strong",
        recipe="mixed_to_strong",
        overrides=sets,
        max_new_tokens=4,
    )
    selection = json.loads(next(run_dir.rglob("selection.json")).read_text())
    stages = {(c["stage"], c["step"]) for c in selection["candidates"]}
    assert stages == {("sft", 1), ("sft", 2), ("grpo", 1), ("grpo", 2)}
    assert selection["selected"]["path"] in {c["path"] for c in selection["candidates"]}
    table = next(run_dir.rglob("select-checkpoint*/table")).read_text()  # the KFP UI's views of the choice
    assert f"{selection['selected']['stage']} step {selection['selected']['step']}" in table
    assert (
        table.count("\n| sft |") == 2
        and "data:image/png;base64," in next(run_dir.rglob("select-checkpoint*/curves")).read_text()
    )
