"""Bad requests to a real ``audiomcq serve`` on 127.0.0.1 (one per module) on every route: V1 bodies and
instances, audio URLs and raw bodies, V2 tensors in JSON and binary form, OpenAI chats, and nesting deep enough
to break a parser must each be a 4xx that gives the reason, never a 5xx."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from serve.serve_helpers import _audio, _b64, _instance, _post, _predict, _prompt

pytest.importorskip("kserve")


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
