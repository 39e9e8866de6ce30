"""``audiomcq generate``: AudioMCQ-style samples from source captions, streamed, sharded and resumable.

Items are taken from the sources in order (``shard=(i, N)`` keeps positions p with p % N == i) and processed in
chunks, ``concurrency`` items at a time; each chunk's samples and rejects are written atomically to
``work/part-NNNNNN.jsonl``, so a restarted run skips finished chunks, and the response cache means even a chunk
cut short re-sends nothing that was answered. The work directory is fingerprinted (``audiomcq.fingerprint``): a part
counts only for the exact items it was made from, the LLM and its settings must match (else the run is refused
unless ``fresh``), and an edited input or chunk size reuses the rows of items already answered
(``audiomcq.sdg.resume``). The merge reads exactly the current input's parts, and every row carries the requests
that made it, so the summary counts every process's work, not only the last one's.

The merge then drops near-duplicates (same normalised question and option set) and benchmark-contaminated samples,
and writes ``samples.jsonl`` (records the foundation loader validates), ``rejects.jsonl`` (every item that did not
become a sample, with step and reason), ``summary.json`` (counts per source, type and reject reason against the
paper's distribution; requests and tokens per step) and ``decontamination.json``/``.md``.
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiomcq.errors import AudioMCQError
from audiomcq.fingerprint import WorkDir, clean_tmp, digest
from audiomcq.infra.metrics import push
from audiomcq.jsonio import atomic_writer, iter_jsonl, json_line, write_json
from audiomcq.progress import Progress
from audiomcq.sdg.decontam import Decontaminator, normalise
from audiomcq.sdg.llm import LLM, LLMSpec
from audiomcq.sdg.resume import Reuse, item_key
from audiomcq.sdg.steps import PROMPT_VERSION, Draft, Reject, run_steps

log = logging.getLogger(__name__)
PAPER_SOURCES = {
    "SpeechCraft": 39.9,
    "CompA-R": 34.5,
    "AudioCaps": 15.8,
    "TACOS": 5.8,
    "LP-MusicCaps": 2.7,
    "Clotho": 0.7,
    "MusicCaps": 0.5,
}
PAPER_TYPES = {"speech": 47.0, "sound": 39.1, "music": 8.1, "temporal": 5.8}


@dataclass(frozen=True)
class GenConfig:
    tries: int = 3  # per LLM step: the first answer plus retries with the validation error
    chunk_size: int = 64
    shard: tuple[int, int] = (0, 1)
    seed: int = 0  # template backend

    def __post_init__(self) -> None:
        for key in ("tries", "chunk_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise AudioMCQError(f"generate setting {key} must be a whole number >= 1, not {value!r}")


def identity(llm: LLMSpec, config: GenConfig) -> dict[str, Any]:
    """What a generated row depends on beyond its item: the LLM and its sampling, the prompts, the retries, the
    template seed and the shard (the chunk size only through the chunks' digests)."""
    settings = {
        "backend": llm.backend,
        "model": llm.model or None,
        "temperature": llm.temperature,
        "max_tokens": llm.max_tokens,
        "seed": llm.seed,
        "prompts": PROMPT_VERSION,
        "tries": config.tries,
        "template_seed": config.seed,
    }
    return {"stage": "generate", "settings": settings, "shard": list(config.shard)}


def source_items(sources: dict[str, str | Path]) -> Iterator[Any]:
    """Items (and input rejects) of every source in order; ``synthetic`` reads our own corpus JSONL."""
    from audiomcq.sdg.sources import SourceItem, get_source, read_source

    for name in sources:
        if name != "synthetic":
            try:
                get_source(name)
            except AudioMCQError as err:
                raise AudioMCQError(f"{err}, or synthetic (our own corpus)") from None
    for name, root in sources.items():
        if name != "synthetic":
            yield from read_source(name, root)
            continue
        from audiomcq.data.io import read_records

        for r in read_records(Path(root) / "train.jsonl" if Path(root).is_dir() else root):
            yield SourceItem(
                source="synthetic",
                id=r.id,
                audio_path=r.audio_path or "",
                caption=r.extra.get("caption"),
                meta={"family": r.extra.get("family"), "question_type": r.question_type},
            )


def generate_dataset(
    sources: dict[str, str | Path],
    out_dir: str | Path,
    llm: LLMSpec | None = None,
    config: GenConfig = GenConfig(),
    benchmarks: dict[str, str | Path] | None = None,
    cache_dir: str | Path | None = None,
    fresh: bool = False,
) -> dict[str, Any]:
    """Generate, deduplicate and decontaminate; returns the summary. ``fresh``: discard the finished parts another
    LLM or setting made instead of refusing to run."""
    index, count = config.shard
    if not 0 <= index < count:
        raise AudioMCQError(f"shard {index}/{count}: the index must be in 0..{count - 1}")
    out, llm = Path(out_dir), llm or LLMSpec()
    clean_tmp(out)
    state = WorkDir(out / "work", identity(llm, config), fresh=fresh)
    reuse = Reuse(state)
    client = None if llm.backend == "template" else LLM(llm, cache_dir or out / "cache")
    mine = (item for p, item in enumerate(source_items(sources)) if p % count == index)
    done: Counter[str] = Counter()
    start = time.perf_counter()
    parts = 0
    with Progress(f"generate shard {index}/{count}", None, "item") as progress:  # sources stream: no total
        for i in itertools.count():
            chunk = list(itertools.islice(mine, config.chunk_size))
            if not chunk:
                break
            parts, key = i + 1, digest([item_key(x) for x in chunk])
            if state.entry(i, key) is not None:
                progress.skip(len(chunk))
                continue
            rows = _chunk_rows(chunk, client, llm, config, reuse if client is not None else None)
            reuse.retire(state.part(i))
            with atomic_writer(state.part(i)) as f:
                f.writelines(json_line(row) + "\n" for row in rows)
            state.done(i, key)
            done.update(row["kind"] + "s" for row in rows)
            progress.update(len(chunk))
            rate = {"items_per_second": sum(done.values()) / (time.perf_counter() - start)}
            push("audiomcq-generate", {"shard": f"{index}of{count}"}, {**done, **rate}, prefix="audiomcq_generate")
    state.prune(parts)  # parts beyond the input's end belong to a longer input
    summary = _merge(out, [state.part(i) for i in range(parts)], llm, benchmarks or {}, config)
    reuse.clear()
    return summary


def _chunk_rows(
    chunk: list[Any], client: LLM | None, llm: LLMSpec, config: GenConfig, reuse: Reuse | None
) -> list[dict[str, Any]]:
    """One row per item of the chunk (a sample or a reject, with the item's key and the requests it cost); with
    ``reuse``, an item answered before is taken as it was."""
    from audiomcq.sdg.sources import Rejected
    from audiomcq.sdg.template import template_draft

    items = [x for x in chunk if not isinstance(x, Rejected)]
    keys = {x.id: item_key(x) for x in items}
    taken = {x.id: row for x in items if reuse is not None and (row := reuse.take(keys[x.id])) is not None}

    def one(item: Any) -> dict[str, Any]:
        tally: dict[str, dict[str, int]] = {}
        try:
            if client is None:
                draft = template_draft(item, items, config.seed)
            else:
                draft = run_steps(functools.partial(client.chat, tally=tally), item, config.tries)
        except Reject as rej:
            return {
                "kind": "reject",
                "item": keys[item.id],
                "id": item.id,
                "source": item.source,
                "step": rej.step,
                "reason": rej.reason,
                "attempts": rej.attempts,
                "accounting": tally,
            }
        return {"kind": "sample", "item": keys[item.id], **_record(item, draft, llm), "accounting": tally}

    todo = [x for x in items if x.id not in taken]
    with ThreadPoolExecutor(max_workers=max(1, llm.concurrency)) as pool:
        done = {**taken, **dict(zip((x.id for x in todo), pool.map(one, todo), strict=True))}
    if taken:
        log.info("generate: %d of %d items answered before, reused", len(taken), len(items))
    return [
        {"kind": "reject", "id": None, "source": x.source, "step": "input", "reason": f"{x.location}: {x.reason}"}
        if isinstance(x, Rejected)
        else done[x.id]
        for x in chunk
    ]


def _record(item: Any, draft: Draft, llm: LLMSpec) -> dict[str, Any]:
    m = draft.mcq
    return {
        "id": item.id,
        "source_dataset": item.source,
        "audio_path": item.audio_path,
        "question": m["question"],
        "choices": m["choices"],
        "answer": m["answer"],
        "question_type": m["question_type"],
        "structured_cot": draft.structured_cot,
        "simple_cot": draft.simple_cot,
        "grades": draft.grades,
        "caption": draft.fields["caption"],
        "generation": {"backend": llm.backend, "model": llm.model or None, "prompts": PROMPT_VERSION},
    }


def _merge(
    out: Path, parts: list[Path], llm: LLMSpec, benchmarks: dict[str, str | Path], config: GenConfig
) -> dict[str, Any]:
    from audiomcq.data.record import MCQRecord, validate

    decon = Decontaminator.from_benchmarks(benchmarks)
    seen: dict[str, str] = {}
    sources: Counter[str] = Counter()
    types: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    accounting: dict[str, Counter[str]] = {}
    with atomic_writer(out / "samples.jsonl") as samples, atomic_writer(out / "rejects.jsonl") as rejects:
        for part in parts:
            for _, row in iter_jsonl(part):
                kind = row.pop("kind")
                row.pop("item", None)
                for step, counts in row.pop("accounting", {}).items():
                    accounting.setdefault(step, Counter()).update(counts)
                if kind == "sample":
                    key = normalise(row["question"]) + "|" + "|".join(sorted(normalise(c) for c in row["choices"]))
                    # In order, each check only for what passed the one before, so the decontamination report
                    # lists only samples removed for contamination.
                    problems = [] if key in seen else validate(MCQRecord.from_dict(row))
                    hit = None if key in seen or problems else decon.check(row)
                    if key in seen:
                        row = {
                            "id": row["id"],
                            "source": row["source_dataset"],
                            "step": "dedup",
                            "reason": f"near_duplicate: same question and options as {seen[key]}",
                        }
                    elif problems:
                        row = {
                            "id": row["id"],
                            "source": row["source_dataset"],
                            "step": "validate",
                            "reason": "invalid: " + "; ".join(p.message for p in problems),
                        }
                    elif hit:
                        row = {
                            "id": row["id"],
                            "source": row["source_dataset"],
                            "step": "decontaminate",
                            "reason": f"contaminated: {hit}",
                        }
                    else:
                        seen[key] = row["id"]
                        samples.write(json_line(row) + "\n")
                        sources[row["source_dataset"]] += 1
                        types[row["question_type"]] += 1
                        continue
                rejects.write(json_line(row) + "\n")
                reasons[f"{row['step']}: {row['reason'].split(':')[0]}"] += 1
    total = sum(sources.values())
    summary = {
        "samples": total,
        "rejects": sum(reasons.values()),
        "reject_reasons": dict(sorted(reasons.items())),
        "by_source": {
            s: {"count": n, "share": 100.0 * n / total, "paper_share": PAPER_SOURCES.get(s)}
            for s, n in sorted(sources.items())
        },
        "by_type": {
            t: {"count": n, "share": 100.0 * n / total, "paper_share": PAPER_TYPES.get(t)}
            for t, n in sorted(types.items())
        },
        "llm": {"backend": llm.backend, "model": llm.model or None, "prompts": PROMPT_VERSION},
        "accounting": {step: dict(c) for step, c in sorted(accounting.items())},
        "shard": list(config.shard),
    }
    write_json(out / "summary.json", summary)
    decon.write_report(out)
    log.info("generate: %d samples, %d rejects -> %s", total, summary["rejects"], out)
    return summary
