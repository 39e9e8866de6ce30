"""Fixtures for the promotion tests (gate, lineage, the cluster adapter), which run against a local Kubernetes
API server (tests/fakes/kube_api.py).

The metrics are real: ``audiomcq eval``'s own harness (``run_eval``: prediction files, official scoring, AC-strong
subset, silent control) runs over eight real WAV questions with a scripted engine that answers the chosen items
right, so each model's accuracy is known exactly. KServe is played by a controller hook (tests/fakes/kserve_play.py);
the smoke check goes to real HTTP predictors on 127.0.0.1 that decode the WAV they are sent: one that hears which
tone plays (a trained model's behaviour, with the test owning the ground truth), one that answers the same whatever
it hears, one that knows the answers from the question text alone, broken ones, and the real ``audiomcq serve`` on
the random tiny model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from fakes.kserve_play import play_kserve

from audiomcq.promote.decision import Criteria
from audiomcq.promote.gate import run_gate
from audiomcq.promote.render import validate
from promote.promote_helpers import CLIPS, CRD, PROFILES, STRONG, Predictor, gate_config, live, make_run


def tone(i: int) -> int:
    """The frequency (Hz) of clip ``i``'s tone."""
    return 220 + 55 * i


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Tone questions whose right answer is the tone heard: clip i plays ``tone(i)``, the choice at position
    i % 4; every other block of four is labelled audio-dependent (16 of 32)."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "audio").mkdir()
    records = []
    for i in range(CLIPS):
        t = np.arange(4000) / 16000
        sf.write(root / "audio" / f"q{i}.wav", 0.3 * np.sin(2 * np.pi * tone(i) * t), 16000)
        choices = [f"a tone near {tone(i - i % 4 + j)} hertz" for j in range(4)]
        records.append(
            {
                "id": f"q{i}",
                "question": f"Which tone is heard in clip {i}?",
                "choices": choices,
                "answer": choices[i % 4],
                "audio_path": f"q{i}.wav",
                "audio-contribution": "strong" if i % 8 < 4 else "weak",
            }
        )
    (root / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[:8]))
    (root / "strong.txt").write_text("\n".join(sorted(STRONG)) + "\n")
    return root, records


class Scripted:
    """An inference engine answering each question as told (the right choice or a wrong one)."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    def generate(self, requests, sampling):
        return [[f"<answer>{self.answers[r.question]}</answer>"] for r in requests]


@pytest.fixture(scope="module")
def metrics(corpus, tmp_path_factory):
    """``audiomcq eval`` output (metrics.json) for each profile."""
    from audiomcq.evaluation import harness

    root, records = corpus
    out, saved = {}, harness.lazy_engine
    try:
        for name, right in PROFILES.items():
            wrong = {r["question"]: next(c for c in r["choices"] if c != r["answer"]) for r in records}
            answers = {r["question"]: r["answer"] if r["id"] in right else wrong[r["question"]] for r in records}
            harness.lazy_engine = lambda model, batch_size, *_, a=answers, **__: lambda: Scripted(a)
            target = tmp_path_factory.mktemp(f"eval-{name}")
            config = harness.EvalConfig(batch_size=8, chunk_size=8)
            tasks, audio = {"synthetic": root / "eval.jsonl"}, {"synthetic": root / "audio"}
            harness.run_eval(name, tasks, audio, target, config, {"synthetic": root / "strong.txt"})
            out[name] = target / "metrics.json"
    finally:
        harness.lazy_engine = saved
    return out


@pytest.fixture
def cluster(kube_api):
    """The API server with KServe played: a model's revision URL is its predictor's (``cluster.urls[storageUri]``);
    every write is checked against the InferenceService CRD, as the API server does."""
    kube_api.urls = {}
    kube_api.validators["inferenceservices"] = lambda obj: validate(obj, CRD)
    play_kserve(kube_api, lambda obj: kube_api.urls[obj["spec"]["predictor"]["model"]["storageUri"]])
    return kube_api


@pytest.fixture
def production(cluster, corpus, metrics, tmp_path):
    """A live InferenceService serving the production model (promoted through the gate, at 100%)."""
    root, records = corpus
    run = make_run(tmp_path, records)
    prod, candidate = str(run / "sft" / "final"), str(run / "grpo" / "final")
    ok = Predictor("listens")
    cluster.urls = {prod: ok.url, candidate: ok.url}
    assert run_gate(prod, [str(metrics["prod"])], Criteria(), gate_config(root)).action == "promoted"
    return prod, candidate, live(cluster)
