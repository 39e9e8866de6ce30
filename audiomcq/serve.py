"""Serve a checkpoint with KServe: V1 ``:predict`` takes base64 WAV audio + question + choices, returns the answer.

Request:  ``{"instances": [{"audio": "<base64 WAV>", "question": "...", "choices": ["...", ...]}]}``
Response: ``{"predictions": [{"answer": "<choice text>", "raw": "<answer>…</answer>"}]}``
The prompt is the training prompt (``audiomcq.prompts``); any sample rate or channel count is converted to 16 kHz
mono. A bad instance is a 400 naming the instance and the reason.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
from typing import Any

import kserve
import numpy as np
import soundfile as sf
from kserve.errors import InvalidInput

from audiomcq.models import load_model
from audiomcq.models.batch import generate_batch
from audiomcq.scoring import extract_answer
from audiomcq.synth.audio import resample

log = logging.getLogger(__name__)


def decode_instance(index: int, instance: Any) -> tuple[str, list[str], np.ndarray]:
    """Validate one V1 instance into ``(question, choices, waveform)``; raises InvalidInput naming it."""
    if not isinstance(instance, dict):
        raise InvalidInput(f"instance {index}: expected an object with audio, question and choices")
    question, choices, audio = instance.get("question"), instance.get("choices"), instance.get("audio")
    if not isinstance(question, str) or not question.strip():
        raise InvalidInput(f"instance {index}: 'question' must be a non-empty string")
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
        raise InvalidInput(f"instance {index}: 'choices' must be a list of at least 2 strings")
    if not isinstance(audio, str):
        raise InvalidInput(f"instance {index}: 'audio' must be a base64-encoded WAV file")
    try:
        wave, rate = sf.read(io.BytesIO(base64.b64decode(audio, validate=True)), dtype="float32", always_2d=True)
    except (binascii.Error, RuntimeError, sf.LibsndfileError) as exc:
        raise InvalidInput(f"instance {index}: 'audio' is not a readable base64 audio file ({exc})") from None
    return question, choices, resample(wave.mean(axis=1), rate)


class AudioMCQModel(kserve.Model):
    """A KServe model answering audio multiple-choice questions with a post-trained checkpoint."""

    def __init__(self, name: str, model_dir: str, max_new_tokens: int = 16) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.max_new_tokens = max_new_tokens
        self.loaded: Any = None

    def load(self) -> bool:
        """Load the checkpoint once, before the server reports ready."""
        self.loaded = load_model(self.model_dir)
        self.ready = True
        return self.ready

    async def predict(self, payload: Any, headers: Any = None, response_headers: Any = None) -> dict[str, Any]:
        """Answer every instance (V1 protocol)."""
        if not isinstance(payload, dict) or not isinstance(payload.get("instances"), list) or not payload["instances"]:
            raise InvalidInput("expected {'instances': [...]} with at least one instance")
        items = [decode_instance(i, inst) for i, inst in enumerate(payload["instances"])]
        raw = generate_batch(self.loaded.model, self.loaded.processor, items, self.max_new_tokens)
        return {"predictions": [{"answer": extract_answer(r), "raw": r} for r in raw]}


def serve(model_dir: str, name: str = "audiomcq", http_port: int = 8080, workers: int = 1) -> None:
    """Start the KServe model server (blocks until stopped)."""
    model = AudioMCQModel(name, model_dir)
    model.load()
    kserve.ModelServer(http_port=http_port, enable_grpc=False, workers=workers).start([model])


def request_body(wav_bytes: bytes, question: str, choices: list[str]) -> dict[str, Any]:
    """The V1 request for one question, as a client sends it."""
    return {"instances": [{"audio": base64.b64encode(wav_bytes).decode(), "question": question, "choices": choices}]}
