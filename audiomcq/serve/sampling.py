"""Choosing the next token for each row of a decoding batch, with per-request settings, and reporting logprobs.

Requests with different settings share one forward, so every setting applies per row group (one request's ``n``
rows) rather than per batch: penalties, ``logit_bias``, temperature, top-k and top-p, and a random generator of its
own (seeded by ``seed`` when given), so a seeded request repeats its sample and other requests in its batch cannot
shift it. Temperature 0 is greedy. Reported logprobs are the model's own distribution, before any of these settings
change it, so they say what the model believed rather than what the sampler did with it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GenParams:
    """How one request is decoded; the defaults are greedy decoding of at most ``max_tokens`` tokens."""

    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    n: int = 1
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: tuple[tuple[int, float], ...] = ()

    @property
    def greedy(self) -> bool:
        """Whether the next token is always the most likely one (no randomness at all)."""
        return self.temperature == 0


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token with its logprob and, when asked, the most likely alternatives at its position."""

    token_id: int
    text: str
    logprob: float
    top: tuple[tuple[int, str, float], ...] = ()


@dataclass
class RowGroup:
    """The rows of one request in the running batch, with what its settings need to remember between steps."""

    params: GenParams
    rows: list[int]
    generator: Any = None
    prompt_seen: Any = None  # bool [rows, vocab]: tokens present in the prompt (repetition_penalty)
    counts: Any = None  # float [rows, vocab]: how often each token was generated (frequency/presence penalty)
    bias: Any = field(default=None, repr=False)

    def setup(self, vocab: int, prompt_ids: Any, device: Any) -> None:
        """Allocate what the settings need: a generator, token counts, the prompt's tokens, the bias vector."""
        import torch

        p = self.params
        if not p.greedy:
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(p.seed if p.seed is not None else secrets.randbits(63))
        if p.frequency_penalty or p.presence_penalty or p.repetition_penalty != 1:
            self.counts = torch.zeros(len(self.rows), vocab, device=device)
        if p.repetition_penalty != 1:
            seen = torch.zeros(len(self.rows), vocab, dtype=torch.bool, device=device)
            ids = prompt_ids.clamp(0, vocab - 1)
            self.prompt_seen = seen.scatter(1, ids, True)
        if p.logit_bias:
            self.bias = torch.zeros(vocab, device=device)
            for token, value in p.logit_bias:
                self.bias[token] = value

    def shape(self, logits: Any) -> Any:
        """The group's logits after penalties and bias (``logits``: float [rows, vocab], not modified)."""
        import torch

        p = self.params
        out = logits
        if self.counts is not None and p.repetition_penalty != 1:
            seen = self.prompt_seen | (self.counts > 0)
            scaled = torch.where(out > 0, out / p.repetition_penalty, out * p.repetition_penalty)
            out = torch.where(seen, scaled, out)
        if self.counts is not None and (p.frequency_penalty or p.presence_penalty):
            out = out - p.frequency_penalty * self.counts - p.presence_penalty * (self.counts > 0).float()
        if self.bias is not None:
            out = out + self.bias
        return out

    def choose(self, logits: Any) -> Any:
        """One token id per row of the group (``logits`` already shaped)."""
        import torch

        p = self.params
        if p.greedy:
            return logits.argmax(dim=-1)
        scaled = logits / p.temperature
        if p.top_k > 0 and p.top_k < scaled.shape[-1]:
            kth = torch.topk(scaled, p.top_k, dim=-1).values[:, -1:]
            scaled = scaled.masked_fill(scaled < kth, float("-inf"))
        if p.top_p < 1:
            ordered, order = torch.sort(scaled, dim=-1, descending=True)
            probs = torch.softmax(ordered, dim=-1)
            before = probs.cumsum(dim=-1) - probs  # mass of the more likely tokens: keep while it is under top_p
            ordered = ordered.masked_fill(before >= p.top_p, float("-inf"))
            scaled = torch.full_like(scaled, float("-inf")).scatter(-1, order, ordered)
        probs = torch.softmax(scaled, dim=-1)
        return torch.multinomial(probs, 1, generator=self.generator)[:, 0]

    def record(self, chosen: Any) -> None:
        """Count the tokens just generated, for the penalties of the next steps."""
        if self.counts is not None:
            self.counts[range(len(self.rows)), chosen] += 1

    def keep(self, local: list[int]) -> None:
        """Keep only the group's rows at ``local`` positions (the others finished)."""
        if self.counts is not None:
            self.counts = self.counts[local]
        if self.prompt_seen is not None:
            self.prompt_seen = self.prompt_seen[local]


def token_logprobs(tokenizer: Any, logprobs: Any, chosen: list[int], top: int) -> list[TokenLogprob]:
    """The chosen tokens' logprobs (``logprobs``: float [rows, vocab], log-softmax of the model's logits)."""
    import torch

    out = []
    best = torch.topk(logprobs, top, dim=-1) if top else None
    for row, token in enumerate(chosen):
        alternatives: tuple[tuple[int, str, float], ...] = ()
        if best is not None:
            ids, values = best.indices[row].tolist(), best.values[row].tolist()
            alternatives = tuple((i, tokenizer.decode([i]), v) for i, v in zip(ids, values, strict=True))
        out.append(TokenLogprob(token, tokenizer.decode([token]), float(logprobs[row, token]), alternatives))
    return out


class TextTracker:
    """The text of one row as its tokens arrive: what may be sent so far, and where a stop string ends it.

    Text that could still turn into a stop string, or that ends inside a multi-byte character, is held back, so a
    streamed reply never shows a stop string (OpenAI semantics: the stop sequence is not part of the content).
    """

    def __init__(self, tokenizer: Any, stop: tuple[str, ...]) -> None:
        self.tokenizer, self.stop = tokenizer, stop
        self.ids: list[int] = []
        self.text = ""
        self.sent = 0
        self.stopped = False

    def push(self, token: int) -> str:
        """Add a token; the new text that is safe to send now (empty while held back)."""
        self.ids.append(token)
        full = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        for s in self.stop:
            at = full.find(s)
            if at >= 0:
                full, self.stopped = full[:at], True
        self.text = full
        if self.stopped:
            return self.flush()
        safe = len(full)
        if full.endswith("\ufffd"):
            safe -= 1
        for s in self.stop:
            for k in range(min(len(s) - 1, len(full)), 0, -1):
                if full.endswith(s[:k]):
                    safe = min(safe, len(full) - k)
                    break
        delta = full[self.sent : max(safe, self.sent)]
        self.sent += len(delta)
        return delta

    def flush(self) -> str:
        """Whatever is still held back (the row has finished)."""
        delta = self.text[self.sent :]
        self.sent = len(self.text)
        return delta
