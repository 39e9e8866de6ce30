"""The inference engines: batching, the shared-silence prefix, sampling, and the OpenAI-compatible client."""

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import numpy as np
import pytest
import soundfile as sf

from audiomcq.data.io import read_records
from audiomcq.errors import AudioMCQError
from audiomcq.inference import EngineSpec, Request, Sampling, make_engine
from audiomcq.synth.audio import SR


@pytest.fixture(scope="module")
def silent_requests(synth_corpus):
    silence = np.zeros(2 * SR, np.float32)
    return [Request(r.question, tuple(r.choices), silence) for r in read_records(synth_corpus / "eval.jsonl")]


@pytest.mark.parametrize("family", ["tiny_omni", "tiny_qwen2_audio"])
def test_shared_silence_prefix_gives_the_uncached_answers(family, request, silent_requests):
    path = request.getfixturevalue(family)  # both families, saved and reloaded as HF directories
    plain = make_engine(EngineSpec(str(path), shared_prefix=False, batch_size=8))
    shared = make_engine(EngineSpec(str(path), batch_size=8))
    assert plain.loaded.family == {"tiny_omni": "qwen2_5_omni", "tiny_qwen2_audio": "qwen2_audio"}[family]
    expected = plain.generate(silent_requests, Sampling(max_new_tokens=8))
    got = shared.generate(silent_requests, Sampling(max_new_tokens=8))
    assert len(shared._prefixes) == 1  # the shared path really ran, once
    assert got == expected


def test_sampling_returns_n_answers_per_request_and_is_seeded(tiny_omni, silent_requests):
    engine = make_engine(EngineSpec(str(tiny_omni)))
    sampling = Sampling(max_new_tokens=4, temperature=1.5, n=3, seed=7)
    first = engine.generate(silent_requests[:4], sampling)
    assert [len(x) for x in first] == [3, 3, 3, 3]
    assert engine.generate(silent_requests[:4], sampling) == first
    with pytest.raises(ValueError, match="temperature"):
        Sampling(n=2)


class _Server(BaseHTTPRequestHandler):
    """A small OpenAI-compatible endpoint: answers with the rate and length of the WAV it was sent, fails on cue."""

    seen: ClassVar[list] = []
    fail_first = 0

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.headers.get("Authorization"), body))
        if type(self).fail_first > 0:
            type(self).fail_first -= 1
            return self._send(503, {"error": "warming up"})
        if body["model"] == "bad":
            return self._send(400, {"error": "no such model"})
        part = body["messages"][1]["content"][0]["input_audio"]
        wave, rate = sf.read(io.BytesIO(base64.b64decode(part["data"])))
        text = f"<answer>{rate}:{len(wave)}</answer>"
        self._send(200, {"choices": [{"index": i, "message": {"content": text}} for i in range(body["n"])]})

    def _send(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Server.seen, _Server.fail_first = [], 0
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_openai_backend_sends_the_prompt_and_audio_with_the_key_from_env(endpoint, monkeypatch):
    monkeypatch.setenv("THROWAWAY_KEY", "test-only-value")
    spec = EngineSpec("served", backend="openai", base_url=endpoint, api_key_env="THROWAWAY_KEY", retries=2)
    _Server.fail_first = 2  # retried, then answered
    reqs = [Request("Which?", ("x", "y"), np.zeros(SR // 2, np.float32)) for _ in range(3)]
    assert make_engine(spec).generate(reqs) == [["<answer>16000:8000</answer>"]] * 3
    auth, body = _Server.seen[-1]
    assert auth == "Bearer test-only-value"
    assert body["messages"][0]["role"] == "system"
    assert body["messages"][1]["content"][1]["text"].startswith("Which? Please choose the answer from the following")


def test_openai_backend_reports_a_client_error_without_retrying(endpoint):
    spec = EngineSpec("bad", backend="openai", base_url=endpoint, retries=3)
    with pytest.raises(AudioMCQError, match=r"HTTP 400.*no such model"):
        make_engine(spec).generate([Request("Q?", ("a", "b"), np.zeros(SR, np.float32))])
    assert len(_Server.seen) == 1


def test_openai_backend_names_a_missing_key_variable():
    with pytest.raises(AudioMCQError, match="NOT_SET_ANYWHERE"):
        make_engine(
            EngineSpec("m", backend="openai", base_url="http://127.0.0.1:9/v1", api_key_env="NOT_SET_ANYWHERE")
        )


def test_openai_replies_say_when_they_hit_the_budget_and_keep_their_stop_string():
    from audiomcq.inference.base import is_truncated
    from audiomcq.inference.openai_http import completion

    stop = ("</answer>",)
    cut = completion({"message": {"content": "<answer>A long"}, "finish_reason": "length"}, stop)
    assert cut == "<answer>A long" and is_truncated(cut)
    reply = {"message": {"content": "<answer>A"}, "finish_reason": "stop", "stop_reason": "</answer>"}
    stopped = completion(reply, stop)
    assert stopped == "<answer>A</answer>" and not is_truncated(stopped)
    ended = completion({"message": {"content": "<answer>A"}, "finish_reason": "stop", "stop_reason": None}, stop)
    assert ended == "<answer>A"  # the model's own end token, not the stop string: nothing to put back


def test_a_custom_format_without_a_system_prompt_sends_only_the_user_turn():
    from audiomcq.inference.openai_http import chat_body

    spec = EngineSpec.from_dict({"path": "m", "prompt": "{question}\n{choices_plain}", "system": None})
    body = chat_body(Request("Q?", ("x", "y"), np.zeros(SR, np.float32)), Sampling(stop=("END",)), "m", spec.format)
    assert [m["role"] for m in body["messages"]] == ["user"] and body["stop"] == ["END"]
    assert body["messages"][0]["content"][1] == {"type": "text", "text": "Q?\nx\ny"}
