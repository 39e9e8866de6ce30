"""Step bodies of ``audiomcq-evaluate``: one benchmark task per branch, then one table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from audiomcq.timing import timed


@timed
def eval_task(model: str, spec: dict[str, str], out_dir: str, settings: dict[str, Any]) -> dict[str, float]:
    """One benchmark task of ``audiomcq eval``, ``spec`` = ``{name, data, audio_root}`` (one fan-out item; kfp's
    local runner passes whole items, not their fields); ``settings``: EvalConfig fields. Returns flat metrics."""
    task, data, audio_root = spec["name"], spec["data"], spec.get("audio_root", "")
    from audiomcq.config import whole_numbers
    from audiomcq.evaluation import EvalConfig, run_eval

    config = EvalConfig(**whole_numbers(EvalConfig, settings))
    summary = run_eval(model, {task: data}, {task: audio_root or None}, out_dir, config)
    flat = {}
    for mode, table in summary["tasks"][task]["modes"].items():
        for group in ("total", "ac_strong"):
            if group in table:
                flat[f"{task}-{mode}-{group}"] = table[group]["accuracy"]
    return flat


@timed
def eval_report(result_dirs: list[str], markdown_path: str) -> str:
    """One Markdown table over every task's evaluation (the ``audiomcq eval`` table)."""
    from audiomcq.evaluation.harness import markdown
    from audiomcq.jsonio import load_json

    summaries = [load_json(Path(d) / "metrics.json") for d in result_dirs]
    merged = {"model": summaries[0]["model"] if summaries else "", "tasks": {}}
    for s in summaries:
        merged["tasks"].update(s["tasks"])
    text = markdown(merged)
    Path(markdown_path).parent.mkdir(parents=True, exist_ok=True)
    Path(markdown_path).write_text(text)
    return text
