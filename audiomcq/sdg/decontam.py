"""Decontamination of generated samples against the evaluation benchmarks (MMAU, MMAR, MMSU, ...).

Two signals, either enough to drop a sample: its question shares a word n-gram (default 8 words, after
normalisation; a whole benchmark question when it is shorter) with a benchmark question, or its audio asset is a
benchmark's (same file stem, as ``data.allocation.asset_keys`` matches them). Every hit is kept for the report:
which sample, which benchmark item, and the overlapping text or asset.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path
from typing import Any

from audiomcq.jsonio import write_json

_WORD = re.compile(r"[a-z0-9]+")


def normalise(text: str) -> str:
    """Lower case, punctuation and spacing dropped."""
    return " ".join(_WORD.findall(text.lower()))


def ngrams(text: str, n: int) -> list[str]:
    words = normalise(text).split()
    if len(words) < n:
        return [" ".join(words)] if words else []
    return [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]


def _h(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=8).digest()


class Decontaminator:
    """An index of benchmark question n-grams and audio assets; ``check`` says why a sample overlaps, if it does."""

    def __init__(self, n: int = 8) -> None:
        self.n = n
        self.grams: dict[bytes, str] = {}  # n-gram hash -> "<benchmark>:<id>"
        self.assets: dict[str, str] = {}
        self.hits: list[dict[str, Any]] = []
        self.sizes: dict[str, int] = {}

    @classmethod
    def from_benchmarks(cls, benchmarks: dict[str, str | Path], n: int = 8) -> Decontaminator:
        from audiomcq.benchmarks import get_benchmark
        from audiomcq.data.allocation import asset_keys

        decon = cls(n)
        for name, path in benchmarks.items():
            records = get_benchmark(name).load(path).records
            decon.sizes[name] = len(records)
            for r in records:
                for gram in ngrams(r.question, n):
                    decon.grams.setdefault(_h(gram), f"{name}:{r.id}")
                for key in asset_keys(r):
                    decon.assets.setdefault(key, f"{name}:{r.id}")
        return decon

    def check(self, sample: dict[str, Any]) -> str | None:
        """The reason ``sample`` (a record dict) is contaminated, or None; hits are remembered for the report."""
        from audiomcq.data.allocation import asset_keys
        from audiomcq.data.record import MCQRecord

        if not self.sizes:
            return None
        for gram in ngrams(sample["question"], self.n):
            if (item := self.grams.get(_h(gram))) is not None:
                return self._hit(sample, item, "question_ngram", gram)
        for key in asset_keys(MCQRecord.from_dict(sample)):
            if (item := self.assets.get(key)) is not None:
                return self._hit(sample, item, "shared_audio", key)
        return None

    def _hit(self, sample: dict[str, Any], item: str, kind: str, evidence: str) -> str:
        self.hits.append({"id": sample["id"], "benchmark_item": item, "kind": kind, "evidence": evidence})
        return f"{kind} with {item} ({evidence})"

    def write_report(self, out: Path) -> None:
        """``decontamination.json`` and ``.md``: what was removed and why."""
        by = Counter((h["benchmark_item"].split(":")[0], h["kind"]) for h in self.hits)
        report = {
            "benchmarks": self.sizes,
            "ngram": self.n,
            "removed": len(self.hits),
            "by_benchmark": {f"{b}/{k}": c for (b, k), c in sorted(by.items())},
            "hits": self.hits,
        }
        write_json(out / "decontamination.json", report)
        indexed = f"Benchmarks indexed: {self.sizes or 'none'}; question {self.n}-grams and audio assets."
        lines = [
            "# Decontamination",
            "",
            indexed,
            "",
            "| sample | benchmark item | kind | evidence |",
            "|---|---|---|---|",
        ]
        lines += [f"| {h['id']} | {h['benchmark_item']} | {h['kind']} | {h['evidence']} |" for h in self.hits]
        (out / "decontamination.md").write_text("\n".join(lines) + "\n")
