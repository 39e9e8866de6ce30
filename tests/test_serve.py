"""The KServe model server, started for real on 127.0.0.1, answering a real WAV question over V1 REST."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("kserve")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.mark.slow
def test_server_answers_an_audio_question_and_rejects_bad_audio(tiny_omni, synth_corpus):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "audiomcq.cli", "serve", "--model", str(tiny_omni), "--http-port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"{base}/v1/models/audiomcq", timeout=2) as resp:
                    if json.load(resp).get("ready"):
                        break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        else:
            pytest.fail("server never became ready")
        record = json.loads((synth_corpus / "eval.jsonl").read_text().splitlines()[0])
        wav = (synth_corpus / record["audio_path"]).read_bytes()
        instance = {
            "audio": base64.b64encode(wav).decode(),
            "question": record["question"],
            "choices": record["choices"],
        }
        status, body = _post(f"{base}/v1/models/audiomcq:predict", {"instances": [instance, instance]})
        assert status == 200
        assert len(body["predictions"]) == 2
        assert body["predictions"][0] == body["predictions"][1]  # greedy decoding is deterministic
        assert set(body["predictions"][0]) == {"answer", "raw"}
        status, body = _post(
            f"{base}/v1/models/audiomcq:predict", {"instances": [{**instance, "audio": "bm90IGF1ZGlv"}]}
        )
        assert status == 400 and "instance 0: 'audio' is not a readable" in json.dumps(body)
        status, body = _post(f"{base}/v1/models/audiomcq:predict", {"instances": [{**instance, "choices": ["one"]}]})
        assert status == 400 and "'choices' must be a list of at least 2 strings" in json.dumps(body)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
