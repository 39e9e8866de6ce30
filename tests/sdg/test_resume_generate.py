"""``audiomcq generate`` resumes only work made from the same items by the same LLM and settings: an edited input
ends as exactly its own items, a changed chunk size reuses what was answered, and the summary counts every
process's requests."""

from __future__ import annotations

import os
import sys

import pytest

from audiomcq.cli import main
from audiomcq.data.io import write_records
from audiomcq.data.record import MCQRecord
from audiomcq.jsonio import iter_json_items, load_json
from audiomcq.sdg.llm import LLMSpec
from audiomcq.sdg.run import GenConfig, generate_dataset

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from fakes.openai_stub import Stub


def _captions(path, captions: dict[str, str]):
    rows = [
        MCQRecord.from_dict(
            {
                "id": key,
                "source_dataset": "synthetic",
                "audio_path": f"audio/{key}.wav",
                "question": "q?",
                "choices": ["a", "b"],
                "answer": "a",
                "caption": c,
            }
        )
        for key, c in captions.items()
    ]
    write_records(path, rows)
    return path


def _ids(out) -> list[str]:
    rows = [r for _, r in iter_json_items(out / "samples.jsonl")] + [
        r for _, r in iter_json_items(out / "rejects.jsonl")
    ]
    return sorted(r["id"] for r in rows)


@pytest.fixture
def stub():
    server = Stub()
    yield server
    server.close()


def test_an_edited_input_ends_as_exactly_its_own_items(tmp_path, capsys):
    captions = {
        f"item{i:02d}": f"A {kind} sound, take {i}"
        for i, kind in enumerate(["dog", "bell", "car", "rain", "bird", "drum", "horn", "wind"] * 3)
    }
    data = _captions(tmp_path / "items.jsonl", captions)
    args = ["generate", "--source", f"synthetic={data}", "--out", str(tmp_path / "out"), "--chunk-size", "8"]
    assert main(args) == 0
    edited = {k: v for k, v in captions.items() if k not in ("item03", "item17")}
    edited |= {"item30": "A whistle sound, take 30", "item31": "A siren sound, take 31"}
    _captions(data, edited)
    capsys.readouterr()
    assert main(args) == 0
    assert _ids(tmp_path / "out") == sorted(edited)
    summary = load_json(tmp_path / "out" / "summary.json")
    assert summary["samples"] + summary["rejects"] == len(edited)
    assert f"{summary['samples']} samples, {summary['rejects']} rejects" in capsys.readouterr().out


def test_a_changed_llm_setting_is_refused_naming_it(stub, tmp_path, capsys):
    data = _captions(tmp_path / "items.jsonl", {f"i{n}": f"Thunder rolls, clip {n}" for n in range(4)})
    args = [
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
    ]
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "--temperature", "0.2"]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("audiomcq:")]
    assert len(lines) == 1 and "setting temperature (0.7 -> 0.2)" in lines[0] and "--fresh" in lines[0]
    assert main([*args, "--temperature", "0.2", "--fresh"]) == 0


def test_the_summary_counts_every_process_and_a_new_chunk_size_pays_nothing_twice(stub, tmp_path):
    data = _captions(tmp_path / "items.jsonl", {f"i{n}": f"A bell rings {n} times" for n in range(8)})
    llm = LLMSpec("openai", "stub-llm", stub.url, concurrency=2)
    out = tmp_path / "out"
    first = generate_dataset({"synthetic": data}, out, llm, GenConfig(chunk_size=2))
    paid = len(stub.prompts)
    assert paid == 8 * 4 and first["accounting"]["mcq"]["requests"] == 8
    for name in ("part-000003.jsonl", "part-000003.meta.json"):  # as if killed while answering the last chunk
        (out / "work" / name).unlink()
    resumed = generate_dataset({"synthetic": data}, out, llm, GenConfig(chunk_size=2))
    steps = resumed["accounting"]
    assert all(c.get("requests", 0) + c.get("cache_hits", 0) == 8 for c in steps.values()), steps
    assert steps["mcq"]["requests"] == 6 and steps["mcq"]["cache_hits"] == 2  # the last two from the cache
    samples = (out / "samples.jsonl").read_bytes()
    rechunked = generate_dataset({"synthetic": data}, out, llm, GenConfig(chunk_size=3))
    assert len(stub.prompts) == paid  # nothing asked again, not even of the cache
    assert rechunked["accounting"] == resumed["accounting"] and (out / "samples.jsonl").read_bytes() == samples
    assert not (out / "work" / "stale").exists()
    assert sorted(p.name for p in (out / "work").glob("part-*.jsonl")) == [f"part-00000{i}.jsonl" for i in range(3)]
