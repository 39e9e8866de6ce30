"""The KServe predictor: V1 ``:predict``, V2 ``/infer`` and the OpenAI-compatible chat route over one batched model.

The checkpoint (a directory or an ``s3://`` prefix, fetched once) loads before the server listens, so every
kserve health and readiness route reports ready only once the model can answer. Requests are validated on the
event loop's worker threads; their questions then join the micro-batcher, whose forward generates the raw answers
with the transformers engine (``audiomcq.inference``; identical clips share one encoded audio prefix) and scores
every choice (``audiomcq.serve.scoring``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import kserve
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kserve.errors import ModelNotReady
from kserve.protocol.infer_type import InferRequest

from audiomcq.serve import metrics
from audiomcq.serve.batcher import MicroBatcher
from audiomcq.serve.config import ServeConfig
from audiomcq.serve.inputs import Question, parse_v1
from audiomcq.serve.scoring import Answer, choice_scores, pick_answer
from audiomcq.serve.v2 import INPUT_TYPES, OUTPUT_TYPES, parse_v2, v2_response

log = logging.getLogger(__name__)


class AudioMCQModel(kserve.Model):
    """A KServe model answering audio multiple-choice questions with a post-trained checkpoint."""

    def __init__(self, name: str, model_dir: str, config: ServeConfig | None = None) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.config = config or ServeConfig()
        self.created = int(time.time())
        self.forbidden: tuple[str, ...] = ()
        self._engine: Any = None  # not ``engine``: kserve reads that attribute as "start an engine task"
        self._batcher: MicroBatcher[Question, Answer] | None = None

    def load(self) -> bool:
        """Fetch (for ``s3://``) and load the checkpoint once; only then is the model ready."""
        from audiomcq.inference import EngineSpec
        from audiomcq.inference.hf import TransformersEngine
        from audiomcq.storage import local_model

        path = local_model(self.model_dir)
        spec = EngineSpec(path=path, dtype=self.config.dtype, batch_size=self.config.max_batch_size)
        self._engine = TransformersEngine(spec)
        device = self.config.device
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._engine.loaded.model.to(device)  # generation, prefix sharing and scoring all follow model.device
        tok = self._engine.loaded.processor.tokenizer
        self.forbidden = tuple(sorted(set(tok.all_special_tokens) | set(tok.get_added_vocab()), key=len, reverse=True))
        self._batcher = MicroBatcher(
            self._forward, self.config.max_batch_size, self.config.max_wait_ms, metrics.BATCH_SIZE.observe
        )
        self.created = int(time.time())
        self.ready = True
        log.info("loaded %s from %s (%s on %s)", self.name, self.model_dir, self._engine.loaded.family, device)
        return self.ready

    def get_input_types(self) -> list[dict]:
        return INPUT_TYPES

    def get_output_types(self) -> list[dict]:
        return OUTPUT_TYPES

    def _forward(self, questions: list[Question]) -> list[Answer]:
        """One batch: greedy raw answers and per-choice scores (runs on the batcher's thread)."""
        from audiomcq.inference import Request, Sampling

        requests = [Request(q.question, q.choices, q.wave) for q in questions]
        raws = [r[0] for r in self._engine.generate(requests, Sampling(max_new_tokens=self.config.max_new_tokens))]
        loaded = self._engine.loaded
        scores = choice_scores(loaded.model, loaded.processor, [(q.question, q.choices, q.wave) for q in questions])
        answers = []
        for q, raw, s in zip(questions, raws, scores, strict=True):
            index = pick_answer(raw, q.choices, s)
            answers.append(Answer(answer=q.choices[index], index=index, raw=raw, scores=s))
        return answers

    async def parse(self, check: Callable[[], Any]) -> Any:
        """Run a request check (base64 and audio decoding, URL fetches) off the event loop."""
        return await asyncio.to_thread(check)

    async def answer(self, questions: list[Question]) -> list[Answer]:
        """Answers for checked questions, batched with whatever else is in flight."""
        if self._batcher is None:
            raise ModelNotReady(self.name)
        answers = await self._batcher.submit(questions)
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
    """Load the model, mount our routes and metrics on kserve's app, and serve on ``http_port`` (blocks)."""
    from kserve.logging import logger as kserve_logger
    from kserve.model_server import app

    from audiomcq.serve.guard import BinaryV2Guard, ClientErrorsAtInfo
    from audiomcq.serve.openai_api import openai_router

    kserve_logger.addFilter(ClientErrorsAtInfo())

    model = AudioMCQModel(name, model_dir, config)
    model.load()
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(BinaryV2Guard)
    app.add_middleware(metrics.MetricsMiddleware)  # added last, so outside the guard: its 400s are counted too
    app.include_router(openai_router(model))
    kserve.ModelServer(http_port=http_port, enable_grpc=False).start([model])
