"""How many tokens a model may generate, and whether a question fits its context at all.

A fixed small budget cuts long right answers into wrong ones (written as ``<answer>…</answer>``, 89 of MMAU
test-mini's answers and 93 of MMAR's are longer than 64 characters, and 60 and 83 of them longer than 16 Qwen
tokens), which biases filter labels toward "strong" and evaluation scores down. So filtering and
evaluation take the budget from the data: the longest well-formed answer over every record's options, counted in
the model's own tokenizer, plus a margin; generation also stops at ``</answer>``, so a large budget costs nothing
on answers that close their tag. An explicit budget still wins. Engines whose tokenizer is remote (an OpenAI-style
endpoint) are counted in UTF-8 bytes, which bounds the token count of any byte-level BPE tokenizer from above.

The context check: a question whose prompt (audio expanded) plus budget exceeds the model's ``max_length`` is not
asked, so a clipped or failed generation is never scored as a wrong answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from audiomcq.data.record import MCQRecord
from audiomcq.inference.formats import DEFAULT, PromptFormat

log = logging.getLogger(__name__)
DEFAULT_MARGIN = 16  # tokens beyond the longest answer: whitespace inside the tag, a short lead-in, the end token
_BATCH = 4096  # answer texts tokenized per call


@dataclass(frozen=True)
class Budget:
    """A generation budget and where it came from (``data`` or ``user``), with the longest answer it must hold."""

    max_new_tokens: int
    source: str
    longest_tokens: int | None = None
    longest_id: str | None = None
    margin: int = 0
    counted_in: str = "tokenizer"  # or "utf8-bytes" for engines without a local tokenizer

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        longest = f"longest answer {self.longest_tokens} {self.counted_in} units (record {self.longest_id})"
        if self.source == "user":
            return f"set by the user; {longest}"
        return f"from the data: {longest} + margin {self.margin}"


def utf8_bytes(texts: Sequence[str]) -> list[int]:
    """Byte lengths: no byte-level BPE token is shorter than one byte, so this never undercounts."""
    return [len(t.encode("utf-8")) for t in texts]


def engine_format(engine: Any) -> PromptFormat:
    """The prompt format an engine asks with (the AudioMCQ one for engines that do not say)."""
    fmt = getattr(engine, "format", None)
    return fmt if isinstance(fmt, PromptFormat) else DEFAULT


def token_counter(engine: Any) -> tuple[Callable[[Sequence[str]], list[int]], str]:
    """The engine's own token counter, else UTF-8 bytes; with the unit's name."""
    counter = getattr(engine, "count_tokens", None)
    return (counter, "tokenizer") if callable(counter) else (utf8_bytes, "utf8-bytes")


def longest_answer(records: Iterable[MCQRecord], fmt: PromptFormat, count: Callable) -> tuple[int, str | None]:
    """(tokens, record id) of the longest well-formed answer over every option of every record."""
    best, best_id = 0, None
    batch: list[tuple[str, str]] = []

    def flush() -> None:
        nonlocal best, best_id
        if batch:
            for (record_id, _), n in zip(batch, count([t for _, t in batch]), strict=True):
                if n > best:
                    best, best_id = n, record_id
            batch.clear()

    for record in records:
        batch.extend((record.id, fmt.target(i, c)) for i, c in enumerate(record.choices))
        if len(batch) >= _BATCH:
            flush()
    flush()
    return best, best_id


def resolve_budget(
    user: int | None, records: Iterable[MCQRecord], engine: Any, margin: int = DEFAULT_MARGIN
) -> Budget:
    """``user`` when set (said in the log when it is shorter than the longest answer), else the data's budget."""
    count, unit = token_counter(engine)
    longest, record_id = longest_answer(records, engine_format(engine), count)
    if user is not None:
        if user < longest:
            log.warning(
                "max_new_tokens %d is shorter than the longest answer (%d %s units, record %s): such "
                "answers will be cut and counted as truncated",
                user,
                longest,
                unit,
                record_id,
            )
        return Budget(user, "user", longest, record_id, 0, unit)
    return Budget(max(1, longest + margin), "data", longest, record_id, margin, unit)


def over_length(engine: Any, requests: Sequence[Any], max_new_tokens: int) -> dict[int, int]:
    """``{position: tokens needed}`` for the requests whose prompt plus budget exceed the engine's context; empty
    when the engine has no limit or cannot count (an endpoint enforces its own)."""
    limit = getattr(engine, "max_length", None)
    counter = getattr(engine, "prompt_tokens", None)
    if limit is None or not callable(counter):
        return {}
    needs = ((i, counter(r) + max_new_tokens) for i, r in enumerate(requests))
    return {i: need for i, need in needs if need > limit}
