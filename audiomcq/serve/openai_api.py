"""The OpenAI-compatible routes under ``/openai/v1``: chat completions (plain and streamed) and models.

kserve's own OpenAI layer imports vllm, so this is a small FastAPI router of our own, mounted on kserve's app; the
vLLM runtime serves the same paths (``--root-path /openai``) under the same model name (the InferenceService's),
so a client moves between the two unchanged. What a request may ask for is in ``audiomcq.serve.chat``.

The reply is free text. When the last user turn is a model-card multiple-choice question, each choice of the reply
also carries ``mcq``: the choice it names (``answer``, ``index``, ``answer_source``: ``generated`` when the text
named it, ``scored`` when the best score chose it) and every choice's ``scores``, from the same prefill as the
text. ``usage`` counts prompt tokens with the audio's, and completion tokens with the end-of-turn token.
Streaming sends OpenAI's ``chat.completion.chunk`` events as server-sent events, ending with ``data: [DONE]``.
Every error, unknown paths under ``/openai`` included, has OpenAI's shape ``{"error": {message, type, param,
code}}``.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import soundfile as sf
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from kserve.errors import InvalidInput
from openai.types import CompletionUsage, Model

from audiomcq.serve.bounds import NotJSON, offload, parse_json
from audiomcq.serve.chat import ChatRequest, RequestError, check_texts, mcq_of, parse_chat
from audiomcq.serve.inputs import check_text, decode_audio, decode_base64
from audiomcq.serve.sampling import TokenLogprob
from audiomcq.serve.scoring import pick_answer
from audiomcq.serve.shared_pass import Delta, Job, JobResult, PromptTooLong

if TYPE_CHECKING:
    from audiomcq.serve.predictor import AudioMCQModel

PREFIX = "/openai/v1"
ROUTES = {f"{PREFIX}/chat/completions": "POST", f"{PREFIX}/models": "GET"}
SNIFFED = {"WAV": "wav", "WAVEX": "wav", "MP3": "mp3", "FLAC": "flac"}


def error(err: RequestError) -> JSONResponse:
    """An error in OpenAI's shape."""
    code = "model_not_found" if err.param == "model" and err.status == 404 else None
    body = {"error": {"message": str(err), "type": err.kind, "param": err.param, "code": code}}
    return JSONResponse(body, err.status)


def read_request(body: bytes, model: AudioMCQModel) -> ChatRequest:
    """The checked request in a body (runs off the event loop). Python's json parses it, NaN and integers past 64
    bits included, so the range checks name the parameter rather than the parser refusing the body."""
    try:
        document = parse_json(body, json.loads)
    except NotJSON as err:
        raise RequestError(str(err)) from None
    return parse_chat(document, model.name, model.config, model.defaults, model.vocab)


def decode_request(chat: ChatRequest, model: AudioMCQModel) -> ChatRequest:
    """Decode the audio and check the texts and any model-card question (runs off the event loop)."""
    config = model.config
    check_texts(chat.messages, config, model.forbidden)
    for data, fmt in chat.audio:
        raw = decode_base64("message", data, config)
        wave, seconds = decode_audio("message", raw, config, config.max_request_audio_seconds - chat.seconds)
        sniffed = SNIFFED.get(sf.info(io.BytesIO(raw)).format)
        if sniffed != fmt:
            raise RequestError(
                f"input_audio.format is {fmt!r} but the data is {sniffed or 'another format'}", param="messages"
            )
        chat.waves.append(wave)
        chat.seconds += seconds
    found = mcq_of(chat.messages)
    if found is not None:
        question, choices = check_text("message", found[0], found[1], config, model.forbidden)
        chat.mcq = (question, choices)
    return chat


def _logprobs(entries: list[TokenLogprob] | tuple[TokenLogprob, ...], top: int) -> dict[str, Any]:
    def one(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}

    content = [{**one(e.text, e.logprob), "top_logprobs": [one(t, v) for _, t, v in e.top[:top]]} for e in entries]
    return {"content": content, "refusal": None}


def _mcq(chat: ChatRequest, text: str, scores: list[float] | None) -> dict[str, Any] | None:
    if chat.mcq is None or scores is None:
        return None
    choices = chat.mcq[1]
    index, source = pick_answer(text, choices, scores)
    return {"answer": choices[index], "index": index, "answer_source": source, "scores": scores}


def completion(chat: ChatRequest, name: str, result: JobResult) -> dict[str, Any]:
    """The non-streamed reply."""
    choices = []
    for i, sample in enumerate(result.samples):
        choice: dict[str, Any] = {
            "index": i,
            "finish_reason": sample.finish_reason,
            "message": {"role": "assistant", "content": sample.text, "refusal": None},
            "logprobs": _logprobs(sample.logprobs, chat.params.top_logprobs) if chat.params.logprobs else None,
        }
        mcq = _mcq(chat, sample.text, result.scores)
        if mcq is not None:
            choice["mcq"] = mcq
        choices.append(choice)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": name,
        "choices": choices,
        "usage": _usage(result).model_dump(exclude_none=True),
    }


