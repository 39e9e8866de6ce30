"""An OpenAI-compatible chat-completions endpoint as an engine (a vLLM or KServe server elsewhere).

Audio travels as an ``input_audio`` content part (base64 WAV), the prompt is the same one every stage uses, and
requests go out ``concurrency`` at a time, retried as ``audiomcq.http`` does (connection errors, 408/429/5xx with
backoff; other 4xx fail at once with the server's message). The key is read from the environment variable the spec
names and is never logged.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from audiomcq.errors import AudioMCQError
from audiomcq.inference.base import EngineSpec, Request, Sampling
from audiomcq.prompts import SYSTEM_PROMPT, user_prompt

log = logging.getLogger(__name__)


def wav_base64(wave: Any, rate: int = 16000) -> str:
    """A float waveform as base64 16-bit PCM WAV."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, wave, rate, format="WAV", subtype="PCM_16")
    return base64.b64encode(buf.getvalue()).decode()


def chat_body(request: Request, sampling: Sampling, model: str) -> dict[str, Any]:
    """The chat-completions request body for one question."""
    audio = {"type": "input_audio", "input_audio": {"data": wav_base64(request.audio), "format": "wav"}}
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {
                "role": "user",
                "content": [audio, {"type": "text", "text": user_prompt(request.question, request.choices)}],
            },
        ],
        "max_tokens": sampling.max_new_tokens,
        "temperature": sampling.temperature,
        "n": sampling.n,
        "seed": sampling.seed,
    }
    if sampling.top_k is not None:
        body["top_k"] = sampling.top_k  # a vLLM extension; OpenAI itself ignores unknown sampling keys
    return body


class OpenAIEngine:
    """Sends each request to ``{base_url}/chat/completions``."""

    def __init__(self, spec: EngineSpec) -> None:
        if not spec.base_url:
            raise AudioMCQError("the openai backend needs base_url (e.g. http://vllm:8000/v1)")
        self.spec = spec
        self.url = spec.base_url.rstrip("/") + "/chat/completions"
        self.model = spec.served_model or spec.path
        from audiomcq.http import json_headers

        self.headers = json_headers(spec.api_key_env)

    def generate(self, requests: Sequence[Request], sampling: Sampling | None = None) -> list[list[str]]:
        sampling = sampling or Sampling()
        with ThreadPoolExecutor(max_workers=max(1, self.spec.concurrency)) as pool:
            return list(pool.map(lambda r: self._one(chat_body(r, sampling, self.model)), requests))

    def _one(self, body: dict[str, Any]) -> list[str]:
        from audiomcq.http import post_json

        reply = post_json(self.url, body, self.headers, timeout=self.spec.timeout, retries=self.spec.retries)
        choices = reply["choices"]
        return [c["message"].get("content") or "" for c in sorted(choices, key=lambda c: c.get("index", 0))]
