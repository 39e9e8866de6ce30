"""The benches' measurement helpers: interleaved repetitions, per-repetition ratios, spreads, FLOP counts, and what
``audiomcq bench filter|eval|pipeline`` print from them."""

from __future__ import annotations

import argparse

import pytest
import torch

from audiomcq.bench import measure
from audiomcq.bench.measure import Spread, count_flops, gemm_case, interleaved, ratio


def test_interleaved_runs_cases_side_by_side_in_alternating_order():
    calls: list[str] = []
    times = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then A B, B A, A B
    assert [len(v) for v in times.values()] == [3, 3]
    calls.clear()
    interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=False)
    assert calls == ["a", "b", "b", "a", "a", "b"]


def test_ratios_pair_each_repetition_with_its_neighbour():
    """A slow spell hits both cases of a repetition: the per-repetition ratio stays put where a ratio of medians of
    separately timed runs would not."""
    times = {"loop": [8.0, 80.0, 8.4], "batched": [1.0, 10.0, 1.0]}
    spread = ratio(times, "loop", "batched")
    assert (spread.median, spread.low, spread.high, spread.runs) == (8.0, 8.0, 8.4, 3)
    assert spread.show("x") == "8.00x (8.00-8.40, 3 runs)"
    assert Spread.from_dict(spread.to_dict()) == spread


def test_flops_are_counted_for_matmuls_and_cpu_attention():
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    assert count_flops(lambda: a @ b) == 2 * 8 * 16 * 4
    q, k = torch.randn(2, 4, 5, 8), torch.randn(2, 4, 7, 8)
    attention = count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, k))
    assert attention == 2 * (2 * 2 * 4 * 5 * 7 * 8)  # query x key, then weights x value


def test_the_gemm_case_reports_the_flops_it_runs():
    run, flops = gemm_case("float32", 64, 32, 16, seconds=0.01)
    counted = count_flops(run)
    assert counted == flops and flops % (2 * 64 * 32 * 16) == 0


def test_repeats_below_three_are_refused():
    from audiomcq.cli.bench import _repeats

    assert _repeats("3") == 3
    for bad in ("2", "1", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match=">= 3"):
            _repeats(bad)


def test_bench_pipeline_reports_the_median_run_and_the_spread(monkeypatch, tmp_path):
    import audiomcq.bench.pipeline as bench

    runs = iter([3.0, 1.0, 2.0])
    monkeypatch.setattr(bench, "_one_run", lambda *a, **k: _run(next(runs)))
    out = bench.bench_pipeline(tmp_path, "smoke", repeats=3)
    assert out["overhead_pct"] == 2.0 and len(out["runs"]) == 3
    assert out["overhead_pct_spread"] == {"median": 2.0, "min": 1.0, "max": 3.0, "runs": 3}


def _run(pct: float) -> dict[str, float]:
    return {
        "tasks": 14,
        "wall_s": 100 + pct,
        "busy_s": 100.0,
        "task_compute_s": 150.0,
        "overhead_s": pct,
        "overhead_pct": pct,
    }


def _spread(median: float, low: float, high: float) -> dict[str, float]:
    return {"median": median, "min": low, "max": high, "runs": 3}


def test_bench_filter_prints_medians_ranges_and_flop_bounds(monkeypatch, capsys, tmp_path):
    import audiomcq.bench.filter as bench
    from audiomcq.cli import main

    cell = {
        "batched_s": _spread(0.1, 0.09, 0.12),
        "loop_s": _spread(0.6, 0.5, 0.7),
        "batched_speedup": _spread(6.0, 5.5, 6.5),
        "gflop_per_question": {"batched": 0.17, "loop": 0.15},
        "gemm_gflops": _spread(100, 90, 110),
        "flop_floor_s": _spread(0.05, 0.04, 0.06),
        "flop_ceiling": _spread(12.0, 11.0, 13.0),
        "share_of_gemm_rate": _spread(0.5, 0.4, 0.6),
    }
    silent = {
        "shared_ms": _spread(60, 55, 70),
        "recomputed_ms": _spread(600, 590, 610),
        "text_only_ms": _spread(70, 65, 75),
        "recompute_over_shared": _spread(10.0, 9.1, 10.9),
        "shared_over_text_only": _spread(0.86, 0.8, 0.9),
        "gflop_per_question": {"shared": 3.4, "recomputed": 39.1, "text_only": 4.1},
        "flop_recompute_over_shared": 11.5,
        "flop_shared_over_text_only": 0.82,
    }
    canned = {
        "samples": 32,
        "repeats": 3,
        "threads": 2,
        "load_before": 0.5,
        "load_after": 0.7,
        "by_dtype": {"float32": cell, "bfloat16": cell},
        "best_vs_best_speedup": _spread(6.0, 5.0, 7.0),
        "silent_cost": {"h1024, 4 layers": silent},
        "silent_peak": {30: {"prefix_tokens": 782, "prefix_mib": 12.2, "peak_mib": {1: 40.0, 64: 300.0}}},
        "peak_rss_mb": {10: 100.0, 20: 101.0},
        "rss_growth_pct": 1.0,
    }
    monkeypatch.setattr(bench, "bench_filter", lambda *a, **k: canned)
    assert main(["bench", "filter", "--work", str(tmp_path / "w")]) == 0
    out = capsys.readouterr().out
    assert "both float32: 6.00x (5.50-6.50, 3 runs) (target >= 8x; FLOP-bound ceiling 12.0x" in out
    assert "recomputed / shared silence: 10.00x (9.10-10.90, 3 runs) (target >= 8x; FLOP ratio 11.50x)" in out
    assert "shared silence / text-only: 0.86x (0.80-0.90, 3 runs) (target <= 1.15x; FLOP ratio 0.82x)" in out
    assert "30 s silence (782 prefix tokens" in out and "300 MiB at batch 64" in out
    assert "a copy of the prefix per row would add 781 MiB at batch 64" in out
    assert "1-min load average 0.50 before, 0.70 after" in out


def test_load_average_is_a_number():
    assert measure.load_average() >= 0.0


def test_bench_never_deletes_a_directory_it_did_not_create(tmp_path):
    from audiomcq.bench.measure import BENCH_MARK, bench_work
    from audiomcq.errors import AudioMCQError

    data = tmp_path / "dataset"
    data.mkdir()
    (data / "train.jsonl").write_text("{}\n")
    with pytest.raises(AudioMCQError, match="no audiomcq bench made"):
        bench_work(data)
    assert (data / "train.jsonl").read_text() == "{}\n"
    work = bench_work(tmp_path / "new")  # a new directory is made and marked
    (work / "result.json").write_text("old")
    assert bench_work(work) == work and sorted(p.name for p in work.iterdir()) == [BENCH_MARK]  # its own: emptied
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (bench_work(empty) / BENCH_MARK).is_file()


def test_bench_cli_refuses_a_foreign_work_directory_in_one_line(tmp_path, capsys):
    from audiomcq.cli import main

    (tmp_path / "keep.txt").write_text("mine")
    assert main(["bench", "filter", "--work", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no audiomcq bench made" in err[0]
    assert (tmp_path / "keep.txt").read_text() == "mine"
