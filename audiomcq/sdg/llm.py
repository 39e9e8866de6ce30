"""The LLM behind dataset generation: an OpenAI-compatible chat endpoint (a vLLM or KServe server in the cluster)
or a local transformers model, with a response cache, a concurrency limit, a request-rate limit and accounting.

Every reply is cached (a local directory or an ``s3://`` prefix) under a key of (model, messages, sampling
parameters), so a restarted or repeated run pays for nothing twice; the accounting counts requests, cache hits,
failures and tokens per step. The endpoint's key is read from the environment variable the spec names and never
logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from audiomcq.errors import AudioMCQError
from audiomcq.jsonio import atomic_writer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LLMSpec:
    """Which LLM, and how hard to push it."""

    backend: str = "template"  # template (no LLM) | openai | transformers
    model: str = ""  # served model name (openai) or model directory (transformers)
    base_url: str | None = None  # e.g. http://vllm.llm.svc:8000/v1
    api_key_env: str | None = None  # name of the variable holding the key (from a Kubernetes Secret)
    concurrency: int = 8
    requests_per_second: float | None = None
    timeout: float = 120.0
    retries: int = 4
    temperature: float = 0.7
    max_tokens: int = 1024
    seed: int = 0

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> LLMSpec:
        unknown = set(cfg) - set(cls.__dataclass_fields__)
        if unknown:
            raise AudioMCQError(f"unknown llm setting(s) {sorted(unknown)}")
        from audiomcq.config import whole_numbers

        return cls(**whole_numbers(cls, cfg))


class RateLimiter:
    """At most ``rate`` request starts per second across threads (None: unlimited)."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.next = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next)
            self.next = start + self.interval
        time.sleep(max(0.0, start - now))


class ResponseCache:
    """Replies by request key, in a local directory or under an ``s3://`` prefix (shared by every shard and rerun)."""

    def __init__(self, where: str | Path) -> None:
        from audiomcq.infra import storage

        self.where = str(where).rstrip("/")
        self.s3 = storage.is_s3(where)
        if self.s3:
            self.bucket, self.prefix = storage.split(self.where)
            self.client = storage.client()

    def _name(self, key: str) -> str:
        return f"{key[:2]}/{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        if not self.s3:
            path = Path(self.where) / self._name(key)
            return json.loads(path.read_text()) if path.is_file() else None
        from minio.error import S3Error

        from audiomcq.infra.storage import reaching

        with reaching(self.where, "cache read"):
            try:
                resp = self.client.get_object(self.bucket, f"{self.prefix}/{self._name(key)}".lstrip("/"))
            except S3Error as err:
                if err.code == "NoSuchKey":
                    return None
                raise
        try:
            return json.loads(resp.read())
        finally:
            resp.close()
            resp.release_conn()

    def put(self, key: str, entry: dict[str, Any]) -> None:
        if not self.s3:
            with atomic_writer(Path(self.where) / self._name(key)) as f:
                json.dump(entry, f)
            return
        import io

        from audiomcq.infra.storage import reaching

        data = json.dumps(entry).encode()  # one PUT: an object is either all there or absent
        with reaching(self.where, "cache write"):
            self.client.put_object(
                self.bucket, f"{self.prefix}/{self._name(key)}".lstrip("/"), io.BytesIO(data), len(data)
            )


class LLM:
    """``chat(step, messages)`` -> reply text, cached; thread-safe; ``accounting`` per step."""

    def __init__(self, spec: LLMSpec, cache_dir: str | Path | None) -> None:
        if spec.backend not in ("openai", "transformers"):
            raise AudioMCQError(f"LLM backend {spec.backend!r} takes no requests (known: openai, transformers)")
        self.spec = spec
        self.cache = ResponseCache(cache_dir) if cache_dir else None
        self.limiter = RateLimiter(spec.requests_per_second)
        self.slots = threading.BoundedSemaphore(max(1, spec.concurrency))
        self.lock = threading.Lock()
        self.accounting: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._local: Any = None
        if spec.backend == "openai":
            if not spec.base_url:
                raise AudioMCQError("the openai LLM backend needs base_url (e.g. http://vllm:8000/v1)")
            from audiomcq.infra.http import json_headers

            self.headers = json_headers(spec.api_key_env)

    def params(self) -> dict[str, Any]:
        s = self.spec
        return {"temperature": s.temperature, "max_tokens": s.max_tokens, "seed": s.seed}

    def key(self, messages: list[dict[str, str]]) -> str:
        blob = json.dumps([self.spec.model, messages, self.params()], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def chat(self, step: str, messages: list[dict[str, str]], tally: dict[str, dict[str, int]] | None = None) -> str:
        """The reply to ``messages``, from the cache when this exact request was answered before; ``tally`` (per
        step) also counts this call, so a caller can keep what one item cost beside that item."""
        key = self.key(messages)
        hit = self.cache.get(key) if self.cache else None
        if hit is not None:
            self._count(step, tally, cache_hits=1)
            return hit["text"]
        with self.slots:
            self.limiter.wait()
            try:
                text, usage = self._call(messages)
            except AudioMCQError:
                self._count(step, tally, requests=1, failures=1)
                raise
        self._count(
            step,
            tally,
            requests=1,
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
        )
        if self.cache:
            self.cache.put(key, {"text": text, "usage": usage, "spec": asdict(self.spec) | {"api_key_env": None}})
        return text

    def _count(self, step: str, tally: dict[str, dict[str, int]] | None = None, **counts: int) -> None:
        with self.lock:
            for name, n in counts.items():
                self.accounting[step][name] += n
                if tally is not None:
                    tally.setdefault(step, {})
                    tally[step][name] = tally[step].get(name, 0) + n

    def _call(self, messages: list[dict[str, str]]) -> tuple[str, dict[str, int]]:
        if self.spec.backend == "openai":
            from audiomcq.infra.http import post_json

            body = {"model": self.spec.model, "messages": messages, **self.params()}
            url = self.spec.base_url.rstrip("/") + "/chat/completions"  # type: ignore[union-attr]
            reply = post_json(url, body, self.headers, timeout=self.spec.timeout, retries=self.spec.retries)
            try:
                return reply["choices"][0]["message"]["content"] or "", reply.get("usage") or {}
            except (KeyError, IndexError, TypeError) as err:
                raise AudioMCQError(f"{url}: not a chat-completions reply: {str(reply)[:200]}") from err
        return self._transformers(messages)

    def _transformers(self, messages: list[dict[str, str]]) -> tuple[str, dict[str, int]]:
        """A local causal LM with a chat template (one request at a time: the semaphore is per process)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        with self.lock:
            if self._local is None:
                tok = AutoTokenizer.from_pretrained(self.spec.model)
                self._local = (tok, AutoModelForCausalLM.from_pretrained(self.spec.model).eval())
        tok, model = self._local
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        torch.manual_seed(self.spec.seed)
        sample = self.spec.temperature > 0
        with torch.inference_mode():
            out = model.generate(
                **ids,
                max_new_tokens=self.spec.max_tokens,
                do_sample=sample,
                temperature=self.spec.temperature if sample else None,
            )
        new = out[0, ids["input_ids"].shape[1] :]
        usage = {"prompt_tokens": int(ids["input_ids"].shape[1]), "completion_tokens": int(new.shape[0])}
        return tok.decode(new, skip_special_tokens=True), usage
