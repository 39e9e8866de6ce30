"""Audio-contribution filtering: probes, rule variants against ground truth, streaming outputs, resume, shards."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from audiomcq.acf import FilterConfig, Probe, rule_variants, run_filter
from audiomcq.acf.probes import Clips, requests
from audiomcq.acf.run import merge_shards
from audiomcq.acf.stats import Summary
from audiomcq.data.io import read_records
from audiomcq.data.record import MCQRecord
from audiomcq.synth.audio import SR


def _records(n: int = 3) -> list[MCQRecord]:
    return [
        MCQRecord(id=f"r{i}", question="Q?", choices=["a", "b", "c", "d"], answer="b", audio_path=f"{i}.wav")
        for i in range(n)
    ]


def test_probes_hide_the_audio_each_in_their_own_way():
    records = _records()
    clips = Clips([np.full(SR, 0.1 * (i + 1), np.float32) for i in range(3)])
    silence, _ = requests(Probe.parse("silence:30"), records, clips)
    assert silence[0].audio.shape == (30 * SR,) and not silence[0].audio.any()
    as_long, _ = requests(Probe.parse("silence:clip"), records, clips)
    assert as_long[0].audio.shape == (SR,)
    mismatch, _ = requests(Probe.parse("mismatch:1"), records, clips)
    assert [float(r.audio[0]) for r in mismatch] == pytest.approx([0.2, 0.3, 0.1])  # another item's clip, never own
    shuffled, shown = requests(Probe.parse("shuffle:1"), records, clips)
    assert shown[0] == ("b", "c", "d", "a") and shuffled[0].choices == shown[0] and not shuffled[0].audio.any()
    noise_a, _ = requests(Probe.parse("noise:1"), records, clips)
    noise_b, _ = requests(Probe.parse("noise:1"), records, clips)
    assert noise_a[0].audio.std() > 0 and np.array_equal(noise_a[0].audio, noise_b[0].audio)  # seeded by the id
    with pytest.raises(ValueError, match="probe must be one of"):
        Probe.parse("louder")


def test_mismatch_skips_missing_clips_and_falls_back_to_silence_when_alone():
    records = _records()
    clips = Clips([np.ones(SR, np.float32), None, np.full(SR, 0.5, np.float32)])
    reqs, _ = requests(Probe.parse("mismatch:1"), records, clips)
    assert float(reqs[0].audio[0]) == 0.5 and float(reqs[1].audio[0]) == 0.5 and float(reqs[2].audio[0]) == 1.0
    alone, _ = requests(Probe.parse("mismatch:1"), records[:1], Clips([np.ones(SR, np.float32)]))
    assert not alone[0].audio.any()


def _cell(ok: bool) -> dict:
    return {"outputs": ["x"], "answers": [None if not ok else "b"], "correct": [ok]}


def test_a_shared_constant_guess_fools_the_paper_rule_but_not_the_mismatch_variant():
    rules = rule_variants(["silence:30", "mismatch:1", "mismatch:2"], 2)
    assert [r.name for r in rules] == ["paper", "silence:30+mismatch"]  # "all-probes" is the same set: dropped
    summary = Summary(rules, "paper")
    # An audio-dependent item whose answer happens to be every model's silent guess: right in silence, wrong on
    # mismatched clips. A text-answerable item: right everywhere.
    lucky = {"silence:30": _cell(True), "mismatch:1": _cell(False), "mismatch:2": _cell(True)}
    text = {"silence:30": _cell(True), "mismatch:1": _cell(True), "mismatch:2": _cell(True)}
    for truth, probes in ((False, lucky), (True, text)):
        record = MCQRecord(id=str(truth), question="Q?", choices=["a", "b"], answer="b")
        record.extra["text_answerable"] = truth
        results = {f"m{k}": probes for k in range(3)}
        acf = {"models": results, "votes": {r.name: r.votes(results) for r in rules}, "score": 1.0}
        record.audio_contribution = "weak"
        summary.add(record, acf)
    quality = summary.result()["ground_truth"]
    assert quality["paper"]["false_weak_rate"] == 100.0 and quality["paper"]["agreement"] == 50.0
    assert (
        quality["silence:30+mismatch"]["agreement"] == 100.0 and quality["silence:30+mismatch"]["weak_recall"] == 100.0
    )
    assert summary.result()["models"]["m0"]["silence:30"]["unparsed"] == 0


@pytest.fixture(scope="module")
def filtered(synth_corpus, tiny_omni, tmp_path_factory):
    out = tmp_path_factory.mktemp("acf")
    config = FilterConfig(probes=("silence:2", "mismatch:1"), chunk_size=8)
    stats = run_filter(synth_corpus / "eval.jsonl", [tiny_omni, tiny_omni], synth_corpus, out, config)
    return out, stats


def test_filter_labels_every_record_once_in_input_order(filtered, synth_corpus):
    out, stats = filtered
    ids = [r.id for r in read_records(synth_corpus / "eval.jsonl")]
    labelled = read_records(out / "labelled.jsonl")
    assert [r.id for r in labelled] == ids
    weak, strong = read_records(out / "weak.jsonl"), read_records(out / "strong.jsonl")
    assert sorted(r.id for r in weak + strong) == sorted(ids) and stats["weak"] == len(weak)
    first = labelled[0].extra["acf"]
    assert set(first["models"]) == {"filter0", "filter1"} and set(first["models"]["filter0"]) == {
        "silence:2",
        "mismatch:1",
    }
    assert set(stats["ground_truth"]) == {"paper", "silence:2+mismatch"}  # the synthetic corpus has ground truth


def test_each_models_budget_comes_from_the_data_and_its_truncations_are_counted(filtered):
    out, stats = filtered
    budget = json.loads((out / "work" / "filter0" / "budget.json").read_text())
    assert stats["budgets"]["filter0"] == budget and budget["source"] == "data" and budget["margin"] == 16
    assert budget["max_new_tokens"] == budget["longest_tokens"] + 16
    cells = [c for r in read_records(out / "labelled.jsonl") for c in r.extra["acf"]["models"]["filter0"].values()]
    flagged = sum(sum(c["truncated"]) for c in cells)
    assert stats["truncated"]["filter0"] == flagged > 0  # a random tiny model rarely closes its tag
    per_probe = stats["models"]["filter0"]
    assert per_probe["silence:2"]["truncated"] + per_probe["mismatch:1"]["truncated"] == flagged
    assert stats["over_length"] == 0 and not (out / "over_length.jsonl").read_text()


def test_unparsable_output_is_recorded_and_counted_wrong(filtered):
    out, stats = filtered
    cells = [c for r in read_records(out / "labelled.jsonl") for c in r.extra["acf"]["models"]["filter0"].values()]
    unparsed = [c for c in cells if c["answers"] == [None]]
    assert unparsed, "a random tiny model should emit some output without an <answer> tag"
    assert all(c["outputs"][0] is not None for c in unparsed)
    assert stats["models"]["filter0"]["silence:2"]["unparsed"] > 0


def test_missing_audio_still_gets_a_silent_label_and_is_flagged(synth_corpus, tiny_omni, tmp_path):
    rows = [json.loads(line) for line in (synth_corpus / "eval.jsonl").read_text().splitlines()[:4]]
    rows[1]["audio_path"] = "audio/gone.wav"
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = FilterConfig(probes=("silence:2",), min_correct=1)
    stats = run_filter(data, [tiny_omni], synth_corpus, tmp_path / "out", config)
    labelled = read_records(tmp_path / "out" / "labelled.jsonl")
    assert [r.audio_contribution in ("weak", "strong") for r in labelled] == [True] * 4
    assert [r.extra["acf"]["audio_missing"] for r in labelled] == [False, True, False, False]
    assert stats["audio_missing"] == 1


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "audiomcq.cli", "filter", *args]


def test_a_killed_run_resumes_to_exactly_the_uninterrupted_result(synth_corpus, tiny_omni, tmp_path):
    common = [
        "--data",
        str(synth_corpus / "train.jsonl"),
        "--audio-root",
        str(synth_corpus),
        "--models",
        str(tiny_omni),
        str(tiny_omni),
        "--probes",
        "silence:2",
        "mismatch:1",
        "--chunk-size",
        "4",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_cli("run", *common, "--out", str(tmp_path / "whole")), check=True, env=env, capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli("run", *common, "--out", str(killed)), env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list((killed / "work" / "filter0").glob("part-*.jsonl"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "labelled.jsonl").exists(), "the run finished before it could be killed"
    subprocess.run(_cli("run", *common, "--out", str(killed)), check=True, env=env, capture_output=True)
    assert (killed / "labelled.jsonl").read_bytes() == (tmp_path / "whole" / "labelled.jsonl").read_bytes()
    assert not list(killed.rglob("*.tmp"))


def test_shards_merge_back_into_input_order(filtered, synth_corpus, tiny_omni, tmp_path):
    data = synth_corpus / "eval.jsonl"
    shards = []
    for i in range(3):
        config = FilterConfig(probes=("silence:2", "mismatch:1"), chunk_size=8, shard=(i, 3))
        run_filter(data, [tiny_omni, tiny_omni], synth_corpus, tmp_path / f"s{i}", config)
        shards.append(tmp_path / f"s{i}")
    merged = merge_shards(shards, tmp_path / "merged")
    assert [r.id for r in read_records(tmp_path / "merged" / "labelled.jsonl")] == [r.id for r in read_records(data)]
    per_shard = [json.loads((s / "stats.json").read_text()) for s in shards]
    assert merged["count"] == sum(s["count"] for s in per_shard) and merged["weak"] == sum(
        s["weak"] for s in per_shard
    )
    with pytest.raises(Exception, match="expected 0/3"):
        merge_shards([shards[1], shards[0], shards[2]], tmp_path / "bad")


def test_model_by_shard_cells_label_exactly_like_one_run(synth_corpus, tiny_omni, tmp_path):
    """The pipeline's unit of work: each (model, shard) cell answers alone; the labels from all cells equal those of
    sharded runs with every model, merged, byte for byte (with the mismatch probe too, whose donors are drawn per
    shard); a missing or repeated cell is refused by name."""
    from audiomcq.acf.run import answer_with, label_answers
    from audiomcq.errors import AudioMCQError

    data = str(synth_corpus / "eval.jsonl")
    models = [{"path": str(tiny_omni), "name": "a"}, {"path": str(tiny_omni), "name": "b", "batch_size": 3}]
    settings = {"probes": ("silence:2", "mismatch:1"), "chunk_size": 4}
    cells = []
    for s in range(2):
        for m in range(2):
            cells.append(tmp_path / f"cell-{m}-{s}")
            answer_with(data, models, m, str(synth_corpus), cells[-1], FilterConfig(**settings, shard=(s, 2)))
    label_answers(data, models, cells, tmp_path / "labels", FilterConfig(**settings), 2)
    for s in range(2):
        run_filter(data, models, synth_corpus, tmp_path / f"shard{s}", FilterConfig(**settings, shard=(s, 2)))
    merge_shards([tmp_path / "shard0", tmp_path / "shard1"], tmp_path / "one")
    for name in ("labelled.jsonl", "weak.jsonl", "strong.jsonl"):
        assert (tmp_path / "labels" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    with pytest.raises(AudioMCQError, match=r"b@1"):
        label_answers(data, models, cells[:3], tmp_path / "bad", FilterConfig(**settings), 2)
    with pytest.raises(AudioMCQError, match="repeat a cell"):
        label_answers(data, models, [*cells, cells[0]], tmp_path / "bad", FilterConfig(**settings), 2)


def test_benchmark_filter_keeps_every_item_and_reports_zero_audio_contribution(mmau_file, tiny_omni, tmp_path):
    from audiomcq.acf.benchmark import filter_benchmark
    from audiomcq.benchmarks import get_benchmark

    loaded = get_benchmark("mmau").load(mmau_file)
    raw = json.loads(mmau_file.read_text())
    quirky = set(loaded.problems)
    subset = [r for r in raw if r["id"] in quirky][:5] + [r for r in raw if r["id"] not in quirky][:25]
    data = tmp_path / "mmau-subset.json"
    data.write_text(json.dumps(subset))
    report = filter_benchmark(
        "mmau", data, [tiny_omni], None, tmp_path / "out", FilterConfig(probes=("silence:2",), min_correct=1)
    )
    assert report["items"] == 30 and report["audio_missing"] == 30  # quirky items are filtered as published
    ids = (tmp_path / "out" / "ac_strong_ids.txt").read_text().split()
    assert len(ids) == report["ac_strong"] and set(ids) <= {r["id"] for r in subset}
    row = report["models"]["filter0"]
    assert row["audio"] is None and 0 <= row["silence"] <= 100 and row["chance"] == pytest.approx(25.0, abs=5)
    assert "| filter0 | – |" in (tmp_path / "out" / "zero_ac.md").read_text()


def test_graded_score_over_samples(synth_corpus, tiny_omni, tmp_path):
    rows = (synth_corpus / "eval.jsonl").read_text().splitlines()[:6]
    data = tmp_path / "in.jsonl"
    data.write_text("\n".join(rows) + "\n")
    config = FilterConfig(probes=("silence:2",), min_correct=1, samples=3, temperature=1.0)
    run_filter(data, [tiny_omni, tiny_omni], synth_corpus, tmp_path / "out", config)
    for record in read_records(tmp_path / "out" / "labelled.jsonl"):
        acf = record.extra["acf"]
        cells = [acf["models"][m]["silence:2"] for m in ("filter0", "filter1")]
        assert all(len(c["outputs"]) == 3 for c in cells)
        assert acf["score"] == pytest.approx(sum(sum(c["correct"]) for c in cells) / 6)


def test_parquet_shards_filter_like_jsonl(filtered, synth_corpus, tiny_omni, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in (synth_corpus / "eval.jsonl").read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "eval.parquet")
    config = FilterConfig(probes=("silence:2", "mismatch:1"), chunk_size=8)
    run_filter(tmp_path / "eval.parquet", [tiny_omni, tiny_omni], synth_corpus, tmp_path / "out", config)
    out, _ = filtered
    got = [(r.id, r.audio_contribution) for r in read_records(tmp_path / "out" / "labelled.jsonl")]
    assert got == [(r.id, r.audio_contribution) for r in read_records(out / "labelled.jsonl")]
