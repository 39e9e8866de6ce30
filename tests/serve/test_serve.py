"""The model server, started for real on 127.0.0.1 (one per module), asked through kserve's REST client (V1, V2),
the official openai client, raw HTTP and Prometheus; bad requests must be 4xx with a reason, never 5xx."""

from __future__ import annotations

import asyncio
import base64
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import free_port, wait_ready

pytest.importorskip("kserve")

LIMITS = [
    "--max-batch-size",
    "8",
    "--max-wait-ms",
    "30",
    "--max-audio-seconds",
    "4",
    "--max-audio-bytes",
    "400000",
    "--max-choices",
    "6",
    "--max-question-chars",
    "300",
    "--max-instances",
    "4",
    "--max-completion-tokens",
    "32",
]


class _Files(http.server.SimpleHTTPRequestHandler):
    """Serves the corpus; ``/audio/moved`` redirects to a real clip (the model server must not follow it)."""

    def do_GET(self) -> None:
        if self.path == "/audio/moved":
            self.send_response(302)
            self.send_header("Location", "/audio/synth-eval-00000.wav")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def files(synth_corpus):
    """An HTTP file server over the corpus on 127.0.0.1: its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Files(*a, directory=str(synth_corpus)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def server(tiny_omni, files, tmp_path_factory):
    """``audiomcq serve`` on the tiny Omni model, with small limits and the file server's /audio/ allowed."""
    from audiomcq.bench.serve import running_server

    log = tmp_path_factory.mktemp("serve") / "server.log"
    args = [*LIMITS, "--sample-rates", "16000,44100", "--allow-url-prefixes", f"{files}/audio/"]
    try:
        with running_server(tiny_omni, args, log) as base:
            yield base
    finally:
        if log.is_file():
            print(log.read_text()[-3000:])


@pytest.fixture(scope="module")
def records(synth_corpus):
    return [json.loads(line) for line in (synth_corpus / "eval.jsonl").read_text().splitlines()]


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


def test_kserve_reports_ready_and_describes_the_v2_tensors(server):
    from kserve import InferenceRESTClient, RESTConfig

    async def check():
        v2 = InferenceRESTClient(RESTConfig(protocol="v2"))
        assert await v2.is_server_live(server) and await v2.is_server_ready(server)
        assert await v2.is_model_ready(server, "audiomcq")
        assert await InferenceRESTClient(RESTConfig(protocol="v1")).is_model_ready(server, "audiomcq")

    asyncio.run(check())
    meta = json.loads(urllib.request.urlopen(f"{server}/v2/models/audiomcq", timeout=10).read())
    assert {t["name"] for t in meta["inputs"]} == {"question", "choices", "audio", "audio_url"}
    assert {t["name"] for t in meta["outputs"]} == {"answer", "index", "raw", "scores", "answer_source"}


def test_v1_answers_with_a_choice_its_index_and_per_choice_log_likelihoods(server, records, synth_corpus):
    from audiomcq.serve.scoring import pick_answer

    first, second = (_instance(r, synth_corpus) for r in records[:2])
    body = _infer("v1", server, {"instances": [first, second, first]})
    a, b, again = body["predictions"]
    for p, inst in ((a, first), (b, second)):
        assert set(p) == {"answer", "index", "raw", "scores", "answer_source"}
        assert p["answer"] == inst["choices"][p["index"]]
        assert len(p["scores"]) == len(inst["choices"]) and all(s < 0 for s in p["scores"])
        # the source says where the answer came from: the reply's text, or the best score
        said = pick_answer(p["raw"], inst["choices"], [0.0] * len(inst["choices"]))
        if p["answer_source"] == "generated":
            assert said == (p["index"], "generated")
        else:
            assert p["answer_source"] == "scored" and said[1] == "scored"
            assert p["index"] == int(np.argmax(p["scores"]))
    assert a == again  # greedy decoding and scoring are deterministic
    assert a["scores"] != b["scores"]


