"""Repeated side-by-side measurements for every ``audiomcq bench`` ratio: interleaved repetitions, medians with
their range, FLOP counts that bound a ratio, and work directories a bench may empty."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Spread:
    """A measurement repeated on a noisy machine: its median with the lowest and highest repetition."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values), len(values))

    def show(self, unit: str = "", digits: int = 2, of: str = "runs") -> str:
        """``8.41x (7.90-9.12, 3 runs)``: one repetition is not evidence on a shared machine, so always the range."""
        f = f"{{:.{digits}f}}"
        return f"{f.format(self.median)}{unit} ({f.format(self.low)}-{f.format(self.high)}, {self.runs} {of})"

    def to_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.low, "max": self.high, "runs": self.runs}

    @classmethod
    def from_dict(cls, obj: dict[str, float]) -> Spread:
        return cls(obj["median"], obj["min"], obj["max"], int(obj["runs"]))


def interleaved(cases: dict[str, Callable[[], Any]], repeats: int = 3, warmup: bool = True) -> dict[str, list[float]]:
    """Wall seconds of each case, ``repeats`` times, run side by side: every repetition runs each case once, in
    alternating order (A B, B A, A B, …), so load from other processes lands on all cases alike instead of on
    whichever ran last. ``warmup`` runs each once first, untimed (allocators, kernels, caches)."""
    if warmup:
        for fn in cases.values():
            fn()
    names = list(cases)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            cases[name]()
            times[name].append(time.perf_counter() - start)
    return times


def ratio(times: dict[str, list[float]], num: str, den: str) -> Spread:
    """``num / den`` per repetition (the two were measured next to each other), then its spread."""
    return Spread.of([a / b for a, b in zip(times[num], times[den], strict=True)])


def load_average() -> float:
    """The 1-minute load average (0 where the OS has none): printed with every bench, since other load skews it."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def count_flops(fn: Callable[[], Any]) -> int:
    """Model FLOPs of one call of ``fn``, counted by torch (matmuls, convolutions, attention as dense products).

    torch's counter has no formula for the CPU flash-attention kernel that ``sdpa`` (and the cascade) run on CPU,
    so one is added: two products of query-by-key and weights-by-value."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    def cpu_flash(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        batch, heads, q_len, dim = query
        return 2 * batch * heads * q_len * key[-2] * (dim + value[-1])

    mapping = {}
    if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = cpu_flash
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return int(counter.get_total_flops())


def gemm_case(dtype: str, m: int, k: int, n: int, seconds: float = 0.2) -> tuple[Callable[[], Any], int]:
    """A fixed batch of ``m x k`` by ``k x n`` matmuls in ``dtype`` (about ``seconds`` long) and its FLOPs: timed
    beside a model, it gives the rate the model's own widest products reach at that moment, so FLOPs / rate is the
    least time the model's work could take under the same load."""
    import torch

    a, b = torch.randn(m, k).to(getattr(torch, dtype)), torch.randn(k, n).to(getattr(torch, dtype))
    a @ b
    start = time.perf_counter()
    a @ b
    calls = max(3, int(seconds / max(time.perf_counter() - start, 1e-6)))

    def run() -> None:
        for _ in range(calls):
            a @ b

    return run, 2 * m * k * n * calls


BENCH_MARK = ".audiomcq-bench"


def bench_work(path: str | os.PathLike[str]) -> Path:
    """A clean work directory for one bench run: a new or empty one is used as it is, one that an earlier bench made
    (it holds ``BENCH_MARK``) is emptied; any other directory is refused, since a bench must never delete what it
    did not create (a mistyped ``--work`` could name a dataset)."""
    import shutil

    from audiomcq.errors import AudioMCQError

    work = Path(path)
    if work.exists():
        if not work.is_dir():
            raise AudioMCQError(f"--work {work}: not a directory")
        if any(work.iterdir()):
            if not (work / BENCH_MARK).is_file():
                raise AudioMCQError(
                    f"--work {work}: the directory has files that no audiomcq bench made; pass a new or empty one"
                )
            shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    (work / BENCH_MARK).write_text("made by audiomcq bench; emptied by the next bench run into this directory\n")
    return work
