"""A small OpenAI-compatible chat server for the dataset-generation tests, on 127.0.0.1.

It answers like a well-behaved LLM, except where the audio caption in the prompt carries a marker:
``[bad-json]`` (first answer is not JSON), ``[wrong-schema]`` (always a JSON object without the fields),
``[slow]`` (the first request of each step sleeps past the client timeout), ``[429]`` (the first request of each
step is refused with 429 and Retry-After: 0), ``[always-429]``, ``[low-grade]`` (a grade of 3). Every request is
logged with its body hash and the status sent, so tests can count what was asked twice.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def first_user(body: dict) -> str:
    """The first user turn's content (requests may or may not open with a system turn)."""
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


class Stub:
    def __init__(self, slow_seconds: float = 2.0, delay: float = 0.0) -> None:
        self.log: list[tuple[str, int]] = []  # (body hash, status)
        self.prompts: list[str] = []  # the user prompt of each request, in arrival order
        self.seen: Counter[str] = Counter()  # first-turn request hashes, to script "first time" behaviour
        self.lock = threading.Lock()
        self.slow_seconds, self.delay = slow_seconds, delay
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status, reply, headers = stub.answer(json.loads(body))
                with stub.lock:
                    stub.log.append((hashlib.sha256(body).hexdigest(), status))
                    stub.prompts.append(first_user(json.loads(body)))
                data = json.dumps(reply).encode()
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()

    def answer(self, body: dict) -> tuple[int, dict, dict]:
        first = first_user(body)
        retry = len(body["messages"]) > 2  # we are being asked again after an invalid reply
        step = (
            "grade"
            if "answer_consistency" in first
            else "simple"
            if "simple_analysis" in first
            else "cot"
            if '"stage1"' in first
            else "mcq"
        )
        key = hashlib.sha256(first.encode()).hexdigest()
        with self.lock:
            self.seen[key] += 1
            nth = self.seen[key]
        if self.delay:
            time.sleep(self.delay)
        if "[always-429]" in first or ("[429]" in first and nth == 1):
            return 429, {"error": {"message": "rate limited"}}, {"Retry-After": "0"}
        if "[slow]" in first and nth == 1:
            time.sleep(self.slow_seconds)
        if "[wrong-schema]" in first and step == "mcq":
            return 200, _chat('{"query": "what?", "options": []}'), {}
        if "[bad-json]" in first and step == "mcq" and not retry:
            return 200, _chat("Sure! Here is a question: what is heard?"), {}
        return 200, _chat(json.dumps(_valid(step, first))), {}


def _chat(text: str) -> dict:
    return {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20},
    }


def _valid(step: str, prompt: str) -> dict:
    if step == "mcq":
        allowed = re.search(r"Allowed question types: ([a-z, ]+)\.", prompt).group(1).split(", ")
        caption = prompt.split("the original question):\n", 1)[1].split("\n")[0]
        return {
            "question": f"Which best describes what is heard ({caption[:40]})?",
            "choices": ["a dog barking", "rain on a roof", "a car horn", "people talking"],
            "answer": "rain on a roof",
            "question_type": allowed[0],
        }
    if step == "cot":  # echo the question, so that every item's later prompts differ
        question = prompt.split("Question: ", 1)[1].split("\n")[0]
        return {"stage1": f"It asks: {question}", "stage2": "The audio has rain.", "stage3": "So rain."}
    if step == "simple":
        return {"simple_analysis": "Rain is heard, so the answer is rain on a roof."}
    grade = 3 if "[low-grade]" in prompt else 5
    return dict.fromkeys(
        ("answer_consistency", "distractor_quality", "fluency", "reasoning_fidelity", "simple_reasoning_fidelity"),
        grade,
    )
