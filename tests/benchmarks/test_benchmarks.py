"""Benchmark adapters on the real MMAU/MMAR metadata and on our MMSU/DCASE format fixtures."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from audiomcq.benchmarks import BENCHMARKS, get_benchmark
from audiomcq.benchmarks.dcase import resolve_answer, strip_letter_prefixes
from audiomcq.errors import AudioMCQError, RecordError


def test_mmau_test_mini_loads_whole_with_its_quirks_reported(mmau_file):
    loaded = get_benchmark("mmau").load(mmau_file)
    assert len(loaded.records) == 1000
    # Real-file quirks: nothing dropped, each reported.
    assert loaded.problem_counts() == {"answer_repeated": 16, "choices_collide": 27}
    assert Counter(len(r.choices) for r in loaded.records) == {4: 948, 2: 27, 5: 24, 8: 1}
    assert Counter(r.question_type for r in loaded.records) == {"sound": 333, "music": 334, "speech": 333}
    assert Counter(r.answer_index for r in loaded.records) == {0: 395, 1: 271, 2: 208, 3: 126}
    first = loaded.records[0]
    assert first.audio_path == "./test-mini-audios/3fe64f3d-282c-4bc8-a753-68f8f6c35652.wav"
    assert first.source_dataset == "MMAU"
    assert first.extra["dataset"] == "AudioSet"
    list_categories = [r for r in loaded.records if isinstance(r.extra["category"], list)]
    assert len(list_categories) == 13


def test_mmar_loads_whole_with_its_quirks_reported(mmar_file):
    loaded = get_benchmark("mmar").load(mmar_file)
    assert len(loaded.records) == 1000
    assert Counter(len(r.choices) for r in loaded.records) == {4: 815, 2: 171, 3: 10, 5: 3, 6: 1}
    # Four MMAR items pad their choices with an empty string; they stay, flagged.
    assert loaded.problem_counts() == {"empty_choice": 4}
    assert Counter(r.question_type for r in loaded.records)["speech"] == 294
    assert loaded.records[0].extra["cue"] == ["Throat Singing", "Long Song", "Acoustic Characteristics"]


@pytest.mark.parametrize("name", ["mmau", "mmar"])
def test_to_raw_gives_back_the_official_item_exactly(name, mmau_file, mmar_file):
    path = mmau_file if name == "mmau" else mmar_file
    bench = get_benchmark(name)
    raw_items = [raw for _, raw in bench.iter_raw(path)]
    assert [bench.to_raw(r) for r in bench.load(path).records] == raw_items


def test_missing_audio_is_reported_per_record(mmau_file, tmp_path):
    folder = tmp_path / "test-mini-audios"
    folder.mkdir()
    (folder / "3fe64f3d-282c-4bc8-a753-68f8f6c35652.wav").write_bytes(b"RIFF....")
    loaded = get_benchmark("mmau").load(mmau_file, audio_root=tmp_path)
    assert loaded.problem_counts()["audio_missing"] == 999
    assert "3fe64f3d-282c-4bc8-a753-68f8f6c35652" not in {
        rid for rid, probs in loaded.problems.items() if any(p.code == "audio_missing" for p in probs)
    }


def test_mmsu_fixture(mmsu_file):
    bench = get_benchmark("mmsu")
    loaded = bench.load(mmsu_file)
    assert loaded.problems == {}
    by_id = {r.id: r for r in loaded.records}
    assert by_id["mmsu_0001"].choices == ["Happy", "Sad", "Angry", "Neutral"]
    assert by_id["mmsu_0001"].answer == "Sad"
    assert by_id["mmsu_0002"].choices == ["Question", "Statement"]  # null choice_c/d dropped
    assert by_id["mmsu_0004"].choices == ["Male", "Female"]  # empty choice_c/d dropped
    assert by_id["mmsu_0003"].audio_path == "audio/mmsu_0003.wav"  # HF {"path": ...}
    assert by_id["mmsu_0004"].audio_path == "audio/mmsu_0004.wav"  # plain string
    raw = [json.loads(line) for line in mmsu_file.read_text().splitlines()]
    assert bench.to_raw(by_id["mmsu_0001"]) == raw[0]


def test_mmsu_choice_gap_is_a_clear_error(write_jsonl):
    path = write_jsonl([{"id": "g", "question": "q", "choice_a": "x", "choice_c": "y", "answer_gt": "x"}])
    with pytest.raises(RecordError, match=r"data.jsonl:1: not a valid mmsu item: choices have a gap"):
        get_benchmark("mmsu").load(path)


def test_dcase_fixture(dcase_dir):
    loaded = get_benchmark("dcase2025").load(dcase_dir)
    by_id = {r.id: r for r in loaded.records}
    assert set(by_id) == {"bqa_dev_0001", "cqa_dev_0001", "cqa_dev_0002", "tsqa_dev_0001", "tsqa_dev_0002"}
    assert by_id["bqa_dev_0001"].choices == ["Humpback whale", "Bottlenose dolphin", "Walrus", "Harbor seal"]
    assert by_id["bqa_dev_0001"].answer == "Bottlenose dolphin"
    assert by_id["cqa_dev_0001"].answer == "Train station"  # bare letter "A"
    assert by_id["tsqa_dev_0002"].answer == "Door slam"  # "(C)" prefixes, letter answer
    assert by_id["tsqa_dev_0001"].choices == ["1.2s", "3.4s", "5.6s", "7.8s"]  # no prefixes, untouched
    assert by_id["tsqa_dev_0001"].audio_path == "tsqa/dev/0001.wav"
    assert [p.code for p in loaded.problems["cqa_dev_0002"]] == ["answer_not_in_choices"]
    original = json.loads((dcase_dir / "bqa_dev_0001.json").read_text())
    assert get_benchmark("dcase2025").to_raw(by_id["bqa_dev_0001"]) == {"id": "bqa_dev_0001", **original}


@pytest.mark.parametrize(
    ("choices", "expected"),
    [
        (["A. x", "B. y"], ["x", "y"]),
        (["(A) x", "(B) y"], ["x", "y"]),
        (["A) x", "B) y"], ["x", "y"]),
        (["A. x", "C. y"], ["A. x", "C. y"]),  # not sequential: left alone
        (["A. x", "y"], ["A. x", "y"]),  # not all prefixed
        (["A cat", "B dog"], ["A cat", "B dog"]),  # a word, not a prefix
    ],
)
def test_letter_prefixes_are_stripped_only_when_consistent(choices, expected):
    assert strip_letter_prefixes(choices) == expected


@pytest.mark.parametrize(
    ("answer", "index"),
    [("B. y", 1), ("y", 1), ("B", 1), ("b.", 1), ("(B)", 1), ("E", None), ("w", None), ("", None), ("B. w", None)],
)
def test_dcase_answers_resolve_to_a_choice(answer, index):
    assert resolve_answer(answer, ["A. x", "B. y", "C. z"], ["x", "y", "z"]) == index


def test_registry_and_unknown_names():
    assert set(BENCHMARKS) == {"mmau", "mmar", "mmsu", "dcase2025"}
    with pytest.raises(AudioMCQError, match="unknown benchmark 'mmlu'"):
        get_benchmark("mmlu")


def test_hidden_answer_items_load_for_inference(write_jsonl):
    path = write_jsonl([{"id": "t1", "audio_id": "a.wav", "question": "q", "choices": ["x", "y"], "task": "sound"}])
    loaded = get_benchmark("mmau").load(path)
    assert loaded.records[0].answer == ""
    assert [p.code for p in loaded.problems["t1"]] == ["no_answer"]


def test_structurally_broken_item_names_file_and_item(write_jsonl):
    path = write_jsonl([{"id": "t1", "audio_id": "a.wav", "choices": ["x", "y"], "answer": "x"}])
    with pytest.raises(
        RecordError, match=r"data.jsonl:1: not a valid mmau item: missing required field\(s\) question"
    ):
        get_benchmark("mmau").load(path)


def test_dcase_reordered_choices_are_relettered(dcase_dir):
    from audiomcq.data.allocation import position_balanced

    bench = get_benchmark("dcase2025")
    record = next(r for r in bench.load(dcase_dir).records if r.id == "bqa_dev_0001")
    at_end = position_balanced([record])[3]
    raw = bench.to_raw(at_end)
    assert raw["choice"] == ["A. Walrus", "B. Harbor seal", "C. Humpback whale", "D. Bottlenose dolphin"]
    assert raw["answer"] == "D. Bottlenose dolphin"
    assert bench.to_record(raw).answer == "Bottlenose dolphin"
