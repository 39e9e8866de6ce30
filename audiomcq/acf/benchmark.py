"""ACF over a benchmark (MMAU-test-mini, MMAR, MMSU): its AC-strong subset and a zero-audio-contribution report.

The items are filtered exactly as published (quirks included), with a with-audio control pass, so the report puts
each filter model's accuracy with audio next to its accuracy in silence and the chance rate, as the paper does
(49.8% silent on MMAU-test-mini against 25.5% chance). Items whose audio is missing still get a silent label and
are left out of the with-audio column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from audiomcq.acf.run import FilterConfig, run_filter
from audiomcq.data.io import RecordReader, write_records
from audiomcq.formats import pct
from audiomcq.jsonio import write_json

# Paper: mean silent accuracy of the evaluated LALMs, and the AC-strong share of each benchmark.
PAPER_SILENT = {"mmau": 49.8, "mmar": 36.6, "mmsu": 37.8}
PAPER_STRONG = {"mmau": 46.1, "mmar": 67.1}


def filter_benchmark(
    benchmark: str,
    data: str | Path,
    models: Sequence[Any],
    audio_root: str | Path | None,
    out_dir: str | Path,
    config: FilterConfig | None = None,
) -> dict[str, Any]:
    """Label the benchmark, write ``ac_strong_ids.txt`` and ``zero_ac.json``/``.md``; returns the report."""
    from audiomcq.benchmarks import get_benchmark

    config = config or FilterConfig()
    out = Path(out_dir)
    loaded = get_benchmark(benchmark).load(data)
    write_records(out / "records.jsonl", loaded.records)
    probes = config.probes if "audio" in config.probes else (*config.probes, "audio")
    stats = run_filter(out / "records.jsonl", models, audio_root, out, replace(config, probes=probes, validate=False))
    strong = [r.id for r in RecordReader(out / "strong.jsonl", validate=False)]
    (out / "ac_strong_ids.txt").write_text("".join(f"{i}\n" for i in strong))
    chance = 100.0 * sum(1 / len(r.choices) for r in loaded.records) / len(loaded.records)
    primary = stats["rules"]["paper"]["probes"][0]
    rows = {
        name: {"audio": probes.get("audio", {}).get("all"), "silence": probes[primary]["all"], "chance": chance}
        for name, probes in stats["models"].items()
    }
    report = {
        "benchmark": benchmark,
        "items": stats["count"],
        "audio_missing": stats["audio_missing"],
        "audio_corrupt": stats["audio_corrupt"],  # unreadable or invalid clips: answered in silence only
        "over_length": stats["over_length"],  # too long for some filter model: unlabelled, so never AC-strong
        "truncated": stats["truncated"],
        "ac_strong": len(strong),
        "ac_strong_pct": 100.0 * len(strong) / stats["count"],
        "paper_ac_strong_pct": PAPER_STRONG.get(benchmark),
        "paper_mean_silent_pct": PAPER_SILENT.get(benchmark),
        "probe": primary,
        "models": rows,
    }
    write_json(out / "zero_ac.json", report)
    (out / "zero_ac.md").write_text(zero_ac_markdown(report))
    return report


def zero_ac_markdown(report: dict[str, Any]) -> str:
    """The zero-audio-contribution table of one benchmark."""

    lines = [
        f"# Zero audio contribution: {report['benchmark']} ({report['items']} items)",
        "",
        (
            f"AC-strong: {report['ac_strong']} items ({pct(report['ac_strong_pct'])}%; paper "
            f"{pct(report['paper_ac_strong_pct'])}%). Silent probe `{report['probe']}`; paper's mean silent accuracy "
            f"{pct(report['paper_mean_silent_pct'])}%. With-audio accuracy leaves out the {report['audio_missing']} "
            "items whose audio is missing."
            + (
                f" {report['over_length']} items were too long for a filter model and stay unlabelled (not in the "
                "AC-strong subset; see over_length.jsonl)."
                if report.get("over_length")
                else ""
            )
        ),
        "",
        "| filter model | with audio | in silence | chance |",
        "|---|---|---|---|",
    ]
    for name, row in report["models"].items():
        lines.append(f"| {name} | {pct(row['audio'])} | {pct(row['silence'])} | {pct(row['chance'])} |")
    return "\n".join(lines) + "\n"
