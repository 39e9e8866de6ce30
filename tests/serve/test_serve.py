"""The model server, started for real on 127.0.0.1 (one per module), answering through kserve's REST client (V1,
V2), the official openai client and raw HTTP: readiness and tensor metadata, the same answer on every protocol,
concurrent requests batched yet answered as alone, and every accepted audio format, rate and URL.
test_serve_refusals.py has the bad requests and test_serve_metrics_fuzz.py the metrics and generated requests."""

from __future__ import annotations

import asyncio
import io
import json
import re
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf

from serve.serve_helpers import _audio, _b64, _infer, _instance, _predict, _prompt

pytest.importorskip("kserve")


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
