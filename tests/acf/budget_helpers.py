"""The model that knows every answer, for the budget and prompt-format tests, and the records it is asked about.

It is a real OpenAI-compatible server on 127.0.0.1 (the server of ``tests/fakes/openai_stub.py``) answering
multiple-choice questions the way a chat model does: one token per character, cut at ``max_tokens``
(``finish_reason: length``) or at a stop string (dropped from the text, as OpenAI servers do).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
from fakes.openai_stub import Stub

SR = 16000
# MMAU test-mini's longest answers run past 100 characters; 16 tokens of any tokenizer cannot hold this one.
LONG = "A man speaks calmly while a crowd cheers in the background and a car horn sounds twice in the distance"
CHOICES = [LONG, "A woman sings", "A dog barks", "Rain falls on a tin roof"]


class MCQStub(Stub):
    """Answers each question with a scripted reply (found by the question text in the prompt) and records every
    request body. ``stop_reason`` True adds vLLM's field; False behaves like servers that do not send it."""

    def __init__(self, replies: dict[str, str], stop_reason: bool = True) -> None:
        self.replies, self.stop_reason = replies, stop_reason
        self.bodies: list[dict] = []
        super().__init__()

    def answer(self, body: dict) -> tuple[int, dict, dict]:
        with self.lock:
            self.bodies.append(body)
        user = body["messages"][-1]["content"]
        text = next(t["text"] for t in user if t["type"] == "text")
        reply = next(r for q, r in self.replies.items() if q in text)
        choice: dict = {"index": 0, "finish_reason": "stop"}
        cuts = [(reply.find(s), s) for s in body.get("stop") or [] if s in reply]
        first = min(cuts, default=None)
        if first is not None and first[0] + len(first[1]) <= body["max_tokens"]:
            reply = reply[: first[0]]  # OpenAI servers drop the stop string
            if self.stop_reason:
                choice["stop_reason"] = first[1]
        elif len(reply) > body["max_tokens"]:
            reply, choice["finish_reason"] = reply[: body["max_tokens"]], "length"
        elif self.stop_reason:
            choice["stop_reason"] = None
        choice["message"] = {"role": "assistant", "content": reply}
        return 200, {"choices": [choice]}, {}


def _records(tmp_path: Path, rows: list[dict]) -> Path:
    """Records with one-second clips under ``tmp_path/audio``."""
    (tmp_path / "audio").mkdir(exist_ok=True)
    for row in rows:
        sf.write(tmp_path / "audio" / f"{row['id']}.wav", np.zeros(SR, np.float32), SR)
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _row(id: str, question: str, answer: str, choices: list[str] = CHOICES) -> dict:
    return {
        "id": id,
        "question": question,
        "choices": choices,
        "answer": answer,
        "audio_path": f"audio/{id}.wav",
        "source_dataset": "test",
        "question_type": "sound",
    }


def _endpoint(url: str, name: str = "knows", **keys) -> dict:
    return {"path": "served", "backend": "openai", "base_url": url, "name": name, **keys}
