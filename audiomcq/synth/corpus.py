"""The synthetic AudioMCQ corpus: procedurally generated clips with four-option questions of the four types.

Every record carries its ground truth: ``text_answerable`` says whether the question can be answered from its text
alone *by construction* (a fixed answer, or the answer leaked in the wording), and ``family`` names the template.
So audio-contribution filtering can be scored against truth. All families have four options, because two-option
families double the chance-level false-weak rate of the silence filter.

Audio-dependent: pitch, kind (sound), contour (music), onset (temporal), word (speech; needs espeak-ng).
Text-answerable: tuning (music), animal (sound, leaked), srate (sound), length (temporal),
language (speech, fixed).
A text-answerable item's audio is a clip of a random audio-dependent family: audio that says nothing about the
template forces the answer to come from the text, as a real text prior does (a calibration run whose leaked
families kept family-typical audio answered them in silence only 21-86% of the time).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audiomcq.data.io import write_records
from audiomcq.data.record import MCQRecord
from audiomcq.jsonio import write_json
from audiomcq.synth import audio as A

log = logging.getLogger(__name__)


@dataclass
class Item:
    """One generated question before its options are shuffled."""

    signal: np.ndarray
    question: str
    answer: str
    distractors: list[str]
    question_type: str
    caption: str


Family = Callable[[np.random.Generator], Item]
PITCH = {"low": 200.0, "mid": 500.0, "high": 1200.0, "very high": 3000.0}
ONSETS = ["0.1s", "0.5s", "0.9s", "1.3s"]
WORDS = ["yes", "no", "stop", "go"]
LANGUAGES = ["French", "German", "Spanish", "Italian", "Japanese"]
ANIMALS = {"dog": "barking", "cat": "meowing", "cow": "mooing", "bird": "singing", "horse": "neighing"}
NOTES = [262.0, 294.0, 330.0, 392.0, 440.0, 523.0, 587.0]


def _others(options: list[str], answer: str) -> list[str]:
    return [o for o in options if o != answer]


def pitch(rng: np.random.Generator) -> Item:
    name = str(rng.choice(list(PITCH)))
    freq = PITCH[name] * rng.uniform(0.93, 1.07)
    q = str(rng.choice(["What is the pitch of the tone?", "How high is the tone that is heard?"]))
    sig = A.tone(freq, 1.5, amp=rng.uniform(0.3, 0.6))
    return Item(sig, q, name, _others(list(PITCH), name), "sound", f"A steady {freq:.0f} Hz tone.")


def kind(rng: np.random.Generator) -> Item:
    kinds = ["sine tone", "white noise", "brown noise", "clicks"]
    name = str(rng.choice(kinds))
    if name == "sine tone":
        sig = A.tone(rng.uniform(300, 1500), 1.5)
    elif name == "clicks":
        sig = A.clicks(1.5, sorted(rng.uniform(0.05, 1.4, size=int(rng.integers(4, 9)))))
    else:
        sig = A.noise(1.5, rng, "white" if name == "white noise" else "brown")
    return Item(sig, "What kind of sound is it?", name, _others(kinds, name), "sound", f"{name.capitalize()}.")


def contour(rng: np.random.Generator) -> Item:
    shapes = ["rising", "falling", "rising then falling", "falling then rising"]
    name = str(rng.choice(shapes))
    low, mid, high = sorted(rng.choice(NOTES, size=3, replace=False))
    notes = {"rising": [low, mid, high], "falling": [high, mid, low]}.get(
        name, [low, high, low] if name == "rising then falling" else [high, low, high]
    )
    sig = A.melody(list(notes), 1.5)
    return Item(sig, "How does the melody move?", name, _others(shapes, name), "music", f"A {name} three-note melody.")


def onset(rng: np.random.Generator) -> Item:
    name = str(rng.choice(ONSETS))
    beep = A.tone(rng.uniform(600, 1200), 0.3, amp=0.6)
    sig = A.place(beep, 2.0, float(name[:-1]))
    return Item(
        sig, "When does the beep start?", name, _others(ONSETS, name), "temporal", f"A beep starting at {name}."
    )


def word(rng: np.random.Generator) -> Item:
    name = str(rng.choice(WORDS))
    sig = A.place(A.speak(name) * rng.uniform(0.5, 0.9), 1.5, rng.uniform(0.0, 0.5))
    return Item(sig, "Which word is spoken?", name, _others(WORDS, name), "speech", f"A voice says '{name}'.")


def random_clip(rng: np.random.Generator) -> np.ndarray:
    """Audio of a random audio-dependent family, for text-answerable items: when their audio says nothing about
    their template, a model has to learn the answer from the text, as real text priors work."""
    return AUDIO_FAMILIES[str(rng.choice(["pitch", "kind", "contour", "onset"]))](rng).signal


def tuning(rng: np.random.Generator) -> Item:
    wrong = [str(n) for n in rng.choice(["C4", "E4", "G4", "B3", "D5", "F4"], size=3, replace=False)]
    q = "A 440 Hz tuning tone is played. Which note is it tuned to?"
    return Item(random_clip(rng), q, "A4", wrong, "music", "Unrelated audio; the question names a 440 Hz tone.")


def animal(rng: np.random.Generator) -> Item:
    name = str(rng.choice(list(ANIMALS)))
    wrong = [str(a) for a in rng.choice(_others(list(ANIMALS), name), size=3, replace=False)]
    q = f"A {name} is {ANIMALS[name]} in the background. Which animal can be heard?"
    return Item(random_clip(rng), q, name, wrong, "sound", f"Unrelated audio; the question says a {name} is heard.")


def srate(rng: np.random.Generator) -> Item:
    q = "What is the sampling rate of this recording?"
    return Item(random_clip(rng), q, "16 kHz", ["8 kHz", "44.1 kHz", "48 kHz"], "sound", "A clip recorded at 16 kHz.")


def length(rng: np.random.Generator) -> Item:
    sig = A.place(random_clip(rng), 2.0, 0.0)
    q = "This clip lasts exactly two seconds. How long is the clip?"
    return Item(sig, q, "2 seconds", ["1 second", "5 seconds", "10 seconds"], "temporal", "A two-second clip.")


def language(rng: np.random.Generator) -> Item:
    # A fixed answer rather than a copied word: a quoted-word template (answer copied from the question) was learned
    # by only some seeds of the tiny filter models (26-100 % at 600-1000 steps), which made the filter flaky.
    wrong = [str(x) for x in rng.choice(LANGUAGES, size=3, replace=False)]
    q = "The narrator reads an English audiobook. Which language is spoken?"
    return Item(random_clip(rng), q, "English", wrong, "speech", "Unrelated audio; the question names English.")


AUDIO_FAMILIES: dict[str, Family] = {"pitch": pitch, "kind": kind, "contour": contour, "onset": onset, "word": word}
TEXT_FAMILIES: dict[str, Family] = {
    "tuning": tuning,
    "animal": animal,
    "srate": srate,
    "length": length,
    "language": language,
}
SPEECH_FAMILIES = {"word"}


def generate(out: str | Path, n: int, seed: int = 0, eval_n: int | None = None, text_share: float = 0.3) -> dict:
    """Write ``train.jsonl`` (n items), ``eval.jsonl`` (held out) and ``audio/*.wav`` under ``out``.

    Returns the summary also written to ``summary.json``: counts per split, family and type, and whether the
    spoken families were available.
    """
    out = Path(out)
    eval_n = max(1, n // 10) if eval_n is None else eval_n  # 0: no held-out split
    speech = A.espeak_available()
    if not speech:
        log.warning("espeak-ng not found: the spoken families (%s) are left out", ", ".join(sorted(SPEECH_FAMILIES)))
    families = {
        flag: {k: f for k, f in fams.items() if speech or k not in SPEECH_FAMILIES}
        for flag, fams in ((False, AUDIO_FAMILIES), (True, TEXT_FAMILIES))
    }
    train_seq, eval_seq = np.random.SeedSequence(seed).spawn(2)
    summary: dict[str, Any] = {"seed": seed, "speech": speech, "text_share": text_share, "splits": {}}
    for split, count, seq in (("train", n, train_seq), ("eval", eval_n, eval_seq)):
        if count == 0:
            continue
        rng = np.random.default_rng(seq)
        records = [_make(out, split, i, rng, families, text_share) for i in range(count)]
        write_records(out / f"{split}.jsonl", records)
        summary["splits"][split] = {
            "count": count,
            "text_answerable": sum(r.extra["text_answerable"] for r in records),
            "families": dict(Counter(r.extra["family"] for r in records)),
            "types": dict(Counter(r.question_type for r in records)),
        }
    write_json(out / "summary.json", summary)
    return summary


def _make(
    out: Path, split: str, i: int, rng: np.random.Generator, families: dict[bool, dict[str, Family]], share: float
) -> MCQRecord:
    text_answerable = bool(rng.random() < share)
    name = str(rng.choice(list(families[text_answerable])))
    item = families[text_answerable][name](rng)
    choices = [item.answer, *item.distractors]
    rng.shuffle(choices)
    rec_id = f"synth-{split}-{i:05d}"
    rel = f"audio/{rec_id}.wav"
    A.write_wav(out / rel, A.add_floor(item.signal, rng))
    return MCQRecord(
        id=rec_id,
        source_dataset="synthetic",
        audio_path=rel,
        question=item.question,
        choices=[str(c) for c in choices],
        answer=item.answer,
        question_type=item.question_type,
        extra={"caption": item.caption, "family": name, "text_answerable": text_answerable, "split": split},
    )
