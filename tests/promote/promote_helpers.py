"""What the promotion tests share besides fixtures (those are in conftest.py): the corpus's constants, a run
directory, the predictors the smoke check talks to, the gate's settings and the live InferenceService."""

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
import soundfile as sf
from conftest import REPO

from audiomcq.promote.gate import GateConfig
from audiomcq.promote.render import Serving

CRD = REPO.parent / "shared" / "schemas" / "kserve" / "serving.kserve.io_inferenceservices.yaml"
STRONG = {"q0", "q1", "q2", "q3"}  # of the eight evaluated questions
CLIPS = 32  # tone questions in the corpus: the first eight are evaluated, all are the run's selection split
PROFILES = {  # items answered right -> accuracy, AC-strong accuracy
    "prod": {"q0", "q1", "q2", "q4", "q5"},  # 62.5, 75
    "better": {"q0", "q1", "q2", "q3", "q4", "q5", "q6"},  # 87.5, 100
    "worse": {"q0", "q1", "q4"},  # 37.5, 50
    "strong-regress": {"q0", "q1", "q4", "q5", "q6", "q7"},  # 75 (> 62.5), 50 (< 75)
}


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


def _isvc(uri: str) -> dict:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "audiomcq", "namespace": "serving"},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "audiomcq"}, "storageUri": uri}}},
    }
