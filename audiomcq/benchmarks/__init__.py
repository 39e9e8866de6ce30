"""Benchmark adapters: MMAU, MMAR, MMSU and DCASE 2025 Task 5 into MCQ records, with official scoring."""

from __future__ import annotations

from typing import Any

from audiomcq.benchmarks.base import Benchmark, BenchmarkSet, group_value
from audiomcq.benchmarks.dcase import DCASE2025
from audiomcq.benchmarks.mmar import MMAR
from audiomcq.benchmarks.mmau import MMAU
from audiomcq.benchmarks.mmsu import MMSU
from audiomcq.errors import AudioMCQError

BENCHMARKS: dict[str, type[Benchmark]] = {cls.name: cls for cls in (MMAU, MMAR, MMSU, DCASE2025)}


def get_benchmark(name: str, **options: Any) -> Benchmark:
    """An adapter by name (``mmau``, ``mmar``, ``mmsu``, ``dcase2025``); options go to its constructor."""
    try:
        cls = BENCHMARKS[name.lower()]
    except KeyError:
        raise AudioMCQError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}") from None
    return cls(**options)


__all__ = [
    "BENCHMARKS",
    "DCASE2025",
    "MMAR",
    "MMAU",
    "MMSU",
    "Benchmark",
    "BenchmarkSet",
    "get_benchmark",
    "group_value",
]
