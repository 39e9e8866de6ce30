"""The smoke query a new revision must pass before it takes all the traffic: one real audio question.

The question comes from the held-out or checkpoint-selection set (our JSONL records), its audio is sent as the
WAV file's bytes in the predictor's documented V1 request (``{"instances": [{"audio": <base64 WAV>, "question",
"choices"}]}`` to ``/v1/models/<name>:predict``), and the answer must name one of the choices (exactly, or as the
official MMAU matcher reads it). The answer need not be *right*: this checks that the revision loads, hears audio
and answers in the expected shape, not its accuracy (the evaluation did that).
"""

from __future__ import annotations

import base64
import http.client
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiomcq.errors import AudioMCQError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Question:
    """One smoke question with its audio."""

    id: str
    question: str
    choices: list[str]
    wav: bytes


@dataclass(frozen=True)
class SmokeResult:
    """The outcome; ``detail`` says what was sent and what came back (or why nothing usable did)."""

    ok: bool
    detail: str
    answer: str | None = None


def pick_question(data: str | Path, audio_root: str | Path | None) -> Question:
    """The first record of ``data`` (local or ``s3://``) whose audio file exists under ``audio_root``."""
    from audiomcq import storage
    from audiomcq.data.io import read_records
    from audiomcq.data.record import resolve_audio

    with tempfile.TemporaryDirectory(prefix="audiomcq-smoke-") as tmp:
        records = read_records(storage.fetch(data, tmp))
        for record in records:
            if not record.audio_path:
                continue
            if audio_root is not None and storage.is_s3(audio_root):
                uri = f"{str(audio_root).rstrip('/')}/{record.audio_path}"
                try:
                    path = storage.fetch(uri, Path(tmp) / "audio")
                except AudioMCQError as err:
                    log.warning("smoke: %s: %s", record.id, err)
                    continue
            else:
                path = resolve_audio(record, audio_root or ".")
                if path is None or not path.is_file():
                    continue
            return Question(record.id, record.question, list(record.choices), path.read_bytes())
    raise AudioMCQError(f"{data}: no record whose audio exists under {audio_root}; the smoke query needs one")


def request_body(q: Question) -> dict[str, Any]:
    """The predictor's V1 request for one question."""
    audio = base64.b64encode(q.wav).decode()
    return {"instances": [{"audio": audio, "question": q.question, "choices": q.choices}]}


def smoke_query(url: str, model: str, q: Question, timeout: float = 60.0, retries: int = 2) -> SmokeResult:
    """POST ``q`` to ``<url>/v1/models/<model>:predict`` and judge the answer. Never raises on a bad or missing
    answer: the gate must roll back, not crash, whatever the new revision (or the ingress before it) sends."""
    from audiomcq.http import HTTPFailure, post_json
    from audiomcq.scoring import string_match

    endpoint = f"{url.rstrip('/')}/v1/models/{model}:predict"
    headers = {"Content-Type": "application/json"}
    try:
        reply = post_json(endpoint, request_body(q), headers, timeout=timeout, retries=retries, max_wait=10.0)
    except HTTPFailure as err:
        return SmokeResult(False, f"smoke query {q.id} failed: {err}")
    except (ValueError, OSError, http.client.HTTPException) as err:  # a 200 that is not JSON (an ingress page), a cut
        return SmokeResult(False, f"smoke query {q.id}: {endpoint} gave no JSON answer ({type(err).__name__}: {err})")
    try:
        answer = reply["predictions"][0]["answer"]
    except (KeyError, IndexError, TypeError):
        return SmokeResult(False, f"smoke query {q.id}: {endpoint} answered {str(reply)[:200]!r}, not V1 predictions")
    if not isinstance(answer, str):
        return SmokeResult(False, f"smoke query {q.id}: the answer {answer!r} is not a string")
    named = answer.strip() in q.choices or any(string_match(c, answer, q.choices) for c in q.choices)
    verdict = "names a choice" if named else f"names none of {q.choices}"
    return SmokeResult(named, f"smoke query {q.id} ({q.question!r}): answer {answer!r} {verdict}", answer)