def test_v2_infer_matches_v1_for_json_and_tensor_choices(server, records, synth_corpus):
    from kserve import InferInput, InferRequest

    rows = [_instance(r, synth_corpus) for r in records[:2]]
    rows[1]["choices"] = rows[1]["choices"][:3]  # ragged: scores are padded with NaN
    _, v1 = _predict(server, rows)
    expected = json.loads(v1)["predictions"]

    def tensor(name, values, shape=None, binary=False):
        t = InferInput(name, shape or [len(values)], "BYTES")
        t.set_data_from_numpy(np.array([v.encode() for v in values], dtype=np.object_).reshape(t.shape), binary)
        return t

    for binary in (False, True):
        request = InferRequest(
            "audiomcq",
            [
                tensor("question", [r["question"] for r in rows], binary=binary),
                tensor("choices", [json.dumps(r["choices"]) for r in rows], binary=binary),
                tensor("audio", [r["audio"] for r in rows], binary=binary),
            ],
        )
        result = _infer("v2", server, request)
        out = {o.name: o.as_numpy() for o in result.outputs}
        assert [str(x) for x in out["answer"]] == [p["answer"] for p in expected]
        assert out["index"].tolist() == [p["index"] for p in expected]
        assert [str(x) for x in out["raw"]] == [p["raw"] for p in expected]
        assert [str(x) for x in out["answer_source"]] == [p["answer_source"] for p in expected]
        assert out["scores"].shape == (2, 4) and np.isnan(out["scores"][1, 3])
        np.testing.assert_allclose(out["scores"][0], expected[0]["scores"], rtol=1e-5)
    square = InferRequest(
        "audiomcq",
        [
            tensor("question", [rows[0]["question"]]),
            tensor("choices", rows[0]["choices"], [1, 4]),
            tensor("audio", [rows[0]["audio"]]),
        ],
    )
    result = _infer("v2", server, square)
    assert result.outputs[1].as_numpy().tolist() == [expected[0]["index"]]


def test_an_openai_chat_with_the_model_card_question_answers_as_v1_from_one_pass(server, records, synth_corpus):
    import openai

    inst = _instance(records[0], synth_corpus)
    _, v1 = _predict(server, [inst])
    expected = json.loads(v1)["predictions"][0]
    client = openai.OpenAI(base_url=f"{server}/openai/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == ["audiomcq"]
    message = [
        {
            "role": "user",
            "content": [
                {"type": "input_audio", "input_audio": {"data": inst["audio"], "format": "wav"}},
                {"type": "text", "text": _prompt(inst["question"], inst["choices"])},
            ],
        }
    ]
    reply = client.chat.completions.create(model="audiomcq", messages=message, temperature=0, max_tokens=32)
    assert reply.object == "chat.completion" and reply.choices[0].message.content == expected["raw"]
    mcq = reply.choices[0].model_extra["mcq"]
    assert {k: mcq[k] for k in ("answer", "index", "answer_source")} == {
        k: expected[k] for k in ("answer", "index", "answer_source")
    }
    np.testing.assert_allclose(mcq["scores"], expected["scores"], rtol=1e-5)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="other", messages=message)


def test_concurrent_requests_are_batched_and_answered_as_alone(server, records, synth_corpus):
    insts = [_instance(r, synth_corpus) for r in records[:12]]
    alone = [json.loads(_predict(server, [i])[1])["predictions"][0] for i in insts]
    before = urllib.request.urlopen(f"{server}/metrics", timeout=10).read().decode()
    with ThreadPoolExecutor(len(insts)) as pool:
        together = list(pool.map(lambda i: _predict(server, [i]), insts))
    after = urllib.request.urlopen(f"{server}/metrics", timeout=10).read().decode()
    assert all(status == 200 for status, _ in together)
    for one, (_, body) in zip(alone, together, strict=True):
        batched = json.loads(body)["predictions"][0]
        assert batched["index"] == one["index"]
        np.testing.assert_allclose(batched["scores"], one["scores"], rtol=1e-4)

    def value(text, name):
        return float(re.search(rf"^{name} (\S+)$", text, re.MULTILINE).group(1))

    forwards = value(after, "audiomcq_serve_batch_size_count") - value(before, "audiomcq_serve_batch_size_count")
    assert value(after, "audiomcq_serve_batch_size_sum") - value(before, "audiomcq_serve_batch_size_sum") == 12
    assert forwards < 12  # some requests shared a forward


