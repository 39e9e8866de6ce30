"""Promotion gate, lineage and the cluster adapter, against a local Kubernetes API server (tests/fakes/kube_api.py).

The metrics are real: ``audiomcq eval``'s own harness (``run_eval``: prediction files, official scoring, AC-strong
subset, silent control) runs over eight real WAV questions with a scripted engine that answers the chosen items
right, so each model's accuracy is known exactly. KServe is played by a controller hook; the smoke check goes to
real HTTP predictors on 127.0.0.1 that decode the WAV they are sent: one that hears which tone plays (a trained
model's behaviour, with the test owning the ground truth), one that answers the same whatever it hears, one that
knows the answers from the question text alone, broken ones, and the real ``audiomcq serve`` on the random tiny
model.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from conftest import REPO
from fakes.kube_api import play_kserve

from audiomcq.errors import AudioMCQError
from audiomcq.infra.k8s import INFERENCE_SERVICE, Kube, KubeError
from audiomcq.promote import lineage
from audiomcq.promote.decision import Criteria, decide, load_metrics
from audiomcq.promote.gate import GateConfig, RolledBack, run_gate
from audiomcq.promote.render import Serving, parse_toleration, render, validate
from audiomcq.promote.smoke import SmokeSet, SmokeSettings, judge, pass_mark

CRD = REPO.parent / "shared" / "schemas" / "kserve" / "serving.kserve.io_inferenceservices.yaml"
STRONG = {"q0", "q1", "q2", "q3"}  # of the eight evaluated questions
CLIPS = 32  # tone questions in the corpus: the first eight are evaluated, all are the run's selection split
PROFILES = {  # items answered right -> accuracy, AC-strong accuracy
    "prod": {"q0", "q1", "q2", "q4", "q5"},  # 62.5, 75
    "better": {"q0", "q1", "q2", "q3", "q4", "q5", "q6"},  # 87.5, 100
    "worse": {"q0", "q1", "q4"},  # 37.5, 50
    "strong-regress": {"q0", "q1", "q4", "q5", "q6", "q7"},  # 75 (> 62.5), 50 (< 75)
}


# --- fixtures: questions with audio, real evaluations, a run directory, predictors ---------------------------------
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


def make_run(root: Path, records: list[dict]) -> Path:
    """A post-training run directory as `audiomcq train run` leaves it (small stand-in weights)."""
    run = root / "run"
    (run / "data").mkdir(parents=True)
    recipe = {
        "allocation": {"paradigm": "weak_to_strong", "seed": 0},
        "sft": {"trainer_args": {"learning_rate": 1e-6}},
    }
    (run / "recipe.resolved.json").write_text(json.dumps(recipe))
    (run / "summary.json").write_text(
        json.dumps(
            {
                "paradigm": "weak_to_strong",
                "allocation": {"sft": {"count": 4}},
                "sft": {"steps": 10},
                "grpo": {"steps": 20},
                "grpo_init": {
                    "init": "sft@best",
                    "stage": "sft",
                    "step": 5,
                    "path": "run/sft/checkpoint-5",
                    "why": "best",
                    "candidates": [],
                },
            }
        )
    )
    for split, rows in (("sft.jsonl", records[:4]), ("rl.jsonl", records[4:]), ("selection.jsonl", records)):
        (run / "data" / split).write_text("".join(json.dumps(r) + "\n" for r in rows))
    for stage in ("sft", "grpo"):
        final = run / stage / "final"
        final.mkdir(parents=True)
        (final / "config.json").write_text(json.dumps({"model_type": "qwen2_5_omni_thinker", "stage": stage}))
        (final / "model.safetensors").write_bytes(hashlib.sha256(stage.encode()).digest() * 64)
    return run


class Predictor(ThreadingHTTPServer):
    """A V1 predictor on 127.0.0.1 that decodes the WAV it is sent, then:

    - ``listens``: answers the choice naming the tone it hears (the spectrum's peak), as a trained model would,
      and guesses the first choice in silence;
    - ``deaf``: answers the second choice whatever it hears (an untrained or audio-blind model);
    - ``memorised``: answers right from the question text alone, with or without sound (``key``: question ->
      answer);
    - ``500``, ``no-choice`` (an answer naming no choice), ``html`` (an ingress's page with a 200).

    ``seen``: (path, question, samples, rate, silent) per request."""

    def __init__(self, mode: str, key: dict[str, str] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), PredictHandler)
        self.mode, self.key, self.seen = mode, key or {}, []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class PredictHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        instance = body["instances"][0]
        wave, rate = sf.read(io.BytesIO(base64.b64decode(instance["audio"])))
        silent = bool(np.max(np.abs(wave)) < 1e-4)
        self.server.seen.append((self.path, instance["question"], len(wave), rate, silent))
        if self.server.mode == "500":
            self.send_response(500)
            self.end_headers()
            return
        if self.server.mode == "html":  # an ingress's default page, with a 200
            page = b"<html><body>Welcome to nginx!</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        answer = self.answer(self.server.mode, instance, wave, rate, silent)
        data = json.dumps({"predictions": [{"answer": answer, "raw": f"<answer>{answer}</answer>"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def answer(self, mode: str, instance: dict, wave: np.ndarray, rate: int, silent: bool) -> str:
        choices = instance["choices"]
        if mode == "listens":
            if silent:
                return choices[0]
            heard = np.argmax(np.abs(np.fft.rfft(wave))) * rate / len(wave)
            return min(choices, key=lambda c: abs(int(re.search(r"\d+", c)[0]) - heard))
        if mode == "deaf":
            return choices[1]
        if mode == "memorised":
            return self.server.key[instance["question"]]
        return "a dog barking"


@pytest.fixture
def cluster(kube_api):
    """The API server with KServe played: a model's revision URL is its predictor's (``cluster.urls[storageUri]``);
    every write is checked against the InferenceService CRD, as the API server does."""
    kube_api.urls = {}
    kube_api.validators["inferenceservices"] = lambda obj: validate(obj, CRD)
    play_kserve(kube_api, lambda obj: kube_api.urls[obj["spec"]["predictor"]["model"]["storageUri"]])
    return kube_api


def gate_config(corpus_root: Path, **kw) -> GateConfig:
    settings = {
        "serving": Serving(name="audiomcq", namespace="serving"),
        "canary": 10,
        "timeout": 5,
        "poll": 0.02,
        "smoke_audio_root": str(corpus_root / "audio"),
        "smoke_retries": 0,
        "validate_against": str(CRD),
    }
    return GateConfig(**{**settings, **kw})


def live(server) -> dict:
    return server.get("inferenceservices", "audiomcq", "serving")


# --- the k8s adapter ---------------------------------------------------------------------------------------------
def _isvc(uri: str) -> dict:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "audiomcq", "namespace": "serving"},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "audiomcq"}, "storageUri": uri}}},
    }


def test_apply_creates_then_replaces_with_the_live_resource_version(kube_api):
    kube = Kube()
    created = kube.apply(INFERENCE_SERVICE, _isvc("s3://models/a"))
    kube_api.set_status("inferenceservices", "audiomcq", {"url": "http://x"}, namespace="serving")
    replaced = kube.apply(INFERENCE_SERVICE, _isvc("s3://models/b"))
    assert replaced["metadata"]["uid"] == created["metadata"]["uid"]
    assert replaced["metadata"]["generation"] == 2
    stored = kube_api.get("inferenceservices", "audiomcq", "serving")
    assert stored["spec"]["predictor"]["model"]["storageUri"] == "s3://models/b"
    assert stored["status"] == {"url": "http://x"}  # the replace kept the controller's status
    assert [m for m, _ in kube_api.requests] == ["POST", "POST", "GET", "PUT"]
    assert kube.delete(INFERENCE_SERVICE, "audiomcq", "serving")
    assert kube.get(INFERENCE_SERVICE, "audiomcq", "serving") is None


def test_a_request_without_the_token_is_refused(kube_api, tmp_path, monkeypatch):
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token")
    monkeypatch.setenv("AUDIOMCQ_KUBE_TOKEN_FILE", str(wrong))
    with pytest.raises(KubeError) as err:
        Kube().get(INFERENCE_SERVICE, "audiomcq", "serving")
    assert err.value.status == 401 and "not-the-token" not in str(err.value)


# --- decisions on real metric files ------------------------------------------------------------------------------
def test_decisions_on_real_metrics(metrics):
    prod = load_metrics([metrics["prod"]])
    assert prod["synthetic"]["modes"]["audio"]["total"]["accuracy"] == 62.5  # what the harness scored
    assert prod["synthetic"]["modes"]["audio"]["ac_strong"]["accuracy"] == 75.0
    better = decide(load_metrics([metrics["better"]]), prod, Criteria(margin=5.0))
    assert better.promote and "candidate 87.50 vs production 62.50 (+25.00" in better.reasons[0]
    assert not decide(load_metrics([metrics["better"]]), prod, Criteria(margin=30.0)).promote
    worse = decide(load_metrics([metrics["worse"]]), prod)
    assert not worse.promote and worse.reasons[0].startswith("FAIL: synthetic accuracy: candidate 37.50")
    regress = decide(load_metrics([metrics["strong-regress"]]), prod)
    assert not regress.promote
    assert regress.reasons == [
        "ok: synthetic accuracy: candidate 75.00 vs production 62.50 (+12.50; needs > 0 and >= margin 0.00)",
        "FAIL: synthetic AC-strong subset: candidate 50.00 vs production 75.00 (-25.00; may drop at most 0.00)",
    ]
    assert decide(load_metrics([metrics["strong-regress"]]), prod, Criteria(ac_strong_tolerance=25)).promote
    # no production model: the floors decide
    assert decide(load_metrics([metrics["worse"]]), None, Criteria(floors={"synthetic": 50})).promote is False
    assert decide(load_metrics([metrics["prod"]]), None, Criteria(floors={"synthetic:ac_strong": 70})).promote


def _task(accuracy: float, items: int = 8, strong: float | None = None, strong_items: int = 4) -> dict:
    """One task's metrics as `audiomcq eval` writes them."""
    audio = {"total": {"accuracy": accuracy, "count": items}}
    if strong is not None:
        audio["ac_strong"] = {"accuracy": strong, "count": strong_items}
    return {"modes": {"audio": audio}}


def test_margin_and_tolerance_hold_on_ties_that_float_rounding_breaks():
    assert 1.4 - 0.4 < 1.0 and 0.3 < 0.4 - 0.1  # the ties, as floats
    gain = decide({"t": _task(1.4)}, {"t": _task(0.4)}, Criteria(margin=1.0))
    assert gain.promote, gain.reasons
    drop = decide({"t": _task(60, strong=0.3)}, {"t": _task(50, strong=0.4)}, Criteria(ac_strong_tolerance=0.1))
    assert drop.promote, drop.reasons
    assert not decide({"t": _task(50.0)}, {"t": _task(50.0)}).promote  # a tie still keeps production


def test_ac_strong_is_compared_on_decisive_benchmarks_and_equal_subsets_only():
    cand = {"a": _task(80, strong=80), "b": _task(80, strong=10)}
    base = {"a": _task(70, strong=70), "b": _task(70, strong=70)}
    assert decide(cand, base, Criteria(benchmarks=("a",))).promote  # b is not part of this decision
    assert not decide(cand, base).promote  # ... unless it is
    other = decide({"a": _task(80, strong=80, strong_items=3)}, {"a": _task(70, strong=70)})
    assert not other.promote
    assert other.reasons[-1] == (
        "FAIL: a AC-strong subset: candidate scored 3 items, production 4: different subsets are not comparable"
    )


def test_a_file_that_is_not_eval_metrics_is_named(tmp_path):
    bad = tmp_path / "selection.json"
    bad.write_text(json.dumps({"selected": {"path": "x"}}))
    with pytest.raises(Exception, match=r"selection.json: not an `audiomcq eval` metrics file"):
        load_metrics([bad])


# --- the gate ----------------------------------------------------------------------------------------------------
def test_better_model_goes_canary_then_takes_all_traffic_with_its_lineage(cluster, corpus, metrics, s3, capsys):
    """From S3: the first model is created at 100% directly; the better one is read against the first's recorded
    metrics, rolled out at 10%, smoke-checked on its own revision URL with real WAVs and their silent twins by a
    predictor that hears the tones, then promoted, with the smoke result in the decision and the lineage."""
    from audiomcq.cli import main
    from audiomcq.infra import storage

    root, records = corpus
    run = make_run(root / "s3-src", records)
    storage.publish(run, "s3://data/runs/w2s")
    storage.publish(root / "audio", "s3://data/audio")
    for name in ("prod", "better"):
        storage.publish(metrics[name].parent, f"s3://data/eval/{name}")
    first, second = "s3://data/runs/w2s/sft/final", "s3://data/runs/w2s/grpo/final"
    predictor = Predictor("listens")
    cluster.urls = {first: predictor.url, second: predictor.url}

    cfg = gate_config(root, smoke_audio_root="s3://data/audio")
    created = run_gate(first, ["s3://data/eval/prod/metrics.json"], Criteria(floors={"synthetic": 50}), cfg)
    assert created.action == "promoted" and "canaryTrafficPercent" not in live(cluster)["spec"]["predictor"]
    writes = len(cluster.requests)

    code = main(
        [
            "promote",
            "--model",
            second,
            "--metrics",
            "s3://data/eval/better/metrics.json",
            "--name",
            "audiomcq",
            "--namespace",
            "serving",
            "--margin",
            "5",
            "--canary",
            "10",
            "--timeout",
            "5",
            "--poll",
            "0.02",
            "--smoke-audio-root",
            "s3://data/audio",
            "--smoke-tolerance",
            "20",
            "--gpus",
            "1",
            "--toleration",
            "nvidia.com/gpu:NoSchedule",
            "--validate-against",
            str(CRD),
            "--out",
            str(root / "promotion"),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "decision: promote" in printed and "promoted s3://data/runs/w2s/grpo/final to 100%" in printed
    patches = [p for m, p in cluster.requests[writes:] if m == "PATCH"]
    assert len(patches) == 2  # the canary, then the promotion
    isvc = live(cluster)
    predictor_spec = isvc["spec"]["predictor"]
    assert predictor_spec["model"]["storageUri"] == second and "canaryTrafficPercent" not in predictor_spec
    assert predictor_spec["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert isvc["status"]["components"]["predictor"]["traffic"][0]["percent"] == 100
    strong = {r["question"] for r in records if r["audio-contribution"] == "strong"}
    assert len(predictor.seen) == 2 * (CLIPS + len(strong))  # each gate: every question with audio, 16 in silence
    for gate in (predictor.seen[: len(predictor.seen) // 2], predictor.seen[len(predictor.seen) // 2 :]):
        assert {path for path, *_ in gate} == {"/v1/models/audiomcq:predict"}
        assert {(n, rate) for _, _, n, rate, _ in gate} == {(4000, 16000)}  # the silence is as long as the clip
        assert sorted(q for _, q, _, _, silent in gate if not silent) == sorted(r["question"] for r in records)
        assert sorted(q for _, q, _, _, silent in gate if silent) == sorted(strong)
    assert "ok: smoke: accuracy with audio 100.0% (32/32) >= pass mark 68.8% (evaluated 87.5% on synthetic" in printed
    smoke = json.loads((root / "promotion" / "decision.json").read_text())["smoke"]
    assert smoke["ok"] and smoke["numbers"]["tolerance_source"] == "fixed" and smoke["numbers"]["tolerance"] == 20
    assert smoke["numbers"]["listening_accuracy_audio"] == 100 and smoke["numbers"]["listening_accuracy_silence"] == 25
    assert len(smoke["answers"]) == CLIPS
    assert smoke["numbers"]["endpoint"] == f"{predictor.url}/v1/models/audiomcq:predict"

    notes = isvc["metadata"]["annotations"]
    doc = lineage.read_json(notes["audiomcq/lineage"])
    assert notes["audiomcq/lineage"] == f"{second}/lineage.json"
    selection = hashlib.sha256((run / "data" / "selection.jsonl").read_bytes()).hexdigest()
    assert doc["data"]["splits"]["selection.jsonl"]["sha256"] == selection
    assert notes["audiomcq/data-sha256"] == doc["data"]["sha256"][:16]
    recipe = json.loads((run / "recipe.resolved.json").read_text())
    assert (
        doc["recipe"]["sha256"]
        == hashlib.sha256(json.dumps(recipe, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    )
    assert doc["run"]["uri"] == "s3://data/runs/w2s" and doc["run"]["paradigm"] == "weak_to_strong"
    assert doc["run"]["grpo_init"]["step"] == 5 and doc["run"]["grpo_init"]["init"] == "sft@best"
    assert (doc["checkpoint"]["stage"], doc["checkpoint"]["step"]) == ("grpo", 20)
    assert doc["checkpoint"]["digest"]["kind"] == "s3-etags" and doc["checkpoint"]["digest"]["files"] == 2
    assert doc["evaluation"]["tasks"]["synthetic"]["modes"]["audio"]["total"]["accuracy"] == 87.5
    assert doc["inference_service"]["revision"] == "audiomcq-predictor-00002"
    assert doc["previous"] == {"storageUri": first, "lineage": f"{first}/lineage.json"}
    assert doc["decision"]["promote"] and doc["gaps"] == []
    assert doc["decision"]["smoke"] == smoke  # the lineage records the same smoke check
    decision = json.loads((root / "promotion" / "decision.json").read_text())
    assert decision["baseline"]["synthetic"]["accuracy"] == 62.5  # read back through the first model's lineage
    assert yaml.safe_load((root / "promotion" / "inferenceservice.yaml").read_text())["kind"] == "InferenceService"


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


@pytest.mark.parametrize("profile", ["worse", "strong-regress"])
def test_a_model_that_is_worse_or_regresses_on_ac_strong_items_changes_nothing(
    cluster, production, corpus, metrics, profile
):
    _, candidate, before = production
    writes = len(cluster.requests)
    outcome = run_gate(candidate, [str(metrics[profile])], Criteria(), gate_config(corpus[0]))
    assert outcome.action == "kept" and not outcome.decision.promote
    assert [m for m, _ in cluster.requests[writes:]] == ["GET"]  # read production, wrote nothing
    assert live(cluster) == before
    assert not Path(candidate, "lineage.json").exists()


@pytest.mark.parametrize("mode", ["500", "no-choice", "html"])
def test_a_failed_smoke_query_restores_the_previous_model(cluster, production, corpus, metrics, mode):
    prod, candidate, before = production
    broken = Predictor(mode)
    cluster.urls[candidate] = broken.url
    with pytest.raises(RolledBack) as err:
        run_gate(candidate, [str(metrics["better"])], Criteria(), gate_config(corpus[0]))
    assert "rolled back" in str(err.value) and f"restored the previous model {prod}" in str(err.value)
    expected = {"500": "HTTP 500", "no-choice": "names none of", "html": "gave no JSON answer (JSONDecodeError"}
    assert expected[mode] in str(err.value)
    after = live(cluster)
    assert after["spec"] == before["spec"]  # storageUri back, no canary left
    assert after["metadata"]["annotations"] == before["metadata"]["annotations"]
    assert after["status"]["components"]["predictor"]["traffic"][0]["percent"] == 100
    assert len(broken.seen) == 1 and not Path(candidate, "lineage.json").exists()


@pytest.mark.parametrize("mode", ["deaf", "memorised"])
def test_a_model_that_does_not_know_or_does_not_hear_the_audio_is_rolled_back(
    cluster, production, corpus, metrics, mode
):
    """Both answer every question with a choice, which the old check accepted. The deaf one (the same answer
    whatever it hears, like an untrained model) scores 8/32 against an evaluated 87.5%; the memorising one scores
    32/32 but does as well in silence on the audio-dependent items: it is not listening."""
    prod, candidate, before = production
    records = corpus[1]
    served = Predictor(mode, key={r["question"]: r["answer"] for r in records})
    cluster.urls[candidate] = served.url
    with pytest.raises(RolledBack) as err:
        run_gate(candidate, [str(metrics["better"])], Criteria(), gate_config(corpus[0]))
    message = str(err.value)
    assert f"restored the previous model {prod}" in message
    not_listening = "silence answers as well as audio, the served model is not listening"
    decision = err.value.outcome.decision
    smoke = decision.smoke
    assert not smoke["ok"] and not decision.promote
    if mode == "deaf":
        assert "accuracy with audio 25.0% (8/32) < pass mark 71.9% (evaluated 87.5% on synthetic" in message
        assert "binomial bound at 0.99" in message and not_listening in message
        assert smoke["numbers"]["listening_accuracy_audio"] == smoke["numbers"]["listening_accuracy_silence"] == 25
    else:
        assert "accuracy with audio" not in message and not_listening in message
        assert "with audio 100.0% (16/16), in silence 100.0% (16/16)" in message
        assert decision.reasons[-2].startswith("ok: smoke: accuracy with audio 100.0% (32/32) >= pass mark 71.9%")
    assert decision.reasons[-1].startswith("FAIL: smoke: on 16 audio-dependent (audio-contribution: strong) items")
    silent = [(n, rate) for _, _, n, rate, quiet in served.seen if quiet]
    assert silent == [(4000, 16000)] * 16  # a silent clip as long as each audio-dependent item's
    after = live(cluster)
    assert after["spec"] == before["spec"] and after["metadata"]["annotations"] == before["metadata"]["annotations"]
    assert err.value.outcome.lineage["decision"]["smoke"] == smoke  # what the gate knew, for the caller
    assert not Path(candidate, "lineage.json").exists()


def test_unlabelled_smoke_data_asks_every_question_in_silence(cluster, corpus, metrics, tmp_path):
    """Without audio-contribution labels every question counts as audio-dependent: the listening model is
    promoted (32/32 with audio, 8/32 guessing in silence), the memorising one is rolled back."""
    root, records = corpus
    plain = tmp_path / "plain.jsonl"
    plain.write_text(
        "".join(json.dumps({k: v for k, v in r.items() if k != "audio-contribution"}) + "\n" for r in records)
    )
    run = make_run(tmp_path, records)
    model = str(run / "grpo" / "final")
    memorised = Predictor("memorised", key={r["question"]: r["answer"] for r in records})
    cluster.urls[model] = memorised.url
    with pytest.raises(
        RolledBack,
        match=r"on 32 \(unlabelled: all\) items: with audio 100.0% \(32/32\), in "
        r"silence 100.0% \(32/32\): silence answers as well as audio",
    ):
        run_gate(model, [str(metrics["better"])], Criteria(), gate_config(root, smoke_data=str(plain)))
    assert live(cluster) is None  # the new service was deleted
    listens = Predictor("listens")
    cluster.urls[model] = listens.url
    outcome = run_gate(model, [str(metrics["better"])], Criteria(), gate_config(root, smoke_data=str(plain)))
    assert outcome.action == "promoted", outcome.message
    numbers = outcome.decision.smoke["numbers"]
    assert (numbers["listening_items"], numbers["listening_accuracy_silence"], numbers["labelled"]) == (32, 25, False)
    assert sum(quiet for *_, quiet in listens.seen) == 32


@pytest.mark.parametrize("case", ["too-few", "too-few-strong", "ambiguous-task"])
def test_a_smoke_check_that_cannot_tell_is_refused_before_anything_is_applied(
    cluster, corpus, metrics, tmp_path, case
):
    """Too few questions, too few audio-dependent ones, or no single evaluated accuracy to expect: one line, and
    the cluster is only read."""
    root, records = corpus
    data = tmp_path / "smoke.jsonl"
    rows = records[:12] if case == "too-few" else records
    if case == "too-few-strong":  # 4 of 32 audio-dependent
        rows = [{**r, "audio-contribution": "strong" if i < 4 else "weak"} for i, r in enumerate(records)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = make_run(tmp_path, records)
    uris = [str(metrics["better"])]
    if case == "ambiguous-task":
        two = tmp_path / "two.json"
        task = json.loads(metrics["better"].read_text())["tasks"]["synthetic"]
        two.write_text(json.dumps({"model": "m", "tasks": {"synthetic": task, "other": task}}))
        uris = [str(two)]
    with pytest.raises(AudioMCQError) as err:
        run_gate(str(run / "grpo" / "final"), uris, Criteria(), gate_config(root, smoke_data=str(data)))
    expected = {
        "too-few": f"smoke set: {data} has 12 records whose audio exists under {root / 'audio'}; the smoke check "
        "needs at least 16 (smoke min size)",
        "too-few-strong": f"smoke set: {data} has 4 records labelled audio-contribution: strong whose audio exists "
        f"under {root / 'audio'}; the silence check needs at least 8 (smoke min listening)",
        "ambiguous-task": "smoke check: the candidate is evaluated on other, synthetic; name the task evaluated on "
        "the smoke data's kind of data (smoke task)",
    }
    assert str(err.value) == expected[case]
    assert [m for m, _ in cluster.requests] == ["GET"] and live(cluster) is None
    if case == "ambiguous-task":  # naming the task settles it
        cluster.urls[str(run / "grpo" / "final")] = Predictor("listens").url
        cfg = gate_config(root, smoke_data=str(data), smoke=SmokeSettings(task="other"))
        assert run_gate(str(run / "grpo" / "final"), uris, Criteria(), cfg).action == "promoted"


def test_the_pass_mark_lets_a_model_at_its_evaluated_accuracy_pass_as_often_as_asked():
    """Checked against simulated smoke checks (numpy's binomial sampler), not the formula itself: a model at its
    evaluated accuracy passes at least ``confidence`` of the time, and one more right answer would be too many."""
    rng = np.random.default_rng(0)
    for n, accuracy, confidence in ((32, 87.5, 0.99), (32, 70.0, 0.99), (16, 62.5, 0.95), (64, 50.0, 0.99)):
        mark = pass_mark(accuracy, n, confidence)
        draws = rng.binomial(n, accuracy / 100, size=400_000)
        assert (draws >= mark).mean() >= confidence - 0.001, (n, accuracy, mark)
        assert (draws >= mark + 1).mean() < confidence, (n, accuracy, mark)
    assert pass_mark(100.0, 32, 0.99) == 32 and pass_mark(0.0, 32, 0.99) == 0


def test_the_smoke_judgement_at_the_pass_mark_and_with_a_fixed_tolerance():
    """23 of 32 right passes against an evaluated 87.5% (the 99% binomial mark), 22 does not; a fixed tolerance of
    20 points moves the mark to 68.75% (22 of 32)."""
    smoke_set = SmokeSet([], "held-out.jsonl", labelled=True)

    def rows(right: int) -> list[dict]:
        return [{"scored": True, "listening": i < 8, "right": i < right, "silence_right": i < 2} for i in range(32)]

    auto = SmokeSettings()
    assert judge(rows(23), 87.5, "t", auto, "http://x", smoke_set).ok
    failed = judge(rows(22), 87.5, "t", auto, "http://x", smoke_set)
    assert not failed.ok and failed.numbers["pass_mark"] == 71.875 and failed.numbers["accuracy"] == 68.75
    assert failed.reasons[0].startswith("FAIL: accuracy with audio 68.8% (22/32) < pass mark 71.9%")
    fixed = judge(rows(22), 87.5, "t", SmokeSettings(tolerance=20), "http://x", smoke_set)
    assert fixed.ok and fixed.numbers["pass_mark"] == 68.75 and fixed.numbers["tolerance_source"] == "fixed"
    with pytest.raises(AudioMCQError, match="min size 40 must be between 1 and the size 32"):
        SmokeSettings(min_size=40)


@pytest.mark.parametrize("fault", ["no-url", "promotion-refused"])
def test_any_error_after_the_canary_is_applied_restores_the_previous_model(
    cluster, production, corpus, metrics, fault
):
    """Not only a failed smoke query: a Ready status without a URL, or the API refusing the 100% patch, happen
    after the canary took traffic; production must come back exactly, and the gate says why."""
    prod, candidate, before = production

    def strip_urls(event, obj):  # a controller that reports Ready but no URL for the candidate
        if event != "DELETED" and obj["spec"]["predictor"]["model"]["storageUri"] == candidate:
            obj["status"].pop("url", None)
            for target in obj["status"]["components"]["predictor"]["traffic"]:
                target.pop("url", None)

    def refuse_promotion(obj):  # an admission webhook refusing the candidate without a canary share
        predictor = obj["spec"]["predictor"]
        if predictor["model"]["storageUri"] == candidate and "canaryTrafficPercent" not in predictor:
            return ["spec.predictor: refused by policy"]
        return validate(obj, CRD)

    if fault == "no-url":
        cluster.on("inferenceservices", strip_urls)
    else:
        cluster.validators["inferenceservices"] = refuse_promotion
    with pytest.raises(RolledBack) as err:
        run_gate(candidate, [str(metrics["better"])], Criteria(), gate_config(corpus[0]))
    expected = {"no-url": "its status has no URL", "promotion-refused": "promoting the canary to 100% did not finish"}
    assert expected[fault] in str(err.value) and f"restored the previous model {prod}" in str(err.value)
    after = live(cluster)
    assert after["spec"] == before["spec"] and after["metadata"]["annotations"] == before["metadata"]["annotations"]
    assert after["status"]["components"]["predictor"]["traffic"] == [
        {**before["status"]["components"]["predictor"]["traffic"][0], "revisionName": "audiomcq-predictor-00003"}
    ]
    assert not Path(candidate, "lineage.json").exists()


def test_a_failed_rollback_is_not_reported_as_one(cluster, production, corpus, metrics):
    """The API refuses every change once the canary is in: the gate must not claim production was restored."""
    _, candidate, _ = production
    frozen = {"on": False}

    def freeze(obj):
        return ["spec: frozen by policy"] if frozen["on"] else validate(obj, CRD)

    def freeze_after_canary(event, obj):
        frozen["on"] = frozen["on"] or obj["spec"]["predictor"].get("canaryTrafficPercent") == 10

    cluster.validators["inferenceservices"] = freeze
    cluster.on("inferenceservices", freeze_after_canary)
    with pytest.raises(AudioMCQError) as err:
        run_gate(candidate, [str(metrics["better"])], Criteria(), gate_config(corpus[0]))
    assert not isinstance(err.value, RolledBack)
    assert "rolling back failed too" in str(err.value) and "check InferenceService serving/audiomcq" in str(err.value)
    assert live(cluster)["spec"]["predictor"]["model"]["storageUri"] == candidate  # still the canary, as said


def test_a_canary_of_zero_percent_is_promoted(cluster, production, corpus, metrics):
    """``--canary 0``: the new revision is smoke-tested on its tag URL with no user traffic, then promoted."""
    _, candidate, _ = production
    outcome = run_gate(candidate, [str(metrics["better"])], Criteria(), gate_config(corpus[0], canary=0))
    assert outcome.objects[0]["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert outcome.action == "promoted", outcome.message
    assert live(cluster)["spec"]["predictor"]["model"]["storageUri"] == candidate


def test_a_previous_canary_of_zero_percent_is_restored_and_waited_for(cluster, production, corpus, metrics):
    prod, candidate, _ = production
    Kube().patch(INFERENCE_SERVICE, "audiomcq", {"spec": {"predictor": {"canaryTrafficPercent": 0}}}, "serving")
    before = live(cluster)
    cluster.urls[candidate] = Predictor("500").url
    with pytest.raises(RolledBack) as err:
        run_gate(candidate, [str(metrics["better"])], Criteria(), gate_config(corpus[0]))
    assert str(err.value).endswith(f"restored the previous model {prod}")  # and ready: 0% to its new revision
    assert live(cluster)["spec"] == before["spec"]


def test_a_new_service_that_fails_its_smoke_query_is_deleted(cluster, corpus, metrics, tmp_path):
    run = make_run(tmp_path, corpus[1])
    model = str(run / "grpo" / "final")
    cluster.urls[model] = Predictor("500").url
    with pytest.raises(RolledBack, match="deleted the new InferenceService serving/audiomcq"):
        run_gate(model, [str(metrics["better"])], Criteria(), gate_config(corpus[0]))
    assert live(cluster) is None


def test_a_live_service_without_a_record_is_not_overwritten(cluster, corpus, metrics, tmp_path):
    cluster.add("inferenceservices", _isvc("s3://hand/deployed") | {"status": {}})
    run = make_run(tmp_path, corpus[1])
    outcome = run_gate(str(run / "grpo" / "final"), [str(metrics["better"])], Criteria(), gate_config(corpus[0]))
    assert outcome.action == "kept" and "pass --baseline" in outcome.decision.reasons[-1]
    assert "production's metrics are unknown" in outcome.decision.reasons[-1]


# --- rendering -----------------------------------------------------------------------------------------------------
def test_rendered_inference_services_validate_against_the_crd_and_a_planted_bad_one_fails():
    serving = Serving(
        name="audiomcq",
        namespace="serving",
        gpus=2,
        node_selector={"nvidia.com/gpu.present": "true"},
        tolerations=(parse_toleration("nvidia.com/gpu:NoSchedule"),),
    )
    obj = render("s3://models/w2s/grpo/final", serving, canary=10, annotations={"audiomcq/lineage": "s3://x"})
    assert validate(obj, CRD) == []
    predictor = obj["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10 and predictor["serviceAccountName"] == "audiomcq-s3"
    assert predictor["model"]["modelFormat"] == {"name": "audiomcq"} and "name" not in predictor["model"]
    assert predictor["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert validate(render("s3://m", Serving()), CRD) == []
    bad = json.loads(json.dumps(obj))
    bad["spec"]["predictr"] = bad["spec"].pop("predictor")
    bad["spec"]["predictr"]["minReplicas"] = "two"
    errors = validate(bad, CRD)
    assert "spec: 'predictor' is a required property" in errors
    assert "spec: Additional properties are not allowed ('predictr' was unexpected)" in errors
    bad = json.loads(json.dumps(obj))
    bad["spec"]["predictor"]["minReplicas"], bad["spec"]["predictor"]["canaryTrafficPercent"] = "two", 150
    assert validate(bad, CRD) == [
        "spec.predictor.minReplicas: 'two' is not of type 'integer'",
        "spec.predictor.canaryTrafficPercent: 150 is not between 0 and 100",
    ]


def test_dry_run_prints_the_object_and_the_decision_without_a_cluster(corpus, metrics, tmp_path, capsys, monkeypatch):
    from audiomcq.cli import main

    monkeypatch.setenv("AUDIOMCQ_KUBE_HOST", "http://127.0.0.1:9")  # nothing listens there: any call would fail
    monkeypatch.setenv("AUDIOMCQ_KUBE_TOKEN_FILE", str(tmp_path / "absent"))
    run = make_run(tmp_path, corpus[1])
    code = main(
        [
            "promote",
            "--model",
            str(run / "grpo" / "final"),
            "--metrics",
            str(metrics["better"]),
            "--baseline",
            str(metrics["prod"]),
            "--namespace",
            "serving",
            "--dry-run",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    isvc, rest = out.split("---\n", 1)
    obj = yaml.safe_load(isvc)
    assert obj["spec"]["predictor"]["canaryTrafficPercent"] == 10 and validate(obj, CRD) == []
    assert obj["metadata"]["annotations"]["audiomcq/run"] == str(run)
    assert json.loads(rest[: rest.index("\ndecision:")])["promote"] is True
    assert "dry-run: nothing applied; would promote" in out


@pytest.mark.slow
def test_the_random_tiny_model_behind_the_real_predictor_is_rolled_back(cluster, corpus, metrics, tiny_omni, tmp_path):
    """`audiomcq serve` on the random tiny Omni model behind the new revision, with metrics that say 87.5%: it
    answers every question with one of the choices (the request format is the predictor's), which the old check
    took for a pass, and far fewer of them right than its evaluation promised, so the new service is deleted."""
    from audiomcq.bench.serve import running_server

    run = make_run(tmp_path, corpus[1])
    model = str(run / "grpo" / "final")
    with running_server(tiny_omni, log_path=tmp_path / "serve.log") as base:
        cluster.urls[model] = base
        with pytest.raises(RolledBack) as err:
            run_gate(model, [str(metrics["better"])], Criteria(), gate_config(corpus[0], timeout=30))
    log = (tmp_path / "serve.log").read_text()[-2000:]
    smoke = err.value.outcome.decision.smoke
    assert smoke is not None and len(smoke["answers"]) == CLIPS, (str(err.value), log)  # every question answered
    assert all("silence_answer" in row for row in smoke["answers"] if row["listening"])
    assert smoke["numbers"]["right"] < 23 and "< pass mark 71.9%" in str(err.value), log
    assert "deleted the new InferenceService serving/audiomcq" in str(err.value) and live(cluster) is None


# --- the pipeline's promotion stage ----------------------------------------------------------------------------------
def _stage_inputs(tmp_path: Path) -> tuple[str, list[str]]:
    """selection.json and metrics.json as the loop's select and evaluate stages write them."""
    model = tmp_path / "models" / "weak_to_strong" / "grpo"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (tmp_path / "selection").mkdir()
    selection = {"selected": "weak_to_strong/grpo", "model": str(model), "accuracy": 62.5}
    (tmp_path / "selection" / "selection.json").write_text(json.dumps(selection))
    audio = {
        "total": {"accuracy": 62.5, "correct": 5, "count": 8},
        "ac_strong": {"accuracy": 75.0, "correct": 3, "count": 4},
    }
    task = {"task": "synthetic", "items": 8, "modes": {"audio": audio}}
    summary = {"model": str(model), "tasks": {"synthetic": task}}
    (tmp_path / "results" / "weak_to_strong" / "grpo").mkdir(parents=True)
    (tmp_path / "results" / "weak_to_strong" / "grpo" / "metrics.json").write_text(json.dumps(summary))
    index = {"weak_to_strong/grpo": {**summary, "stage": "grpo", "step": 4}}
    (tmp_path / "results" / "metrics.json").write_text(json.dumps(index))
    return str(tmp_path / "selection"), [str(tmp_path / "results")]


def test_the_stage_decides_on_the_selected_models_own_eval_metrics(tmp_path):
    """The gate reads the evaluate step's ``audiomcq eval`` output of the selected model as it is."""
    from audiomcq.stages.demo import promote_stage

    selection, results = _stage_inputs(tmp_path)
    (tmp_path / "out").mkdir()
    done = promote_stage(selection, results, str(tmp_path), str(tmp_path), str(tmp_path / "out"), {"floor": 60})
    model = str(tmp_path / "models" / "weak_to_strong" / "grpo")
    assert done == {"action": "dry-run", "promote": True, "model": model}
    decision = json.loads((tmp_path / "out" / "decision.json").read_text())
    assert decision["sources"]["candidate"] == [str(tmp_path / "results" / "weak_to_strong" / "grpo" / "metrics.json")]
    assert decision["candidate"]["synthetic"]["accuracy"] == 62.5
    assert decision["candidate"]["synthetic"]["ac_strong"] == 75.0
    assert "ok: synthetic accuracy 62.50 >= floor 60.00" in decision["reasons"]
    with pytest.raises(AudioMCQError, match="'mixed_to_strong/sft' has no evaluation"):
        (Path(selection) / "selection.json").write_text(json.dumps({"selected": "mixed_to_strong/sft", "model": "m"}))
        promote_stage(selection, results, str(tmp_path), str(tmp_path), str(tmp_path / "out"), {})


def test_the_stage_refuses_to_apply_a_local_model_path(kube_api, tmp_path):
    from audiomcq.stages.demo import promote_stage

    selection, results = _stage_inputs(tmp_path)
    (tmp_path / "out").mkdir()
    with pytest.raises(AudioMCQError, match=r"apply: true needs the pipeline's publish=s3://"):
        promote_stage(selection, results, str(tmp_path), str(tmp_path), str(tmp_path / "out"), {"apply": True})
    assert kube_api.requests == [] and kube_api.objects == {}  # the cluster was never touched


def test_the_stage_places_gpu_serving_with_a_node_selector_and_tolerations(tmp_path):
    from audiomcq.stages.demo import promote_stage

    selection, results = _stage_inputs(tmp_path)
    (tmp_path / "out").mkdir()
    settings = {
        "gpus": 1,
        "node_selector": {"nvidia.com/gpu.present": "true"},
        "tolerations": ["nvidia.com/gpu:NoSchedule", "pool=gpu:NoExecute"],
    }
    done = promote_stage(selection, results, str(tmp_path), str(tmp_path), str(tmp_path / "out"), settings)
    assert done["action"] == "dry-run"
    isvc = yaml.safe_load((tmp_path / "out" / "inferenceservice.yaml").read_text())
    predictor = isvc["spec"]["predictor"]
    assert predictor["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert predictor["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert predictor["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "pool", "operator": "Equal", "effect": "NoExecute", "value": "gpu"},
    ]
    assert validate(isvc, CRD) == []
    with pytest.raises(AudioMCQError, match=r"toleration 'nvidia\.com/gpu'"):
        promote_stage(
            selection,
            results,
            str(tmp_path),
            str(tmp_path),
            str(tmp_path / "out"),
            {"tolerations": ["nvidia.com/gpu"]},
        )


def test_the_stage_passes_its_smoke_settings_to_the_check(tmp_path):
    """``smoke_*`` keys of the pipeline's serving settings reach the smoke check (a bad pair is refused there);
    a misspelt one is refused by name."""
    from audiomcq.stages.demo import _smoke, promote_stage

    selection, results = _stage_inputs(tmp_path)
    (tmp_path / "out").mkdir()
    assert _smoke({"smoke_size": "48", "smoke_tolerance": 10, "margin": 1}) == SmokeSettings(size=48, tolerance=10.0)
    with pytest.raises(AudioMCQError, match="smoke set: min size 20 must be between 1 and the size 8"):
        promote_stage(
            selection,
            results,
            str(tmp_path),
            str(tmp_path),
            str(tmp_path / "out"),
            {"smoke_size": 8, "smoke_min_size": 20},
        )
    with pytest.raises(AudioMCQError, match=r"unknown promotion setting\(s\) \['smoke_seed'\]"):
        promote_stage(selection, results, str(tmp_path), str(tmp_path), str(tmp_path / "out"), {"smoke_seed": 1})
