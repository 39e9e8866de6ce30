"""What the tests of a real server share besides fixtures (those are in conftest.py): instances from the corpus,
generated audio, and requests through plain HTTP or kserve's REST client."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _instance(record: dict, corpus: Path) -> dict:
    return {
        "audio": _b64((corpus / record["audio_path"]).read_bytes()),
        "question": record["question"],
        "choices": record["choices"],
    }


def _audio(seconds: float, rate: int = 16000, fmt: str = "WAV", subtype: str | None = None, fill=0.1) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.full((int(seconds * rate), 1), fill, dtype=np.float32), rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def _post(url: str, body, raw: bool = False, headers: dict | None = None) -> tuple[int, str]:
    data = body if raw else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _predict(server: str, instances: list) -> tuple[int, str]:
    return _post(f"{server}/v1/models/audiomcq:predict", {"instances": instances})


def _infer(protocol: str, server: str, data):
    """One request through kserve's REST client (a fresh client per event loop)."""
    from kserve import InferenceRESTClient, RESTConfig

    async def call():
        client = InferenceRESTClient(RESTConfig(protocol=protocol, timeout=120))
        try:
            return await client.infer(server, data, model_name="audiomcq")
        finally:
            await client.close()

    return asyncio.run(call())


def _prompt(question: str, choices: list[str]) -> str:
    from audiomcq.prompts import user_prompt

    return user_prompt(question, choices)