def test_audio_formats_rates_and_allowed_urls_are_answered(server, records, synth_corpus, files):
    inst = _instance(records[0], synth_corpus)
    _, v1 = _predict(server, [inst])
    expected = json.loads(v1)["predictions"][0]
    wave, rate = sf.read(synth_corpus / records[0]["audio_path"])
    flac = io.BytesIO()
    sf.write(flac, wave, rate, format="FLAC")
    url = f"{files}/{records[0]['audio_path']}"
    question = {k: v for k, v in inst.items() if k != "audio"}
    status, body = _predict(
        server,
        [
            {**inst, "audio": _b64(flac.getvalue())},
            {**question, "audio_url": url},
            {**inst, "audio": _b64(_audio(1.0, fmt="MP3"))},
            {**inst, "audio": _b64(_audio(1.0, rate=44100))},
        ],
    )
    assert status == 200, body
    lossless, fetched, _, _ = json.loads(body)["predictions"]
    for got in (lossless, fetched):  # the same clip: the same answer; scores as close as a batch of 4 vs 1 allows
        assert {k: v for k, v in got.items() if k != "scores"} == {k: v for k, v in expected.items() if k != "scores"}
        np.testing.assert_allclose(got["scores"], expected["scores"], rtol=1e-6)


BAD_V1 = [
    ({}, "expected {'instances'"),
    ({"instances": []}, "expected {'instances'"),
    ({"instances": [{"audio": "AAAA"}] * 5}, "5 instances in one request; the limit is 4"),
    ({"instances": ["text"]}, "instance 0: expected an object"),
    ({"instances": [{"question": "q", "choices": ["a", "b"]}]}, "instance 0: give exactly one of 'audio'"),
]
BAD_FIELDS = [
    ({"question": None}, "'question' must be a non-empty string"),
    ({"question": "   "}, "'question' must be a non-empty string"),
    ({"question": "x" * 301}, "more than the limit of 300"),
    ({"question": "what <|AUDIO|> is it?"}, "control token '<|AUDIO|>'"),
    ({"choices": None}, "'choices' must be a list of 2 to 6 strings, not NoneType"),
    ({"choices": ["one"]}, "'choices' must be a list of 2 to 6 strings, not 1 choices"),
    ({"choices": "a, b"}, "not str"),
    ({"choices": ["a", "b", "c", "d", "e", "f", "g"]}, "not 7 choices"),
    ({"choices": ["a", 2]}, "'choices[1]' must be a non-empty string"),
    ({"choices": ["a", "a "]}, "duplicates"),
    ({"choices": ["a", "<|im_end|>"]}, "control token"),
    ({"extra": 1}, "unknown field(s) ['extra']"),
    ({"audio": "!!not base64"}, "'audio' is not valid base64"),
    ({"audio": ""}, "'audio' must be a non-empty base64 string"),
    ({"audio": 12}, "'audio' must be a non-empty base64 string"),
    ({"audio": "bm90IGF1ZGlv"}, "not a readable WAV, FLAC or MP3 file"),
    ({"audio": _b64(_audio(5.0))}, "lasts 5.0 s, more than the limit of 4 s"),
    ({"audio": _b64(_audio(3.0, rate=96000, subtype="PCM_24"))}, "larger than the limit of 400000 bytes"),
    ({"audio": _b64(_audio(1.0, rate=8000))}, "sample rate 8000 Hz is not accepted"),
    ({"audio": _b64(_audio(0.0))}, "the audio has no samples"),
    (
        {"audio": _b64(_audio(0.0001))},
        "lasts 0.0001 s, shorter than the minimum of 0.1 s (1 of 1600 samples at 16 kHz)",
    ),
    ({"audio": _b64(_audio(0.00007, rate=44100))}, "shorter than the minimum of 0.1 s"),  # 3 samples -> 1
    ({"audio": _b64(_audio(1.0, subtype="FLOAT", fill=np.nan))}, "NaN or infinite"),
    ({"audio": _b64(_audio(1.0, fmt="OGG", subtype="VORBIS"))}, "format OGG is not accepted"),
    ({"audio_url": "s3://bucket/clip.wav"}, "not under an allowed prefix"),
]