def _usage(result: JobResult) -> CompletionUsage:
    completion_tokens = sum(len(s.token_ids) for s in result.samples)
    return CompletionUsage(
        prompt_tokens=result.prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=result.prompt_tokens + completion_tokens,
    )


async def _stream(
    chat: ChatRequest, name: str, first: Delta, queue: asyncio.Queue, task: asyncio.Task, job: Job
) -> AsyncIterator[bytes]:
    """Server-sent events for a running job: a role chunk per choice, content chunks, finish chunks, usage."""
    head = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": name,
    }
    if chat.include_usage:
        head["usage"] = None

    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return f"data: {json.dumps({**head, 'choices': choices, **extra})}\n\n".encode()

    finished: dict[int, Delta] = {}
    try:
        for i in range(chat.params.n):
            yield event(
                [{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None, "logprobs": None}]
            )
        delta: Delta | None = first
        while delta is not None:
            if delta.text or delta.logprobs:
                probs = _logprobs(delta.logprobs, chat.params.top_logprobs) if chat.params.logprobs else None
                yield event(
                    [
                        {
                            "index": delta.sample,
                            "delta": {"content": delta.text},
                            "finish_reason": None,
                            "logprobs": probs,
                        }
                    ]
                )
            if delta.finish_reason is not None:
                finished[delta.sample] = delta
            delta = None if len(finished) == chat.params.n else await queue.get()
        result: JobResult = await task
        for i, sample in enumerate(result.samples):
            choice = {"index": i, "delta": {}, "finish_reason": sample.finish_reason, "logprobs": None}
            mcq = _mcq(chat, sample.text, result.scores)
            if mcq is not None:
                choice["mcq"] = mcq
            yield event([choice])
        if chat.include_usage:
            yield event([], usage=_usage(result).model_dump(exclude_none=True))
        yield b"data: [DONE]\n\n"
    except asyncio.CancelledError:
        raise
    except Exception as err:  # noqa: BLE001 - the stream has started: say in the stream itself that it failed
        body = {
            "error": {
                "message": f"generation failed: {type(err).__name__}",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }
        yield f"data: {json.dumps(body)}\n\n".encode()
    finally:
        job.cancelled.set()  # a client that went away stops its rows at the next step


def _not_found(request: Request) -> JSONResponse:
    path = request.url.path
    allowed = ROUTES.get(path) or ("GET" if path.startswith(f"{PREFIX}/models/") else None)
    if allowed and request.method != allowed:
        err = RequestError(f"{request.method} is not allowed on {path} (use {allowed})", 405)
        return error(err)
    offered = ", ".join(f"{m} {p}" for p, m in ROUTES.items())
    return error(
        RequestError(
            f"Invalid URL ({request.method} {path}); this server offers {offered} and GET {PREFIX}/models/{{model}}",
            404,
            "invalid_request_error",
        )
    )


def openai_router(model: AudioMCQModel) -> APIRouter:
    """The OpenAI-compatible routes answering with ``model``."""
    router = APIRouter()

    def card() -> dict[str, Any]:
        return Model(id=model.name, created=model.created, object="model", owned_by="audiomcq").model_dump()

    @router.get(f"{PREFIX}/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [card()]}

    @router.get(f"{PREFIX}/models/{{model_id:path}}")
    async def retrieve_model(model_id: str) -> JSONResponse:
        if model_id != model.name:
            return error(
                RequestError(
                    f"The model {model_id!r} does not exist (this server has {model.name!r})",
                    404,
                    "invalid_request_error",
                    "model",
                )
            )
        return JSONResponse(card())

    @router.post(f"{PREFIX}/chat/completions")
    async def chat_completions(request: Request) -> Any:
        if not model.ready:
            return error(RequestError(f"model {model.name} is not ready", 503, "service_unavailable"))
        try:
            chat = await offload(read_request, await request.body(), model)
            chat = await model.parse(lambda: decode_request(chat, model))
        except RequestError as err:
            return error(err)
        except InvalidInput as err:
            return error(RequestError(str(err), param="messages"))
        job = model.chat_job(chat)
        if not chat.stream:
            try:
                result = await model.run(job)
            except PromptTooLong as err:
                return error(RequestError(str(err), param="max_tokens"))
            return JSONResponse(completion(chat, model.name, result))
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Delta] = asyncio.Queue()
        job.sink = lambda delta: loop.call_soon_threadsafe(queue.put_nowait, delta)
        task = asyncio.create_task(model.run(job))
        getter = asyncio.create_task(queue.get())
        await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
        if not getter.done():  # the job ended before its first token: an error, or nothing to stream
            getter.cancel()
            try:
                result = await task
            except PromptTooLong as err:
                return error(RequestError(str(err), param="max_tokens"))
            first = Delta(0, "", (), result.samples[0].finish_reason if result.samples else "stop")
            for i in range(1, chat.params.n):
                queue.put_nowait(Delta(i, "", (), "stop"))
        else:
            first = getter.result()
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        body = _stream(chat, model.name, first, queue, task, job)
        return StreamingResponse(body, media_type="text/event-stream", headers=headers)

    @router.api_route("/openai/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
    async def unknown(request: Request) -> JSONResponse:
        return _not_found(request)

    return router
