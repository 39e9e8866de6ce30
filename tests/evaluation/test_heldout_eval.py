"""The demo pipeline's held-out evaluation is the harness's ``synthetic`` task: with audio and in silence,
broken down by the strong-AC subset, the synthetic ground truth and each family, with the numbers the demo's own
evaluation gave for the same records."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import pytest

from audiomcq.data.io import read_records, write_records
from audiomcq.data.record import MCQRecord
from audiomcq.jsonio import iter_jsonl
from audiomcq.scoring import extract_answer, string_match
from audiomcq.stages.demo import evaluate_stage


def _layout(synth_corpus: Path, root: Path) -> tuple[Path, Path, list[MCQRecord]]:
    """The corpus and labels artifacts as the pipeline passes them: the held-out split labelled by its ground truth."""
    records = read_records(synth_corpus / "eval.jsonl")
    # the stand-in engine knows an item by its text: keep one item per question and choices (spoken families repeat
    # a text over different clips)
    seen: set = set()
    records = [
        r for r in records if not ((r.question, tuple(r.choices)) in seen or seen.add((r.question, tuple(r.choices))))
    ]
    for r in records:
        r.audio_contribution = "weak" if r.extra["text_answerable"] else "strong"
    write_records(root / "labels" / "eval" / "labelled.jsonl", records)
    (root / "corpus").mkdir()
    os.symlink(synth_corpus, root / "corpus" / "loop")
    return root / "corpus", root / "labels", records


def _cell(scored: dict, group: str) -> dict:
    """Where the harness's metrics hold each group of the previous evaluation's table."""
    if group in ("all", "ac_strong"):
        return scored["total" if group == "all" else group]
    if group.startswith("family_"):
        return scored["breakdown"]["family"][group[7:]]
    if group.startswith("ac_"):
        return scored["breakdown"]["audio-contribution"][group[3:]]
    return scored["breakdown"]["ground_truth"][group]


def _table(records: list[MCQRecord], correct: list[bool]) -> dict[str, tuple[int, int]]:
    """(correct, count) per group, counted here from the verdicts."""
    table: dict[str, list[int]] = {}
    for r, ok in zip(records, correct, strict=True):
        groups = ["all", f"ac_{r.audio_contribution}", f"family_{r.extra['family']}"]
        groups.append("text_answerable" if r.extra["text_answerable"] else "audio_dependent")
        for group in groups:
            cell = table.setdefault(group, [0, 0])
            cell[0] += ok
            cell[1] += 1
    return {group: (c, n) for group, (c, n) in table.items()}


def _assert_same(summary: dict, expected: dict[str, dict[str, tuple[int, int]]]) -> None:
    modes = summary["tasks"]["synthetic"]["modes"]
    for mode, table in expected.items():
        for group, (correct, count) in table.items():
            cell = _cell(modes[mode], group)
            assert (cell["correct"], cell["count"]) == (correct, count), (mode, group)
            assert cell["accuracy"] == 100.0 * correct / count, (mode, group)
    audio, silence = (expected[m]["all"] for m in ("audio", "silence"))
    contribution = 100.0 * audio[0] / audio[1] - 100.0 * silence[0] / silence[1]
    assert summary["tasks"]["synthetic"]["audio_contribution"] == contribution


class Listener:
    """A stand-in engine: right when it hears a clip (but for every third question), and in silence right only on
    the questions answerable from their text."""

    max_length = None

    def __init__(self, records: list[MCQRecord]) -> None:
        self.truth = {(r.question, tuple(r.choices)): r for r in records}

    @staticmethod
    def answer(r: MCQRecord, heard: bool) -> str:
        right = bool(zlib.crc32(r.id.encode()) % 3) if heard else r.extra["text_answerable"]
        return r.answer if right else next(c for c in r.choices if c != r.answer)

    def generate(self, requests, sampling):
        out = []
        for q in requests:
            answer = self.answer(self.truth[(q.question, tuple(q.choices))], heard=bool(np.any(q.audio)))
            out.append([f"<answer>{answer}</answer>"])
        return out


def test_the_held_out_evaluation_reports_what_the_previous_one_did(synth_corpus, tiny_omni, tmp_path, monkeypatch):
    """The groups and counts the previous evaluation reported, counted independently from the stand-in's answers
    (the corpus's families depend on the machine: spoken ones need espeak-ng)."""
    corpus, labels, records = _layout(synth_corpus, tmp_path)
    listener = Listener(records)
    monkeypatch.setattr("audiomcq.inference.make_engine", lambda spec: listener)
    results = evaluate_stage({"m2s/sft": str(tiny_omni)}, str(corpus), str(labels), str(tmp_path / "out"))
    expected = {}
    for mode in ("audio", "silence"):
        answers = [listener.answer(r, heard=mode == "audio") for r in records]
        expected[mode] = _table(
            records, [string_match(r.answer, a, r.choices) for r, a in zip(records, answers, strict=True)]
        )
    assert expected["audio"]["all"] != expected["silence"]["all"]  # the two modes are told apart
    _assert_same(results["m2s/sft"], expected)
    assert (tmp_path / "out" / "m2s" / "sft" / "metrics.json").is_file()  # the model's own `audiomcq eval` output


@pytest.mark.slow
def test_a_trained_tiny_model_scores_what_its_answers_count(synth_corpus, tiny_omni, tmp_path):
    """Through the harness, the numbers an independent count gives: the previous evaluation's way of asking (the
    clips as the filter loads them, silence as long as each clip, no stop string) and of judging (MMAU's string
    match on the extracted answer); the extracted answers are the same too."""
    from audiomcq.acf.probes import Clips, Probe, requests
    from audiomcq.inference import EngineSpec, Sampling, make_engine
    from audiomcq.train.sft import train_sft

    trained = train_sft(tiny_omni, synth_corpus / "train.jsonl", synth_corpus, tmp_path / "sft", steps=100, lr=3e-3)
    model = trained["final"]
    corpus, labels, records = _layout(synth_corpus, tmp_path)
    results = evaluate_stage({"m2s/sft": str(model)}, str(corpus), str(labels), str(tmp_path / "out"))
    engine, clips = make_engine(EngineSpec(str(model))), Clips.load(records, synth_corpus)
    expected = {}
    for mode in ("audio", "silence"):
        asked, _ = requests(Probe("silence") if mode == "silence" else Probe("audio"), records, clips)
        outputs = [o[0] for o in engine.generate(asked, Sampling(16))]
        correct = [string_match(r.answer, extract_answer(o), r.choices) for r, o in zip(records, outputs, strict=True)]
        expected[mode] = _table(records, correct)
        written = tmp_path / "out" / "m2s" / "sft" / "synthetic" / f"predictions-{mode}.jsonl"
        answered = {row["id"]: extract_answer(row["raw_output"]) for _, row in iter_jsonl(written)}
        assert [answered[r.id] for r in records] == [extract_answer(o) for o in outputs]
    _assert_same(results["m2s/sft"], expected)
