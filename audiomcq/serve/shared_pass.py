"""One audio pass per request: a prefill of audio + prompt whose KV cache serves both generation and choice scoring.

Scoring a multiple-choice question asks for log P(``<answer>choice</answer>`` + end of turn | prompt, audio) for
each of its K choices. Every one of those K rows starts with the same prompt and the same audio, which is also what
generation starts from, so the prompt is encoded once (audio encoder included): the K continuations are scored in
one batched forward over copies of the prefill's cache, and generation then decodes from that same cache. The
continuation of a row takes the positions the prompt's last token was followed by in a one-pass forward (Omni's
3-D text positions continue after the largest one; Qwen2-Audio's count the real tokens), so the scores equal those
of a forward over prompt + target in float tolerance (tested for both families).

Decoding runs all rows of the batch in lock step, each request with its own settings (``audiomcq.serve.sampling``);
rows that finish leave the batch (their cache rows are dropped), and a ``sink`` receives each row's tokens as they
come, for streaming. Only public transformers API is used: ``DynamicCache`` copies and ``batch_select_indices``.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audiomcq.audio import SR
from audiomcq.serve.sampling import GenParams, RowGroup, TextTracker, TokenLogprob, token_logprobs

log = logging.getLogger(__name__)
SCORE_ROWS = 32  # continuation rows per scoring forward: each holds a copy of its prompt's cache


@dataclass(frozen=True)
class Delta:
    """What a streaming sink receives: new text (and its tokens' logprobs) for one sample, or its end."""

    sample: int
    text: str
    logprobs: tuple[TokenLogprob, ...] = ()
    finish_reason: str | None = None


@dataclass
class Job:
    """One request for the model: a rendered prompt (audio placeholders included), its clips, how to decode, and
    the choices to score from the same prefill (none for free-form chat)."""

    text: str
    waves: list[np.ndarray]
    params: GenParams
    choices: tuple[str, ...] = ()
    sink: Callable[[Delta], None] | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass
class Sample:
    """One completion: its text, its tokens (end-of-turn included), why it ended, and logprobs when asked."""

    text: str
    token_ids: list[int]
    finish_reason: str
    logprobs: list[TokenLogprob] = field(default_factory=list)


@dataclass
class JobResult:
    """A job's completions, its prompt length in tokens (audio included), and its choice scores (if any)."""

    samples: list[Sample]
    prompt_tokens: int
    scores: list[float] | None = None


class PromptTooLong(ValueError):
    """The prompt plus the tokens asked for do not fit the model's context."""


@dataclass
class Prefill:
    """The prompt batch after one forward: cache, mask, the next text position and next-token logits per row."""

    cache: Any
    mask: Any
    next_pos: Any
    logits: Any
    ids: Any


def _end_ids(model: Any, tokenizer: Any) -> set[int]:
    configured = model.generation_config.eos_token_id
    ids = set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def _three_d(model: Any) -> bool:
    """Whether the model takes Omni's (time, height, width) text positions."""
    return hasattr(model, "get_rope_index")


def _positions(model: Any, pos: Any) -> Any:
    """Positions [rows, length] as the model takes them."""
    return pos.unsqueeze(0).expand(3, -1, -1) if _three_d(model) else pos


def prefill(model: Any, processor: Any, texts: Sequence[str], waves: Sequence[np.ndarray]) -> Prefill:
    """One forward over left-padded prompts (``waves``: the clips of every prompt, in order)."""
    import torch

    kwargs: dict[str, Any] = {"audio": list(waves), "sampling_rate": SR} if waves else {}
    enc = processor(text=list(texts), padding=True, padding_side="left", return_tensors="pt", **kwargs)
    enc = enc.to(model.device)
    mask = enc["attention_mask"]
    if _three_d(model):
        lengths = enc["feature_attention_mask"].sum(-1) if "feature_attention_mask" in enc else None
        pos, _ = model.get_rope_index(enc["input_ids"], None, None, mask, False, lengths)
        next_pos = pos.amax(dim=(0, 2)) + 1
    else:
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        next_pos = mask.sum(-1)
    with torch.inference_mode():
        out = model.model(**enc, position_ids=pos, use_cache=True)
        logits = model.lm_head(out.last_hidden_state[:, -1]).float()
    cache = getattr(out, "cache", None) or out.past_key_values
    return Prefill(cache, mask, next_pos, logits, enc["input_ids"])


def score_continuations(model: Any, pre: Prefill, rows: Sequence[int], targets: Sequence[list[int]]) -> list[float]:
    """log P(target | prompt row) for each (prefill row, target token ids) pair, from copies of the prefill cache."""
    import torch

    out: list[float] = []
    for start in range(0, len(rows), SCORE_ROWS):
        idx = torch.tensor(list(rows[start : start + SCORE_ROWS]), device=pre.mask.device)
        chunk = targets[start : start + SCORE_ROWS]
        width = max(len(t) for t in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long, device=idx.device)
        cmask = torch.zeros_like(ids)
        for r, t in enumerate(chunk):
            ids[r, : len(t)] = torch.tensor(t)
            cmask[r, : len(t)] = 1
        cache = copy.deepcopy(pre.cache)
        cache.batch_select_indices(idx)
        pos = pre.next_pos[idx, None] + torch.arange(width, device=idx.device)
        with torch.inference_mode():
            hidden = model.model(
                input_ids=ids,
                attention_mask=torch.cat([pre.mask[idx], cmask], dim=1),
                position_ids=_positions(model, pos),
                cache=cache,
                use_cache=True,
            ).last_hidden_state
            first = torch.log_softmax(pre.logits[idx], dim=-1)
            for r, t in enumerate(chunk):
                total = float(first[r, t[0]])
                if len(t) > 1:
                    rest = torch.log_softmax(model.lm_head(hidden[r, : len(t) - 1]).float(), dim=-1)
                    total += float(rest.gather(-1, ids[r, 1 : len(t), None]).sum())
                out.append(total)
    return out


def choice_targets(tokenizer: Any, choices: Sequence[str]) -> list[list[int]]:
    """The token ids of each choice's training target: ``<answer>choice</answer>`` and the end-of-turn token."""
    from audiomcq.prompts import solution

    return [tokenizer(solution(c) + tokenizer.eos_token, add_special_tokens=False)["input_ids"] for c in choices]


def run_jobs(model: Any, processor: Any, jobs: Sequence[Job], context: int, score: bool = True) -> list[Any]:
    """Each job's ``JobResult`` (or a ``PromptTooLong`` for a job that does not fit ``context`` tokens).

    With ``score`` the choices are scored from the prefill's cache; without it the caller scores them itself."""
    import torch

    model.eval()
    with torch.inference_mode():
        results = _run(model, processor, jobs, context, score)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return results


def _run(model: Any, processor: Any, jobs: Sequence[Job], context: int, score: bool) -> list[Any]:
    tok = processor.tokenizer
    results: list[Any] = [None] * len(jobs)
    live = list(range(len(jobs)))
    while live:
        pre = prefill(model, processor, [jobs[j].text for j in live], [w for j in live for w in jobs[j].waves])
        lengths = pre.mask.sum(-1).tolist()
        too_long = [k for k, j in enumerate(live) if lengths[k] + jobs[j].params.max_tokens > context]
        if not too_long:
            break
        for k in too_long:
            asked = jobs[live[k]].params.max_tokens
            results[live[k]] = PromptTooLong(
                f"the prompt has {lengths[k]} tokens (audio included); with max_tokens {asked} that is more than "
                f"the model's context of {context} tokens"
            )
        live = [j for k, j in enumerate(live) if k not in too_long]
    if not live:
        return results
    scores: dict[int, list[float]] = {}
    if score:
        rows, targets, owners = [], [], []
        for k, j in enumerate(live):
            for t in choice_targets(tok, jobs[j].choices):
                rows.append(k)
                targets.append(t)
                owners.append(j)
        for j, s in zip(owners, score_continuations(model, pre, rows, targets) if rows else [], strict=True):
            scores.setdefault(j, []).append(s)
    samples = _decode(model, tok, pre, [jobs[j] for j in live])
    for k, j in enumerate(live):
        results[j] = JobResult(samples[k], int(lengths[k]), scores.get(j) if jobs[j].choices and score else None)
    return results


def _decode(model: Any, tok: Any, pre: Prefill, jobs: Sequence[Job]) -> list[list[Sample]]:
    """Decode every job's ``n`` samples from the prefill, all rows in lock step."""
    import torch

    device = pre.mask.device
    owner = [(k, i) for k, job in enumerate(jobs) for i in range(job.params.n)]  # (job, sample) per row
    select = torch.tensor([k for k, _ in owner], device=device)
    cache = pre.cache
    if len(owner) != len(jobs):
        cache.batch_select_indices(select)
    mask, next_pos, logits = pre.mask[select], pre.next_pos[select], pre.logits[select]
    vocab = logits.shape[-1]
    groups: list[RowGroup] = []
    for k, job in enumerate(jobs):
        rows = [r for r, (owner_k, _) in enumerate(owner) if owner_k == k]
        group = RowGroup(job.params, rows)
        group.setup(vocab, pre.ids[select[rows]], device)
        groups.append(group)
    ends = _end_ids(model, tok)
    trackers = [TextTracker(tok, jobs[k].params.stop) for k, _ in owner]
    tokens: list[list[int]] = [[] for _ in owner]
    probs: list[list[TokenLogprob]] = [[] for _ in owner]
    finish: list[str | None] = [None] * len(owner)
    active = list(range(len(owner)))  # row ids still decoding, in batch order
    step = 0
    while active:
        chosen = torch.empty(len(active), dtype=torch.long, device=device)
        raw = torch.log_softmax(logits, dim=-1) if any(j.params.logprobs for j in jobs) else logits
        for group in groups:
            local = [active.index(r) for r in group.rows]
            if not local:
                continue
            picked = group.choose(group.shape(logits[local]))
            group.record(picked)
            chosen[local] = picked
        picked_ids = chosen.tolist()
        for pos, row in enumerate(active):
            k, i = owner[row]
            job, token = jobs[k], picked_ids[pos]
            entry = []
            if job.params.logprobs and token not in ends:
                entry = token_logprobs(tok, raw[pos : pos + 1], [token], job.params.top_logprobs)
                probs[row].extend(entry)
            tokens[row].append(token)
            delta = ""
            if token in ends:
                finish[row] = "stop"
            else:
                delta = trackers[row].push(token)
                if trackers[row].stopped:
                    finish[row] = "stop"
                elif len(tokens[row]) >= job.params.max_tokens:
                    finish[row] = "length"
            if finish[row] is None and job.cancelled.is_set():
                finish[row] = "cancelled"
            if finish[row] is not None:
                delta += trackers[row].flush()
            if job.sink is not None and (delta or entry or finish[row]):
                job.sink(Delta(i, delta, tuple(entry), finish[row]))
        keep = [p for p, row in enumerate(active) if finish[row] is None]
        if not keep:
            break
        step += 1
        if len(keep) != len(active):
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            mask, next_pos, chosen = mask[index], next_pos[index], chosen[index]
            for group in groups:
                still = [group.rows.index(active[p]) for p in keep if active[p] in group.rows]
                group.rows = [group.rows[s] for s in still]
                group.keep(still)
            active = [active[p] for p in keep]
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        pos = (next_pos + step - 1)[:, None]
        with torch.inference_mode():
            hidden = model.model(
                input_ids=chosen[:, None],
                attention_mask=mask,
                position_ids=_positions(model, pos),
                cache=cache,
                use_cache=True,
            ).last_hidden_state
            logits = model.lm_head(hidden[:, -1]).float()
    out: list[list[Sample]] = [[] for _ in jobs]
    for row, (k, _) in enumerate(owner):
        out[k].append(Sample(trackers[row].text, tokens[row], finish[row] or "stop", probs[row]))
    return out
