"""Dataset generation against a real OpenAI-compatible HTTP server on 127.0.0.1 (tests/fakes/openai_stub.py) and with
the template backend; decontamination against the real MMAU-test-mini metadata."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from audiomcq.data.io import read_records, write_records
from audiomcq.data.record import MCQRecord, validate
from audiomcq.jsonio import iter_json_items, load_json
from audiomcq.sdg.llm import LLMSpec
from audiomcq.sdg.run import GenConfig, generate_dataset

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from fakes.openai_stub import Stub

MARKERS = ["", "[bad-json]", "[wrong-schema]", "[slow]", "[429]", "[always-429]", "[low-grade]", ""]


def _captions(path, captions):
    """Our own record format as the ``synthetic`` source: one record per caption."""
    rows = [
        MCQRecord.from_dict(
            {
                "id": f"item{i}",
                "source_dataset": "synthetic",
                "audio_path": f"audio/c{i}.wav",
                "question": "q?",
                "choices": ["a", "b"],
                "answer": "a",
                "caption": c,
            }
        )
        for i, c in enumerate(captions)
    ]
    write_records(path, rows)
    return path


@pytest.fixture
def stub():
    server = Stub(slow_seconds=1.5)
    yield server
    server.close()


def test_every_llm_failure_ends_in_a_sample_or_a_recorded_reject(stub, tmp_path):
    data = _captions(
        tmp_path / "items.jsonl", [f"Rain falls on a tin roof {m} (clip {i})" for i, m in enumerate(MARKERS)]
    )
    llm = LLMSpec("openai", "stub-llm", stub.url, concurrency=4, timeout=0.5, retries=2)
    summary = generate_dataset({"synthetic": data}, tmp_path / "out", llm, GenConfig(tries=2, chunk_size=4))
    samples = read_records(tmp_path / "out" / "samples.jsonl")
    rejects = {r["id"]: r for _, r in iter_json_items(tmp_path / "out" / "rejects.jsonl")}
    assert len(samples) + len(rejects) == len(MARKERS)  # nothing silently dropped
    by_marker = dict(zip(MARKERS, [f"item{i}" for i in range(len(MARKERS))], strict=False))
    assert {"item0", "item1", "item3", "item4", "item7"} == {s.id for s in samples}  # recovered: retry, timeout, 429
    assert rejects[by_marker["[wrong-schema]"]]["step"] == "mcq"
    assert rejects[by_marker["[wrong-schema]"]]["reason"].startswith("invalid_output: reply: 'question'")
    assert rejects[by_marker["[always-429]"]]["reason"].startswith("llm_unavailable")
    assert rejects[by_marker["[low-grade]"]]["step"] == "grade"
    for s in samples:  # the foundation loader reads them and they pass validation
        assert not validate(s) and s.question_type == "sound" and s.answer in s.choices
        assert s.get("structured_cot").startswith("<stage1>") and s.get("simple_cot").startswith("<simple")
    assert summary["samples"] == 5 and summary["accounting"]["mcq"]["failures"] >= 1
    assert summary["accounting"]["grade"]["prompt_tokens"] == 100 * summary["accounting"]["grade"]["requests"]


def test_a_killed_run_resends_no_answered_request(tmp_path):
    stub = Stub(delay=0.05)
    try:
        data = _captions(tmp_path / "items.jsonl", [f"A bell rings {i} times" for i in range(12)])
        cmd = [
            sys.executable,
            "-m",
            "audiomcq.cli",
            "generate",
            "--source",
            f"synthetic={data}",
            "--out",
            str(tmp_path / "out"),
            "--llm",
            "openai",
            "--model",
            "stub-llm",
            "--base-url",
            stub.url,
            "--concurrency",
            "2",
            "--chunk-size",
            "2",
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not (tmp_path / "out" / "work" / "part-000001.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)  # let it get part-way into the next chunk
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not (tmp_path / "out" / "samples.jsonl").exists(), "the run must be killed mid-way"
        finished = {
            row["id"] for part in (tmp_path / "out" / "work").glob("part-*.jsonl") for _, row in iter_json_items(part)
        }
        before = len(stub.prompts)
        assert subprocess.run(cmd, capture_output=True, check=False).returncode == 0
        after = stub.prompts[before:]
        assert after, "the restart had unfinished items to ask about"
        for item in finished:  # a finished item's caption is in none of the requests sent after the restart
            caption = f"A bell rings {item[4:]} times"
            assert not any(f"{caption}\n" in p or f"({caption})" in p for p in after), item
        assert len(finished) >= 4 and len(read_records(tmp_path / "out" / "samples.jsonl")) == 12
    finally:
        stub.close()


def test_template_backend_makes_valid_audio_dependent_questions(synth_corpus, tmp_path):
    summary = generate_dataset({"synthetic": synth_corpus / "train.jsonl"}, tmp_path / "out")
    samples = read_records(tmp_path / "out" / "samples.jsonl")
    rejects = list(iter_json_items(tmp_path / "out" / "rejects.jsonl"))
    assert len(samples) + len(rejects) == 64 and len(samples) >= 50  # repeated captions collapse as duplicates
    for s in samples:
        assert not validate(s) and len(set(s.choices)) == 4 and s.answer == s.extra["caption"]
    assert all(r["step"] in ("dedup", "template") for _, r in rejects)
    assert summary["by_type"] and summary["accounting"] == {}


def test_decontamination_finds_planted_overlaps(mmau_file, synth_corpus, tmp_path):
    from audiomcq.sdg.decontam import Decontaminator

    items = [raw for _, raw in iter_json_items(mmau_file)]
    decon = Decontaminator.from_benchmarks({"mmau": mmau_file})
    planted = {
        "id": "p1",
        "question": f"Listen closely. {items[5]['question']} Pick one.",
        "choices": ["a", "b"],
        "answer": "a",
        "audio_path": "clips/mine.wav",
    }
    assert "question_ngram with mmau:" in decon.check(planted)
    stem = items[7]["audio_id"].rsplit("/", 1)[1]
    shared = {**planted, "id": "p2", "question": "Which sound is this?", "audio_path": f"other/{stem}"}
    assert decon.check(shared) == f"shared_audio with mmau:{items[7]['id']} (name:{stem[:-4].lower()})"
    assert decon.check({**planted, "id": "p3", "question": "Which instrument plays first?"}) is None
    # End to end: a corpus record re-using a benchmark clip is removed and reported.
    records = read_records(synth_corpus / "train.jsonl")[:12]
    records[3].audio_path = f"audio/{stem}"
    write_records(tmp_path / "corpus.jsonl", records)
    generate_dataset({"synthetic": tmp_path / "corpus.jsonl"}, tmp_path / "out", benchmarks={"mmau": mmau_file})
    report = load_json(tmp_path / "out" / "decontamination.json")
    assert [h["id"] for h in report["hits"]] == [records[3].id] and report["benchmarks"] == {"mmau": 1000}
    assert records[3].id in (tmp_path / "out" / "decontamination.md").read_text()


def test_the_response_cache_in_s3_serves_a_second_run_without_requests(s3, stub, tmp_path):
    data = _captions(tmp_path / "items.jsonl", [f"Thunder rolls, clip {i}" for i in range(4)])
    llm = LLMSpec("openai", "stub-llm", stub.url, concurrency=2)
    first = generate_dataset({"synthetic": data}, tmp_path / "a", llm, cache_dir="s3://data/llm-cache")
    asked = len(stub.prompts)
    assert asked == 4 * 4 and first["accounting"]["mcq"]["requests"] == 4  # four steps per item
    assert len(list(s3.list_objects("data", prefix="llm-cache/", recursive=True))) == asked
    second = generate_dataset({"synthetic": data}, tmp_path / "b", llm, cache_dir="s3://data/llm-cache")
    assert len(stub.prompts) == asked and second["accounting"]["mcq"] == {"cache_hits": 4}
    assert (tmp_path / "a" / "samples.jsonl").read_bytes() == (tmp_path / "b" / "samples.jsonl").read_bytes()


def test_requests_per_second_is_a_ceiling(stub):
    from audiomcq.sdg.llm import LLM

    llm = LLM(LLMSpec("openai", "stub-llm", stub.url, concurrency=8, requests_per_second=10), cache_dir=None)
    start = time.monotonic()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: llm.chat(
                    "mcq",
                    [
                        {"role": "system", "content": "s"},
                        {
                            "role": "user",
                            "content": f"Allowed question types: sound.\nthe original question):\nclip {i}\n",
                        },
                    ],
                ),
                range(6),
            )
        )
    assert time.monotonic() - start >= 0.45  # 6 starts at 10/s need at least 0.5 s minus the first slot


def test_shards_partition_the_items(synth_corpus, tmp_path):
    ids = []
    for shard in ((0, 2), (1, 2)):
        generate_dataset(
            {"synthetic": synth_corpus / "train.jsonl"}, tmp_path / str(shard[0]), config=GenConfig(shard=shard)
        )
        rows = [r for _, r in iter_json_items(tmp_path / str(shard[0]) / "samples.jsonl")]
        rows += [r for _, r in iter_json_items(tmp_path / str(shard[0]) / "rejects.jsonl")]
        ids.append({r["id"] for r in rows})
    assert not ids[0] & ids[1] and len(ids[0] | ids[1]) == 64


def test_a_local_transformers_llm_is_asked_and_its_bad_json_rejected(tmp_path):
    """A tiny random causal LM (built from config) answers nonsense: every item ends as a recorded reject, with its
    requests and tokens counted."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from audiomcq.models.tiny import build_tokenizer

    tok = build_tokenizer(["Rain falls on a roof", "question choices answer"], 300)
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
    )
    Qwen2ForCausalLM(config).save_pretrained(tmp_path / "llm")
    tok.save_pretrained(tmp_path / "llm")
    data = _captions(tmp_path / "items.jsonl", ["Rain falls on a roof", "A dog barks twice"])
    llm = LLMSpec("transformers", str(tmp_path / "llm"), max_tokens=6, temperature=0.0, concurrency=1)
    summary = generate_dataset({"synthetic": data}, tmp_path / "out", llm, GenConfig(tries=2))
    assert summary["samples"] == 0 and summary["reject_reasons"] == {"mcq: invalid_output": 2}
    assert summary["accounting"]["mcq"]["requests"] == 4 and summary["accounting"]["mcq"]["completion_tokens"] > 0