@pytest.mark.parametrize(("body", "reason"), BAD_V1)
def test_bad_v1_bodies_are_400_with_the_reason(server, body, reason):
    status, text = _post(f"{server}/v1/models/audiomcq:predict", body)
    assert status == 400 and reason in json.loads(text)["error"], text


@pytest.mark.parametrize(("change", "reason"), BAD_FIELDS)
def test_bad_instances_are_400_naming_the_instance_and_the_reason(server, records, synth_corpus, change, reason):
    good = _instance(records[0], synth_corpus)
    bad = {**good, **change}
    if "audio_url" in change:
        del bad["audio"]
    status, text = _predict(server, [good, bad])
    assert status == 400, text
    message = json.loads(text)["error"]
    assert message.startswith("instance 1: ") and reason in message, message


def test_bad_audio_urls_and_raw_bodies_are_4xx(server, records, synth_corpus, files):
    question = {k: v for k, v in _instance(records[0], synth_corpus).items() if k != "audio"}
    for url, reason in [
        (f"{files}/audio/moved", "answered HTTP 302"),
        (f"{files}/audio/missing.wav", "answered HTTP 404"),
        (f"{files}/audio/../eval.jsonl", "without credentials or . / .. segments"),
        (f"{files}/audio/%2e%2e/eval.jsonl", "without credentials or . / .. segments"),
        (f"{files}/eval.jsonl", "not under an allowed prefix"),
    ]:
        status, text = _predict(server, [{**question, "audio_url": url}])
        assert status == 400 and reason in text, (url, text)
    for raw in (b"{not json", b"\xff\xfe", b"[1, 2]", b"null"):
        status, text = _post(f"{server}/v1/models/audiomcq:predict", raw, raw=True)
        assert 400 <= status < 500, (raw, status, text)


def _binary_v2_bodies(inst: dict, wav: bytes) -> list[tuple[bytes, str, str]]:
    """Binary-extension V2 bodies kserve itself cannot decode: (body, header length, expected reason)."""
    from kserve import InferInput, InferRequest

    tensors = []
    for name, value in (
        ("question", inst["question"].encode()),
        ("choices", json.dumps(inst["choices"]).encode()),
        ("audio", wav),
    ):  # raw WAV bytes are not UTF-8 text
        tensor = InferInput(name, [1], "BYTES")
        tensor.set_data_from_numpy(np.array([value], dtype=np.object_), binary_data=True)
        tensors.append(tensor)
    raw, length = InferRequest("audiomcq", tensors).to_rest()
    header = json.dumps({"outputs": []}).encode()
    return [(raw, str(length), "UTF-8"), (header, str(len(header)), "KeyError"), (raw, "many", "ValueError")]


