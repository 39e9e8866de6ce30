"""The synthetic corpus: valid AudioMCQ records, real 16 kHz WAVs, ground truth, determinism, degraded speech."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import soundfile as sf

from audiomcq.data.io import read_records
from audiomcq.synth import audio as A
from audiomcq.synth import generate


def test_corpus_is_valid_and_carries_ground_truth(tmp_path):
    summary = generate(tmp_path, 120, seed=5, eval_n=30)
    train = read_records(tmp_path / "train.jsonl", audio_root=tmp_path)  # strict: every record valid, audio present
    held_out = read_records(tmp_path / "eval.jsonl", audio_root=tmp_path)
    assert len(train) == 120 and len(held_out) == 30
    assert not {r.audio_path for r in train} & {r.audio_path for r in held_out}
    assert all(len(r.choices) == 4 for r in train)  # 2-option families would double the false-weak rate
    share = sum(r.extra["text_answerable"] for r in train) / len(train)
    assert 0.15 < share < 0.45
    assert {r.question_type for r in train} <= {"sound", "music", "speech", "temporal"}
    wave, rate = sf.read(tmp_path / train[0].audio_path)
    assert rate == 16_000 and wave.ndim == 1 and 1.0 <= len(wave) / rate <= 2.0
    assert np.abs(wave).max() > 0.01  # not silent: silence is reserved for the filtering probe
    assert summary["splits"]["train"]["count"] == 120
    # The answer position is spread (options are shuffled per item).
    assert len(Counter(r.answer_index for r in train)) == 4


def test_same_seed_same_corpus(tmp_path):
    generate(tmp_path / "a", 20, seed=9, eval_n=4)
    generate(tmp_path / "b", 20, seed=9, eval_n=4)
    assert (tmp_path / "a" / "train.jsonl").read_text() == (tmp_path / "b" / "train.jsonl").read_text()
    first = json.loads((tmp_path / "a" / "train.jsonl").read_text().splitlines()[0])["audio_path"]
    assert (tmp_path / "a" / first).read_bytes() == (tmp_path / "b" / first).read_bytes()


def test_text_answerable_questions_hold_their_answer_in_the_text(tmp_path):
    generate(tmp_path, 200, seed=2, eval_n=1)
    for r in read_records(tmp_path / "train.jsonl"):
        if r.extra["family"] in ("animal", "language"):
            assert r.answer in r.question  # leaked in the wording
        if r.extra["family"] in ("tuning", "srate", "length", "language"):
            assert r.answer in {"A4", "16 kHz", "2 seconds", "English"}  # fixed answer


def test_without_espeak_the_spoken_families_are_left_out_with_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(A.shutil, "which", lambda name: None)
    summary = generate(tmp_path, 60, seed=1, eval_n=1)
    assert summary["speech"] is False
    families = {r.extra["family"] for r in read_records(tmp_path / "train.jsonl")}
    assert "word" not in families
    assert "espeak-ng not found" in caplog.text


def test_espeak_speech_is_16k_when_installed():
    if not A.espeak_available():
        return
    wave = A.speak("stop")
    assert wave.dtype == np.float32 and 0.2 < len(wave) / A.SR < 2.0 and np.abs(wave).max() > 0.05
