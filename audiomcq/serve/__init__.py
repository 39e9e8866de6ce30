"""Serve a checkpoint with KServe: audio multiple-choice questions over V1, V2 and an OpenAI-compatible route.

``audiomcq serve --model-dir DIR_OR_S3 --http-port 8080`` starts the server; ``audiomcq query`` asks it one question.

- V1 ``POST /v1/models/<name>:predict``: ``{"instances": [{"audio": "<base64 WAV/FLAC/MP3>" | "audio_url": "...",
  "question": "...", "choices": ["...", ...]}]}`` -> ``{"predictions": [{"answer", "index", "raw", "scores",
  "answer_source"}]}``
- V2 ``POST /v2/models/<name>/infer``: BYTES tensors, see ``audiomcq.serve.v2``.
- ``POST /openai/v1/chat/completions``: free-form audio chat (streamed or not), see ``audiomcq.serve.openai_api``
  and ``audiomcq.serve.chat``; ``docs/serving.md`` has a working request for every route.

Importing this package stays cheap (the CLI builds its parser from it); kserve and torch load in ``serve``.
"""

from __future__ import annotations

import base64
from typing import Any

from audiomcq.serve.config import ServeConfig, add_arguments


def serve(model_dir: str, name: str = "audiomcq", http_port: int = 8080, config: ServeConfig | None = None) -> None:
    """Start the model server (blocks until stopped); see ``audiomcq.serve.predictor.serve``."""
    from audiomcq.serve.predictor import serve as run

    run(model_dir, name, http_port, config)


def request_body(wav_bytes: bytes, question: str, choices: list[str]) -> dict[str, Any]:
    """The V1 request for one question, as a client sends it."""
    return {"instances": [{"audio": base64.b64encode(wav_bytes).decode(), "question": question, "choices": choices}]}


__all__ = ["ServeConfig", "add_arguments", "request_body", "serve"]