def test_the_seven_sources_go_through_the_whole_generation(stub, tmp_path):
    """Every fixture source (real formats) through the stub LLM: each input row ends as a sample or a reject, the
    type whitelist holds (TACOS temporal, music sources music, SpeechCraft speech), and the samples validate."""
    from pathlib import Path

    from audiomcq.sdg.sources import Rejected, read_source

    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "sources"
    names = ["Clotho", "AudioCaps", "MusicCaps", "LP-MusicCaps", "SpeechCraft", "TACOS", "CompA-R"]
    sources = {name: fixtures / name for name in names}
    rows = [x for name in names for x in read_source(name, fixtures / name)]
    llm = LLMSpec("openai", "stub-llm", stub.url, concurrency=4)
    summary = generate_dataset(sources, tmp_path / "out", llm, GenConfig(chunk_size=8))
    samples = read_records(tmp_path / "out" / "samples.jsonl")
    rejects = [r for _, r in iter_json_items(tmp_path / "out" / "rejects.jsonl")]
    assert len(samples) + len(rejects) == len(rows)
    assert sum(r["step"] == "input" for r in rejects) == sum(isinstance(x, Rejected) for x in rows) > 0
    expected = {"TACOS": "temporal", "MusicCaps": "music", "LP-MusicCaps": "music", "SpeechCraft": "speech"}
    for s in samples:
        assert not validate(s)
        assert s.question_type == expected.get(s.source_dataset, s.question_type)
    assert set(summary["by_source"]) == {s.source_dataset for s in samples}
    assert {s.source_dataset for s in samples} >= {"TACOS", "CompA-R", "Clotho"}
