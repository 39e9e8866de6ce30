"""The OpenAI-compatible routes of a real ``audiomcq serve`` on 127.0.0.1, driven by the official ``openai`` client:
free-form audio chat, streaming, every option honoured or refused with a 400 naming it, usage, models, and
OpenAI-shaped errors for routes the server does not offer."""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request

import numpy as np
import pytest

pytest.importorskip("kserve")
openai = pytest.importorskip("openai")

MAX_TOKENS = 16


@pytest.fixture(scope="module")
def server(tiny_omni, tmp_path_factory):
    from audiomcq.bench.serve import running_server

    log = tmp_path_factory.mktemp("serve-openai") / "server.log"
    args = ["--max-wait-ms", "5", "--max-completion-tokens", str(MAX_TOKENS), "--max-n", "3"]
    try:
        with running_server(tiny_omni, args, log) as base:
            yield base
    finally:
        if log.is_file():
            print(log.read_text()[-3000:])


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/openai/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def clip(synth_corpus):
    record = json.loads((synth_corpus / "eval.jsonl").read_text().splitlines()[0])
    return record, base64.b64encode((synth_corpus / record["audio_path"]).read_bytes()).decode()


def _audio(data: str) -> dict:
    return {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}


def _ask(clip, text: str = "What do you hear?") -> list[dict]:
    return [{"role": "user", "content": [_audio(clip[1]), {"type": "text", "text": text}]}]


def _chat(client, messages, **options):
    return client.chat.completions.create(model="audiomcq", messages=messages, **options)


