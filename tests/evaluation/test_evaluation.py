"""``audiomcq eval`` on the real MMAU-test-mini and MMAR metadata with generated audio, a tiny model, and the
official scoring rules re-applied to the prediction files it writes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiomcq.benchmarks import get_benchmark
from audiomcq.cli import main
from audiomcq.jsonio import iter_json_items, load_json
from audiomcq.scoring import string_match


def _audio_for(metadata: Path, key: str, root: Path, limit: int | None = None) -> int:
    """Half a second of seeded noise for each item's audio path (the metadata's own relative paths)."""
    rng = np.random.default_rng(0)
    items = [raw for _, raw in iter_json_items(metadata)][:limit]
    for raw in items:
        path = root / raw[key]
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000)
    return len(items)


@pytest.fixture(scope="module")
def mmau_eval(mmau_file, tiny_omni, tmp_path_factory):
    """One evaluation of the tiny model on all of MMAU-test-mini (3 clips deleted, 1 corrupted), with AC-strong ids."""
    root = tmp_path_factory.mktemp("mmau")
    _audio_for(mmau_file, "audio_id", root)
    items = [raw for _, raw in iter_json_items(mmau_file)]
    for raw in items[:3]:
        (root / raw["audio_id"]).unlink()
    (root / items[3]["audio_id"]).write_bytes(b"RIFF not really a wav")
    strong = tmp_path_factory.mktemp("ac") / "mmau.txt"
    strong.write_text("\n".join(raw["id"] for raw in items[::3]) + "\n")
    out = tmp_path_factory.mktemp("eval")
    args = [
        "eval",
        "--model",
        str(tiny_omni),
        "--tasks",
        f"mmau-test-mini={mmau_file}",
        "--audio-root",
        str(root),
        "--ac-strong",
        f"mmau-test-mini={strong}",
        "--out",
        str(out),
        "--max-new-tokens",
        "8",
    ]
    assert main(args) == 0
    return out, items, strong, args


def test_official_rescoring_of_the_prediction_file_gives_our_totals(mmau_eval):
    out, items, _, _ = mmau_eval
    metrics = load_json(out / "mmau-test-mini" / "metrics.json")
    audio = metrics["modes"]["audio"]
    predictions = json.loads((out / "mmau-test-mini" / "predictions-audio.json").read_text())
    assert len(predictions) == 1000 and [p["id"] for p in predictions] == [raw["id"] for raw in items]
    # The official rule, applied by hand: string_match on model_output; items without the key are skipped.
    judged = [string_match(p["answer"], p["model_output"], p["choices"]) for p in predictions if "model_output" in p]
    assert audio["total"]["count"] == len(judged) == 996 and audio["total"]["correct"] == sum(judged)
    assert audio["audio_missing"] == 3 and audio["audio_corrupt"] == 1
    assert {p.get("audio_status") for p in predictions[:4]} == {"missing", "corrupt"}
    # And through `audiomcq score`, which the benchmark tests tie to the official scripts.
    pred = out / "mmau-test-mini" / "predictions-audio.json"
    rescored = out / "rescored.json"
    assert main(["score", "--benchmark", "mmau", "--predictions", str(pred), "--output", str(rescored)]) == 0
    assert load_json(rescored)["total"] == audio["total"]
    assert "| mmau-test-mini | 1000 |" in (out / "metrics.md").read_text()
    # --max-new-tokens 8 was asked for: it wins over the data's budget, and the answers it cut are counted and flagged
    assert metrics["max_new_tokens"] == 8 and metrics["budget"]["source"] == "user"
    assert metrics["budget"]["longest_tokens"] > 8
    assert audio["truncated"] == sum(bool(p.get("truncated")) for p in predictions) > 0


def test_ac_strong_subset_and_silent_control_are_reported(mmau_eval):
    out, _, strong, _ = mmau_eval
    metrics = load_json(out / "mmau-test-mini" / "metrics.json")
    ids = set(strong.read_text().split())
    predictions = {p["id"]: p for p in json.loads((out / "mmau-test-mini" / "predictions-audio.json").read_text())}
    subset = [
        string_match(p["answer"], p["model_output"], p["choices"])
        for i, p in predictions.items()
        if i in ids and "model_output" in p
    ]
    assert metrics["modes"]["audio"]["ac_strong"]["count"] == len(subset)
    assert metrics["modes"]["audio"]["ac_strong"]["correct"] == sum(subset)
    silence = metrics["modes"]["silence"]["total"]
    assert silence["count"] == 996  # the same items as with audio
    assert metrics["audio_contribution"] == pytest.approx(
        metrics["modes"]["audio"]["total"]["accuracy"] - silence["accuracy"]
    )
    summary = load_json(out / "metrics.json")
    assert set(summary["tasks"]) == {"mmau-test-mini"}


def test_a_rerun_skips_finished_chunks_and_redoes_a_lost_one(mmau_eval):
    out, _, _, args = mmau_eval
    work = out / "mmau-test-mini" / "work" / "audio"
    parts = sorted(work.glob("part-*.jsonl"))
    assert len(parts) == 4  # 1000 items in chunks of 256
    before = {p: p.read_bytes() for p in parts}
    stamps = {p: p.stat().st_mtime_ns for p in parts[1:]}
    parts[0].unlink()  # as if killed while answering chunk 0
    first = load_json(out / "mmau-test-mini" / "metrics.json")
    assert main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in parts[1:]} == stamps  # not recomputed
    assert parts[0].read_bytes() == before[parts[0]]  # recomputed identically (greedy)
    again = load_json(out / "mmau-test-mini" / "metrics.json")
    assert again["modes"]["audio"]["total"] == first["modes"]["audio"]["total"]


def test_mmar_shards_partition_the_items_and_balanced_variant_reports_consistency(mmar_file, tiny_omni, tmp_path):
    root = tmp_path / "audio"
    subset = tmp_path / "mmar-40.jsonl"
    subset.write_text("".join(line for line in mmar_file.read_text().splitlines(keepends=True)[:40]))
    _audio_for(subset, "audio_path", root)
    common = [
        "eval",
        "--model",
        str(tiny_omni),
        "--tasks",
        f"mmar={subset}",
        "--audio-root",
        str(root),
        "--max-new-tokens",
        "8",
        "--no-silence",
    ]
    ids = []
    for shard in ("0/2", "1/2"):
        assert main([*common, "--out", str(tmp_path / shard.replace("/", "of")), "--shard", shard]) == 0
        rows = [
            raw for _, raw in iter_json_items(tmp_path / shard.replace("/", "of") / "mmar" / "predictions-audio.jsonl")
        ]
        assert all("answer_prediction" in r and "raw_output" in r for r in rows)
        ids.append([r["id"] for r in rows])
    assert sorted(ids[0] + ids[1]) == sorted(raw["id"] for _, raw in iter_json_items(subset))
    assert not set(ids[0]) & set(ids[1])
    assert main([*common, "--out", str(tmp_path / "balanced"), "--balanced"]) == 0
    metrics = load_json(tmp_path / "balanced" / "mmar" / "metrics.json")
    n_items = sum(len(raw["choices"]) for _, raw in iter_json_items(subset))
    assert metrics["items"] == n_items and metrics["modes"]["audio"]["total"]["count"] == n_items
    consistency = metrics["modes"]["audio"]["consistency"]
    assert consistency["questions"] == 40 and 0 <= consistency["all_positions_right"] <= 100
    assert "silence" not in metrics["modes"]


def test_hidden_answers_are_exported_not_scored_and_dcase_gets_its_csv(mmau_file, dcase_dir, tiny_omni, tmp_path):
    hidden = [{**raw, "answer": ""} for _, raw in iter_json_items(mmau_file)][:6]  # MMAU-test ships no answers
    (tmp_path / "mmau-test.json").write_text(json.dumps(hidden))
    _audio_for(tmp_path / "mmau-test.json", "audio_id", tmp_path / "audio")
    assert (
        main(
            [
                "eval",
                "--model",
                str(tiny_omni),
                "--tasks",
                "mmau-test",
                "--data-dir",
                str(tmp_path),
                "--audio-root",
                str(tmp_path / "audio"),
                "--out",
                str(tmp_path / "out"),
                "--max-new-tokens",
                "4",
                "--no-silence",
            ]
        )
        == 0
    )
    exported = json.loads((tmp_path / "out" / "mmau-test" / "predictions-audio.json").read_text())
    assert len(exported) == 6 and all("model_output" in p for p in exported)
    audio = load_json(tmp_path / "out" / "mmau-test" / "metrics.json")["modes"]["audio"]
    assert "total" not in audio and "official server" in audio["note"]
    bench = get_benchmark("dcase2025")
    records = bench.load(dcase_dir).records
    for r in records:  # the fixture's audio_url values, as generated clips
        path = tmp_path / "dcase-audio" / r.audio_path
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, np.zeros(4000, np.float32), 16000)
    assert (
        main(
            [
                "eval",
                "--model",
                str(tiny_omni),
                "--tasks",
                f"dcase2025={dcase_dir}",
                "--audio-root",
                str(tmp_path / "dcase-audio"),
                "--out",
                str(tmp_path / "dc"),
                "--max-new-tokens",
                "4",
                "--no-silence",
            ]
        )
        == 0
    )
    with (tmp_path / "dc" / "dcase2025" / "predictions-audio.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["question"] for r in rows] == [r.id for r in records]
    raw_choices = {r.id: r.extra.get("choice", r.choices) for r in records}
    assert all(row["answer"] in ("", *raw_choices[row["question"]]) for row in rows)
    scored = load_json(tmp_path / "dc" / "dcase2025" / "metrics.json")["modes"]["audio"]["total"]
    assert scored["count"] == len(records)
