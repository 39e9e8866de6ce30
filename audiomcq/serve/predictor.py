"""The KServe predictor: V1 ``:predict``, V2 ``/infer`` and the OpenAI-compatible chat route over one batched model.

The checkpoint (a directory or an ``s3://`` prefix, fetched once) loads before the server listens, so every kserve
health and readiness route reports ready only once the model can answer. Requests are validated on the decoding pool
(``audiomcq.serve.bounds``), never on the event loop; their jobs then join the micro-batcher, whose forward encodes
each prompt and its audio once and both scores the choices and decodes the reply from that prefill
(``audiomcq.serve.shared_pass``). With ``--shared-pass false`` the choices are scored by re-encoding prompt and audio
per choice instead, the reference path the shared pass is measured against.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import kserve
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kserve.errors import InvalidInput, ModelNotReady
from kserve.protocol.infer_type import InferRequest

from audiomcq.serve import metrics
from audiomcq.serve.batcher import MicroBatcher
from audiomcq.serve.bounds import offload
from audiomcq.serve.chat import ChatRequest
from audiomcq.serve.config import ServeConfig
from audiomcq.serve.inputs import Question, parse_v1
from audiomcq.serve.sampling import GenParams
from audiomcq.serve.scoring import Answer, pick_answer, prompt_scores
from audiomcq.serve.shared_pass import Job, JobResult, PromptTooLong, run_jobs
from audiomcq.serve.v2 import INPUT_TYPES, OUTPUT_TYPES, parse_v2, v2_response

log = logging.getLogger(__name__)
DEFAULTED = ("temperature", "top_p", "top_k", "repetition_penalty")  # generation_config keys vLLM also defaults from


class AudioMCQModel(kserve.Model):
    """A KServe model answering audio multiple-choice questions and audio chat with a post-trained checkpoint."""

    def __init__(self, name: str, model_dir: str, config: ServeConfig | None = None) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.config = config or ServeConfig()
        self.created = int(time.time())
        self.forbidden: tuple[str, ...] = ()
        self.defaults: dict[str, Any] = {}
        self.vocab = 0
        self.context = 0
        self._loaded: Any = None
        self._batcher: MicroBatcher[Job, Any] | None = None

    def load(self) -> bool:
        """Fetch (for ``s3://``) and load the checkpoint once; only then is the model ready."""
        from audiomcq.infra.storage import local_model
        from audiomcq.models import load_model

        device = self.config.device
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._loaded = load_model(local_model(self.model_dir), dtype=self.config.dtype, device=device)
        model, tok = self._loaded.model, self._loaded.processor.tokenizer
        self.forbidden = tuple(sorted(set(tok.all_special_tokens) | set(tok.get_added_vocab()), key=len, reverse=True))
        given = model.generation_config.to_diff_dict()
        self.defaults = {k: given[k] for k in DEFAULTED if given.get(k) is not None}
        self.vocab = model.lm_head.out_features
        self.context = model.config.get_text_config().max_position_embeddings
        self._batcher = MicroBatcher(
            self._forward, self.config.max_batch_size, self.config.max_wait_ms, metrics.BATCH_SIZE.observe
        )
        self.created = int(time.time())
        self.ready = True
        log.info("loaded %s from %s (%s on %s)", self.name, self.model_dir, self._loaded.family, device)
        return self.ready

    def get_input_types(self) -> list[dict]:
        return INPUT_TYPES

    def get_output_types(self) -> list[dict]:
        return OUTPUT_TYPES

    def _forward(self, jobs: list[Job]) -> list[Any]:
        """One batch of jobs (runs on the batcher's thread): a ``JobResult`` or a ``PromptTooLong`` each."""
        model, processor = self._loaded.model, self._loaded.processor
        shared = self.config.shared_pass
        results = run_jobs(model, processor, jobs, self.context, score=shared)
        if not shared:
            scored = [(k, j) for k, j in enumerate(jobs) if j.choices and isinstance(results[k], JobResult)]
            items = [(j.text, j.choices, j.waves) for _, j in scored]
            for (k, _), s in zip(scored, prompt_scores(model, processor, items) if items else [], strict=True):
                results[k].scores = s
        return results

    def render(self, messages: list[dict[str, Any]]) -> str:
        """The chat-template text of a conversation, up to the assistant's turn."""
        return self._loaded.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def chat_job(self, chat: ChatRequest) -> Job:
        """The job answering a checked chat request (choices scored when it asks a model-card question)."""
        return Job(self.render(chat.messages), chat.waves, chat.params, chat.mcq[1] if chat.mcq else ())

    async def parse(self, check: Callable[[], Any]) -> Any:
        """Run a request check (base64 and audio decoding, URL fetches) on the decoding pool, off the event loop."""
        return await offload(check)

    async def run(self, job: Job) -> JobResult:
        """A job's result, batched with whatever else is in flight; ``PromptTooLong`` when it does not fit."""
        if self._batcher is None:
            raise ModelNotReady(self.name)
        (result,) = await self._batcher.submit([job])
        if isinstance(result, PromptTooLong):
            raise result
        return result

    def question_job(self, q: Question) -> Job:
        """A V1/V2 question: the model-card prompt, greedy decoding (with the checkpoint's repetition penalty, as
        transformers' generate applies it), and its choices to score."""
        from audiomcq.models.batch import prompt_text

        params = GenParams(self.config.max_new_tokens, repetition_penalty=self.defaults.get("repetition_penalty", 1.0))
        return Job(prompt_text(self._loaded.processor, q.question, q.choices), [q.wave], params, q.choices)

    async def answer(self, questions: list[Question]) -> list[Answer]:
        """Answers for checked questions, batched with whatever else is in flight."""
        if self._batcher is None:
            raise ModelNotReady(self.name)
        results = await self._batcher.submit([self.question_job(q) for q in questions])
        answers = []
        for q, r in zip(questions, results, strict=True):
            if isinstance(r, PromptTooLong):
                raise InvalidInput(str(r))
            raw, scores = r.samples[0].text, r.scores or []
            index, source = pick_answer(raw, q.choices, scores)
            answers.append(Answer(q.choices[index], index, raw, scores, source))
        metrics.record_answers([q.seconds for q in questions], [a.index for a in answers])
        return answers

    async def predict(self, payload: Any, headers: Any = None, response_headers: Any = None) -> Any:
        """V1 (a dict) or V2 (an ``InferRequest``), answered in the protocol it came in."""
        if isinstance(payload, InferRequest):
            questions = await self.parse(lambda: parse_v2(payload, self.config, self.forbidden))
            return v2_response(payload, self.name, await self.answer(questions))
        questions = await self.parse(lambda: parse_v1(payload, self.config, self.forbidden))
        answers = await self.answer(questions)
        return {"predictions": [asdict(a) for a in answers]}


async def _validation_error(_: Any, exc: Exception) -> JSONResponse:
    """FastAPI's default 422 echoes the offending input, and an Infinity in it (Python's JSON accepts one) makes
    rendering fail with a 500; the locations and messages alone say what is wrong."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    reasons = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in errors)
    return JSONResponse({"error": f"invalid request: {reasons}"}, status_code=422)


def serve(model_dir: str, name: str = "audiomcq", http_port: int = 8080, config: ServeConfig | None = None) -> None:
    """Load the model, mount our routes and middleware on kserve's app, and serve on ``config.host:http_port``
    (blocks)."""
    from kserve.logging import logger as kserve_logger
    from kserve.model_server import app

    from audiomcq.serve.bounds import BodyLimit
    from audiomcq.serve.guard import ClientErrorsAtInfo, RequestGuard
    from audiomcq.serve.listener import BoundedModelServer
    from audiomcq.serve.openai_api import openai_router
    from audiomcq.serve.v1_http import v1_router
    from audiomcq.serve.v2_http import v2_router

    kserve_logger.addFilter(ClientErrorsAtInfo())
    config = config or ServeConfig()
    model = AudioMCQModel(name, model_dir, config)
    model.load()
    server = BoundedModelServer(http_port, config)
    app.add_exception_handler(RequestValidationError, _validation_error)
    # Added inside out: the metrics see every answer (the limit's 413s and the guard's 404s included) and every
    # client that went away, and the body limit bounds what every route reads.
    app.add_middleware(RequestGuard)
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes, timeout_s=config.body_timeout_s)
    app.add_middleware(metrics.MetricsMiddleware)
    app.include_router(v1_router(server.dataplane))  # ahead of kserve's own routes for the same paths
    app.include_router(v2_router(server.dataplane, config))
    app.include_router(openai_router(model))
    server.start([model])