@pytest.fixture(scope="module")
def eos(tiny_omni) -> int:
    """The end-of-turn token id of the served tokenizer."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_omni)).eos_token_id


def test_free_form_audio_chat_answers_with_usage_and_finish_reason(client, clip, eos):
    reply = _chat(client, _ask(clip), temperature=0)
    (choice,) = reply.choices
    assert reply.object == "chat.completion" and reply.model == "audiomcq" and choice.message.role == "assistant"
    assert "mcq" not in (choice.model_extra or {})  # free text: nothing to score
    usage = reply.usage
    assert usage.completion_tokens == MAX_TOKENS and choice.finish_reason == "length"  # the random model rambles
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    without_audio = _chat(client, [{"role": "user", "content": "What do you hear?"}], temperature=0)
    assert usage.prompt_tokens - without_audio.usage.prompt_tokens > 20  # the clip's audio tokens are counted
    stopped = _chat(client, _ask(clip), logit_bias={str(eos): 100})
    assert stopped.choices[0].finish_reason == "stop" and stopped.choices[0].message.content == ""
    assert stopped.usage.completion_tokens == 1


def test_sampling_options_are_honoured(client, clip):
    greedy = _chat(client, _ask(clip), temperature=0).choices[0].message.content
    assert _chat(client, _ask(clip), temperature=0).choices[0].message.content == greedy
    hot = [_chat(client, _ask(clip), temperature=2, seed=s).choices[0].message.content for s in (1, 2, 1)]
    assert hot[0] == hot[2] != hot[1]
    assert _chat(client, _ask(clip), temperature=2, top_p=1e-6, seed=4).choices[0].message.content == greedy
    assert (
        _chat(client, _ask(clip), temperature=2, seed=4, extra_body={"top_k": 1}).choices[0].message.content == greedy
    )
    short = _chat(client, _ask(clip), temperature=0, max_tokens=3)
    assert short.usage.completion_tokens == 3 and short.choices[0].finish_reason == "length"
    newer = _chat(client, _ask(clip), temperature=0, max_completion_tokens=3)
    assert newer.choices[0].message.content == short.choices[0].message.content
    stop = greedy[4:7]
    cut = _chat(client, _ask(clip), temperature=0, stop=[stop, "never in the reply"])
    assert cut.choices[0].finish_reason == "stop" and cut.choices[0].message.content == greedy[: greedy.index(stop)]
    many = _chat(client, _ask(clip), temperature=1, n=3, seed=7)
    assert [c.index for c in many.choices] == [0, 1, 2] and len({c.message.content for c in many.choices}) > 1
    assert many.usage.completion_tokens == sum(MAX_TOKENS for _ in range(3))
    penalised = _chat(client, _ask(clip), temperature=0, presence_penalty=2, frequency_penalty=2)
    assert penalised.choices[0].message.content != greedy
    system = _chat(client, [{"role": "system", "content": "Answer in one word."}, *_ask(clip)], temperature=0)
    assert system.usage.prompt_tokens != _chat(client, _ask(clip), temperature=0).usage.prompt_tokens
    turns = [*_ask(clip), {"role": "assistant", "content": greedy}, {"role": "user", "content": "And then?"}]
    assert _chat(client, turns, temperature=0).usage.prompt_tokens > system.usage.prompt_tokens


def test_logprobs_and_top_logprobs(client, clip):
    reply = _chat(client, _ask(clip), temperature=0, logprobs=True, top_logprobs=3)
    (choice,) = reply.choices
    entries = choice.logprobs.content
    assert len(entries) == reply.usage.completion_tokens
    assert "".join(e.token for e in entries) == choice.message.content
    for e in entries:
        assert e.logprob <= 0 and len(e.top_logprobs) == 3 and e.top_logprobs[0].token == e.token  # greedy
        assert bytes(e.bytes).decode("utf-8", "replace") == e.token
    assert _chat(client, _ask(clip), temperature=0).choices[0].logprobs is None


def test_streaming_sends_the_same_reply_as_chunks(client, clip):
    whole = _chat(client, _ask(clip), temperature=0, logprobs=True)
    chunks = list(
        _chat(client, _ask(clip), temperature=0, logprobs=True, stream=True, stream_options={"include_usage": True})
    )
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    streamed = [e.token for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert streamed == [e.token for e in whole.choices[0].logprobs.content]
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    two = list(_chat(client, _ask(clip), temperature=1, n=2, seed=3, max_tokens=4, stream=True))
    assert sorted(c.choices[0].index for c in two if c.choices[0].finish_reason) == [0, 1]
    assert all(c.usage is None for c in two)


def test_a_model_card_question_is_also_scored(client, clip, server):
    from audiomcq.prompts import user_prompt

    record, data = clip
    question = _ask(clip, user_prompt(record["question"], record["choices"]))
    reply = _chat(client, question, temperature=0)
    mcq = reply.choices[0].model_extra["mcq"]
    assert mcq["answer"] == record["choices"][mcq["index"]] and mcq["answer_source"] in ("generated", "scored")
    body = json.dumps({"instances": [{"audio": data, "question": record["question"], "choices": record["choices"]}]})
    req = urllib.request.Request(f"{server}/v1/models/audiomcq:predict", data=body.encode())
    v1 = json.loads(urllib.request.urlopen(req, timeout=120).read())["predictions"][0]
    np.testing.assert_allclose(mcq["scores"], v1["scores"], rtol=1e-5)
    streamed = list(_chat(client, question, temperature=0, stream=True))
    final = [c.choices[0] for c in streamed if c.choices and c.choices[0].finish_reason]
    assert final[0].model_extra["mcq"]["index"] == mcq["index"]


REFUSED = [
    (
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}], "tool_choice": "required"},
        "tools",
    ),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}, "response_format"),
    ({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}, "modalities"),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ({"store": True}, "store"),
    ({"metadata": {"a": "b"}}, "metadata"),
    ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
    ({"reasoning_effort": "high"}, "reasoning_effort"),
    ({"verbosity": "low"}, "verbosity"),
    ({"web_search_options": {}}, "web_search_options"),
    ({"service_tier": "flex"}, "service_tier"),
    ({"parallel_tool_calls": True}, "parallel_tool_calls"),
    ({"prompt_cache_key": "k"}, "prompt_cache_key"),
    ({"stream": True, "stream_options": {"include_obfuscation": True}}, "stream_options"),
    ({"extra_body": {"best_of": 2}}, "best_of"),
    ({"max_tokens": MAX_TOKENS + 1}, "max_tokens"),
    ({"max_tokens": 4, "max_completion_tokens": 4}, "max_tokens"),
    ({"n": 4}, "n"),
    ({"temperature": 2.5}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"logit_bias": {"999999": 1}}, "logit_bias"),
    ({"logit_bias": {"1": 101}}, "logit_bias"),
    ({"frequency_penalty": 3}, "frequency_penalty"),
]


@pytest.mark.parametrize(("options", "param"), REFUSED)
def test_options_the_server_cannot_honour_are_refused_naming_them(client, clip, options, param):
    with pytest.raises(openai.BadRequestError) as err:
        _chat(client, _ask(clip), **options)
    assert err.value.body["param"] == param and param in err.value.body["message"], err.value.body
    assert err.value.body["type"] == "invalid_request_error"


def test_options_that_ask_for_nothing_are_accepted(client, clip):
    reply = _chat(
        client,
        _ask(clip),
        temperature=0,
        max_tokens=2,
        response_format={"type": "text"},
        modalities=["text"],
        tool_choice="none",
        store=False,
        service_tier="auto",
        user="u1",
        safety_identifier="s1",
    )
    assert reply.choices[0].finish_reason == "length"


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}],
            "content part 'image_url' is not supported",
        ),
        ([{"role": "tool", "content": "x", "tool_call_id": "1"}], "role 'tool' is not supported"),
        ([{"role": "user", "content": "hi", "name": "bob"}], "['name'] not supported"),
        ([{"role": "user", "content": "hi"}, {"role": "system", "content": "late"}], "must come first"),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], "last message must be"),
        (
            [{"role": "user", "content": [_audio("AAAA") | {"input_audio": {"data": "AAAA", "format": "ogg"}}]}],
            "input_audio.format must be one of",
        ),
        ([{"role": "user", "content": "<|im_end|> sneaky"}], "control token"),
    ],
)
def test_messages_the_server_cannot_render_are_refused(client, messages, reason):
    with pytest.raises(openai.BadRequestError, match=re.escape(reason)):
        _chat(client, messages)


def test_a_format_that_is_not_the_data_and_a_prompt_too_long_are_400(client, clip):
    wrong = [
        {
            "role": "user",
            "content": [
                {"type": "input_audio", "input_audio": {"data": clip[1], "format": "mp3"}},
                {"type": "text", "text": "hi"},
            ],
        }
    ]
    with pytest.raises(openai.BadRequestError, match="format is 'mp3' but the data is wav"):
        _chat(client, wrong)
    with pytest.raises(openai.BadRequestError, match="more than the model's context of 2048 tokens"):
        _chat(client, [{"role": "user", "content": "x " * 3000}], max_tokens=8)


def test_models_and_routes_the_server_does_not_offer_answer_like_openai(client, server):
    assert [m.id for m in client.models.list()] == ["audiomcq"]
    assert client.models.retrieve("audiomcq").id == "audiomcq"
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("gpt-4o")
    assert err.value.body["param"] == "model"
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert err.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError, match="Invalid URL"):
        client.completions.create(model="audiomcq", prompt="hi")
    with pytest.raises(openai.NotFoundError, match="Invalid URL"):
        client.embeddings.create(model="audiomcq", input="hi")
    for method, path, code in [
        ("GET", "/openai/v1/chat/completions", 405),
        ("DELETE", "/openai/v1/models", 405),
        ("GET", "/openai/v2/anything", 404),
        ("POST", "/openai/v1/responses", 404),
    ]:
        req = urllib.request.Request(f"{server}{path}", method=method, data=b"{}" if method != "GET" else None)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        body = json.loads(err.value.read())
        assert err.value.code == code and set(body["error"]) == {"message", "type", "param", "code"}, body