def test_bad_v2_and_openai_requests_are_4xx(server, records, synth_corpus):
    inst = _instance(records[0], synth_corpus)

    def v2(*inputs):
        return _post(f"{server}/v2/models/audiomcq/infer", {"inputs": list(inputs)})

    q = {"name": "question", "datatype": "BYTES", "shape": [1], "data": [inst["question"]]}
    c = {"name": "choices", "datatype": "BYTES", "shape": [1], "data": [json.dumps(inst["choices"])]}
    a = {"name": "audio", "datatype": "BYTES", "shape": [1], "data": [inst["audio"]]}
    for inputs, reason in [
        ((c, a), "input 'question' is missing"),
        ((q, a), "input 'choices' is missing"),
        ((q, c, a, {**a, "name": "x"}), "unknown input 'x'"),
        ((q, c, {**a, "datatype": "FP32", "data": [1.0]}), "must be BYTES"),
        ((q, c, {**a, "shape": [2]}), "does not fit shape"),
        ((q, {**c, "data": ["not json"]}), "instance 0: 'choices' must be a JSON list"),
        ((q, c, {**a, "data": [inst["audio"][:-1]]}), "instance 0: 'audio' is not valid base64"),
    ]:
        status, text = v2(*inputs)
        assert status == 400 and reason in text, (reason, text)
    status, _ = _post(f"{server}/v2/models/audiomcq/infer", {"inputs": "nope"})
    assert 400 <= status < 500
    for body, length, reason in _binary_v2_bodies(inst, (synth_corpus / records[0]["audio_path"]).read_bytes()):
        req = urllib.request.Request(
            f"{server}/v2/models/audiomcq/infer",
            data=body,
            headers={"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": length},
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=60)
        assert err.value.code == 400 and reason in err.value.read().decode(), reason
    chat = f"{server}/openai/v1/chat/completions"
    text = _prompt(inst["question"], inst["choices"])
    good = {"type": "input_audio", "input_audio": {"data": inst["audio"], "format": "wav"}}
    for body, reason in [
        ({"model": "audiomcq", "stream": True, "messages": []}, "'messages' must be a non-empty list"),
        (
            {
                "model": "audiomcq",
                "messages": [{"role": "user", "content": [good, good, {"type": "text", "text": text}]}],
            },
            "2 input_audio parts; at most 1 per request",
        ),
        (
            {
                "model": "audiomcq",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {**good, "input_audio": {"data": inst["audio"], "format": "ogg"}},
                            {"type": "text", "text": text},
                        ],
                    }
                ],
            },
            "input_audio.format",
        ),
        (
            {
                "model": "audiomcq",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {**good, "input_audio": {"data": "@@", "format": "wav"}},
                            {"type": "text", "text": text},
                        ],
                    }
                ],
            },
            "message: 'audio' is not valid base64",
        ),
        (
            {
                "model": "audiomcq",
                "messages": [
                    {"role": "user", "content": [good, {"type": "text", "text": _prompt(inst["question"], ["only"])}]}
                ],
            },
            "not 1 choices",
        ),
    ]:
        status, reply = _post(chat, body)
        assert status == 400 and reason in json.loads(reply)["error"]["message"], reply


def test_deep_nesting_and_unhashable_choices_are_400_on_every_route(server, records, synth_corpus):
    inst = _instance(records[0], synth_corpus)
    deep = b"[" * 100_000
    for path in ("/v1/models/audiomcq:predict", "/v2/models/audiomcq/infer", "/openai/v1/chat/completions"):
        status, text = _post(server + path, deep, raw=True)
        assert status == 400, (path, status, text)
    choices = {"name": "choices", "datatype": "BYTES", "shape": [1], "data": ["[" * 100_000]}
    status, text = _post(
        f"{server}/v2/models/audiomcq/infer",
        {"inputs": [{"name": "question", "datatype": "BYTES", "shape": [1], "data": ["q"]}, choices]},
    )
    assert status == 400 and "instance 0: 'choices' must be a JSON list" in text, text
    audio = {"type": "input_audio", "input_audio": {"data": inst["audio"], "format": "wav"}}
    for bad in ("[{[]: 1}]", "[{1, []}]"):
        prompt = _prompt("q", ["a", "b"]).replace("['a', 'b']", bad)
        status, text = _post(
            f"{server}/openai/v1/chat/completions",
            {
                "model": "audiomcq",
                "messages": [{"role": "user", "content": [audio, {"type": "text", "text": prompt}]}],
            },
        )
        assert status == 400 and "list of quoted strings" in text, text


