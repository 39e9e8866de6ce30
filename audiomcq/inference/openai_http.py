"""An OpenAI-compatible chat-completions endpoint as an engine (a vLLM or KServe server elsewhere).

Audio travels as an ``input_audio`` content part (base64 WAV), the prompt is the spec's format (the one every stage
uses unless the model has its own), and requests go out ``concurrency`` at a time, retried as ``audiomcq.infra.http``
does (connection errors, 408/429/5xx with backoff; other 4xx fail at once with the server's message). The key is read
from the environment variable the spec names and is never logged.

Stop strings go out as ``stop``. OpenAI-style servers cut the stop string from the text, so it is put back when the
server says it stopped there (vLLM's ``stop_reason``), or, for servers that do not say, when the completion ends
inside an open ``<answer>`` tag; a ``finish_reason`` of ``length`` marks the completion truncated.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from audiomcq.errors import AudioMCQError
from audiomcq.inference.base import Completion, EngineSpec, Request, Sampling
from audiomcq.inference.formats import DEFAULT, PromptFormat
from audiomcq.prompts import ANSWER_CLOSE, ANSWER_OPEN

log = logging.getLogger(__name__)


def wav_base64(wave: Any, rate: int = 16000) -> str:
    """A float waveform as base64 16-bit PCM WAV."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, wave, rate, format="WAV", subtype="PCM_16")
    return base64.b64encode(buf.getvalue()).decode()


def chat_body(request: Request, sampling: Sampling, model: str, fmt: PromptFormat = DEFAULT) -> dict[str, Any]:
    """The chat-completions request body for one question, asked in ``fmt``."""
    audio = {"type": "input_audio", "input_audio": {"data": wav_base64(request.audio), "format": "wav"}}
    parts = [audio, {"type": "text", "text": fmt.user_text(request.question, request.choices)}]
    messages = [{"role": "system", "content": fmt.system}] if fmt.system else []
    messages.append({"role": "user", "content": parts if fmt.audio_first else parts[::-1]})
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": sampling.max_new_tokens,
        "temperature": sampling.temperature,
        "n": sampling.n,
        "seed": sampling.seed,
    }
    if sampling.stop:
        body["stop"] = list(sampling.stop)
    if sampling.top_k is not None:
        body["top_k"] = sampling.top_k  # a vLLM extension; OpenAI itself ignores unknown sampling keys
    return body


def completion(choice: dict[str, Any], stop: tuple[str, ...]) -> Completion:
    """One reply choice as a ``Completion``, its stop string restored (see the module notes)."""
    text = choice.get("message", {}).get("content") or ""
    finish = choice.get("finish_reason")
    if finish == "stop" and stop:
        if "stop_reason" in choice:
            reason = choice["stop_reason"]
            if isinstance(reason, str) and reason in stop and not text.endswith(reason):
                text += reason
        elif ANSWER_CLOSE in stop and text.rfind(ANSWER_OPEN) > text.rfind(ANSWER_CLOSE):
            text += ANSWER_CLOSE
    return Completion(text, truncated=finish == "length")


class OpenAIEngine:
    """Sends each request to ``{base_url}/chat/completions``."""

    def __init__(self, spec: EngineSpec) -> None:
        if not spec.base_url:
            raise AudioMCQError("the openai backend needs base_url (e.g. http://vllm:8000/v1)")
        if spec.max_length is not None:
            raise AudioMCQError(
                f"model {spec.name or spec.path}: max_length cannot be honoured for an openai endpoint "
                "(its prompt tokens cannot be counted here; the server enforces its own context)"
            )
        self.spec = spec
        self.format = spec.format
        self.max_length: int | None = None
        self.url = spec.base_url.rstrip("/") + "/chat/completions"
        self.model = spec.served_model or spec.path
        from audiomcq.infra.http import json_headers

        self.headers = json_headers(spec.api_key_env)

    def generate(self, requests: Sequence[Request], sampling: Sampling | None = None) -> list[list[str]]:
        sampling = sampling or Sampling()
        with ThreadPoolExecutor(max_workers=max(1, self.spec.concurrency)) as pool:
            bodies = (chat_body(r, sampling, self.model, self.format) for r in requests)
            return list(pool.map(lambda body: self._one(body, sampling), bodies))

    def _one(self, body: dict[str, Any], sampling: Sampling) -> list[str]:
        from audiomcq.infra.http import post_json

        reply = post_json(self.url, body, self.headers, timeout=self.spec.timeout, retries=self.spec.retries)
        choices = sorted(reply["choices"], key=lambda c: c.get("index", 0))
        return [completion(c, sampling.stop) for c in choices]