@pytest.mark.slow
def test_prometheus_scrapes_the_server_metrics(server, records, synth_corpus, tmp_path):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (.ci/run installs it)")
    assert _predict(server, [_instance(records[0], synth_corpus)])[0] == 200
    target = server.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    scrape = f"[{{job_name: audiomcq-serve, static_configs: [{{targets: ['{target}']}}]}}]"
    config.write_text(f"global: {{scrape_interval: 1s}}\nscrape_configs: {scrape}\n")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(f"{url}/-/ready")
        route = "/v1/models/{model_name}:predict"
        expr = f'sum(audiomcq_serve_requests_total{{job="audiomcq-serve",route="{route}",code="200"}})'
        deadline = time.monotonic() + 20
        while True:
            query = urllib.parse.quote(expr)
            result = json.loads(urllib.request.urlopen(f"{url}/api/v1/query?query={query}", timeout=5).read())
            if result["data"]["result"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert result["data"]["result"] and float(result["data"]["result"][0]["value"][1]) >= 1
    finally:
        proc.terminate()
        proc.wait()


def test_metrics_count_audio_answers_and_errors_and_no_5xx_ever(server, records, synth_corpus):
    good = _instance(records[0], synth_corpus)
    assert _predict(server, [good])[0] == 200 and _predict(server, [{**good, "choices": []}])[0] == 400
    text = urllib.request.urlopen(f"{server}/metrics", timeout=10).read().decode()
    assert re.search(r"^audiomcq_serve_audio_seconds_total [1-9]", text, re.MULTILINE)
    assert re.search(r'^audiomcq_serve_answers_total\{index="\d"\} [1-9]', text, re.MULTILINE)
    assert re.search(
        r'^audiomcq_serve_request_seconds_bucket\{le="\+Inf",route="/v1/models/\{model_name\}:predict"\}',
        text,
        re.MULTILINE,
    )
    assert 'audiomcq_serve_errors_total{kind="client"' in text
    assert 'kind="server"' not in text and not re.search(r'code="5\d\d"', text)
    assert "request_predict_seconds_count" in text  # kserve's own series are still there


def _fuzz_bodies(valid: dict):
    """Requests mixing valid pieces with arbitrary values, for every route: (path, JSON body or raw bytes)."""
    from hypothesis import strategies as st

    clips = [
        valid["audio"],
        _b64(_audio(0.5)),
        _b64(_audio(0.2, fmt="FLAC")),
        _b64(_audio(0.3, fmt="MP3")),
        _b64(_audio(0.1, rate=8000)),
        _b64(b"RIFF\x00\x00\x00\x00WAVEfmt "),
        "",
        "=",
        "AAAA",
    ]
    anything = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=6,
    )
    text = st.text(max_size=40) | st.sampled_from([valid["question"], "<|AUDIO|>", "<answer>", "\x00", "é" * 301])
    audio = st.sampled_from(clips) | st.binary(max_size=64).map(_b64) | anything
    url = st.sampled_from(["s3://b/k.wav", "http://127.0.0.1:1/audio/x.wav", "file:///etc/passwd"]) | st.text()
    instance = st.fixed_dictionaries(
        {},
        optional={
            "question": text | anything,
            "choices": st.lists(text, max_size=8) | anything,
            "audio": audio,
            "audio_url": url,
            "extra": anything,
        },
    )
    # Mostly valid questions with odd text or audio, so the model path is fuzzed too, not only the refusals.
    words = st.text(min_size=1, max_size=30).filter(str.strip)
    mutated = st.builds(
        lambda change: {**valid, **change},
        st.fixed_dictionaries(
            {},
            optional={
                "question": words,
                "choices": st.lists(words, min_size=2, max_size=6, unique_by=str.strip),
                "audio": st.sampled_from(clips[:5]),
            },
        ),
    )
    one = st.builds(lambda x: {"instances": [x]}, mutated)
    v1 = st.builds(lambda xs: {"instances": xs}, st.lists(instance, max_size=3)) | anything
    tensor = st.fixed_dictionaries(
        {
            "name": st.sampled_from(["question", "choices", "audio", "audio_url", "x"]),
            "datatype": st.sampled_from(["BYTES", "FP32", "INT64", "BOOL", "FP16"]),
            "shape": st.lists(st.integers(-2, 3), max_size=3),
            "data": st.lists(
                text | st.integers() | st.sampled_from([*clips, json.dumps(valid["choices"])]), max_size=4
            ),
        }
    )
    v2 = st.builds(lambda xs: {"inputs": xs}, st.lists(tensor, max_size=4)) | anything
    prompt = _prompt(valid["question"], valid["choices"])
    part = st.sampled_from(
        [
            {"type": "input_audio", "input_audio": {"data": valid["audio"], "format": "wav"}},
            {"type": "text", "text": prompt},
        ]
    ) | st.fixed_dictionaries(
        {
            "type": st.sampled_from(["text", "input_audio"]),
            "text": text,
            "input_audio": st.fixed_dictionaries({"data": audio, "format": text}),
        }
    )
    message = st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "x"]), "content": st.lists(part, max_size=3) | text}
    )
    number = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**70), 2**70) | anything
    chat = st.fixed_dictionaries(
        {"model": st.sampled_from(["audiomcq", "x"]), "messages": st.lists(message, max_size=3)},
        optional={
            "stream": st.booleans(),
            "n": st.integers(0, 5) | anything,
            "temperature": number,
            "top_p": number,
            "max_tokens": st.integers(-1, 40) | anything,
            "seed": number,
            "stop": text | anything,
            "logprobs": st.booleans() | anything,
            "top_logprobs": st.integers(-1, 25) | anything,
            "logit_bias": st.dictionaries(st.text(max_size=6), number, max_size=2) | anything,
            "frequency_penalty": number,
            "stream_options": anything,
            "tools": anything,
            "response_format": anything,
            "top_k": number,
            "repetition_penalty": number,
        },
    )
    v1_path, v2_path, chat_path = (
        "/v1/models/audiomcq:predict",
        "/v2/models/audiomcq/infer",
        "/openai/v1/chat/completions",
    )
    binary_input = st.fixed_dictionaries(
        {
            "name": st.sampled_from(["question", "choices", "audio", "x"]),
            "datatype": st.sampled_from(["BYTES", "FP32", "INT64"]),
            "shape": st.lists(st.integers(-1, 3), max_size=2),
            "parameters": st.fixed_dictionaries({"binary_data_size": st.integers(-4, 80)}),
        }
    )

    def binary_body(inputs: list, tail: bytes, shift: int) -> tuple[bytes, dict]:
        header = json.dumps({"inputs": inputs}).encode()
        return header + tail, {"Inference-Header-Content-Length": str(len(header) + shift)}

    binary = st.builds(binary_body, st.lists(binary_input, max_size=3), st.binary(max_size=80), st.integers(-3, 3))
    return (
        st.tuples(st.just(v1_path), one | v1, st.just({}))
        | st.tuples(st.just(v2_path), v2, st.just({}))
        | st.tuples(st.just(chat_path), chat | anything, st.just({}))
        | st.builds(lambda pair: (v2_path, *pair), binary)
        | st.tuples(st.sampled_from([v1_path, v2_path, chat_path]), st.binary(max_size=64), st.just({}))
    )


@pytest.mark.slow
def test_generated_requests_never_get_a_5xx(server, records, synth_corpus):
    from hypothesis import HealthCheck, given, settings

    @settings(
        max_examples=int(os.environ.get("AUDIOMCQ_FUZZ_EXAMPLES", "150")),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(_fuzz_bodies(_instance(records[0], synth_corpus)))
    def check(request):
        path, body, headers = request
        status, text = _post(server + path, body, raw=isinstance(body, bytes), headers=headers)
        seen[status] += 1
        assert status < 500, (path, body, status, text)

    seen: Counter = Counter()
    check()
    assert seen[200] and seen[400]  # both the model path and the refusals were exercised
