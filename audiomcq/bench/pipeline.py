"""``audiomcq bench pipeline``: orchestration overhead of a local pipeline run.

The run's wall time is compared with the time during which at least one stage was computing (the union of the
stages' own intervals, recorded by ``audiomcq.timing``). The difference is what running stages as KFP tasks costs:
process start-up, imports, artifact bookkeeping and scheduling gaps. With ``repeats`` > 1 the whole run is
repeated (each from scratch) and every figure is the median over the runs, the overhead share also with its range:
on a shared machine a single run's few seconds of overhead are within the noise of its minutes of compute.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from audiomcq.bench.measure import Spread, load_average


def bench_pipeline(
    work: str | Path, recipe: str = "demo", overrides: list[str] | None = None, repeats: int = 1, **params: object
) -> dict[str, Any]:
    """Run ``audiomcq-demo`` locally ``repeats`` times with stage timings on (``params``: more pipeline
    arguments, e.g. ``publish``); returns the medians of wall, busy and overhead seconds, and every run's own."""
    work = Path(work)
    load = load_average()
    runs = [_one_run(work / f"run-{i}" if repeats > 1 else work, recipe, overrides, **params) for i in range(repeats)]
    out: dict[str, Any] = {"recipe": recipe, "repeats": repeats, "runs": runs, "load_before": load}
    for key in ("tasks", "wall_s", "busy_s", "task_compute_s", "overhead_s", "overhead_pct"):
        out[key] = statistics.median(r[key] for r in runs)
    out["overhead_pct_spread"] = Spread.of([r["overhead_pct"] for r in runs]).to_dict()
    out["load_after"] = load_average()
    return out


def _one_run(work: Path, recipe: str, overrides: list[str] | None, **params: object) -> dict[str, Any]:
    """One local run of the pipeline, timed."""
    from audiomcq.pipelines.run import run_local
    from audiomcq.timing import busy_seconds

    work.mkdir(parents=True, exist_ok=True)
    timings = work / "timings.jsonl"
    timings.unlink(missing_ok=True)
    os.environ["AUDIOMCQ_STAGE_TIMINGS"] = str(timings)  # inherited by every task's subprocess
    try:
        start = time.time()
        run_local(work / "root", recipe, overrides, **params)
        wall = time.time() - start
    finally:
        del os.environ["AUDIOMCQ_STAGE_TIMINGS"]
    rows = [json.loads(line) for line in timings.read_text().splitlines()]
    busy = busy_seconds([(r["start"], r["end"]) for r in rows])
    return {
        "tasks": len(rows),
        "wall_s": wall,
        "busy_s": busy,
        "task_compute_s": sum(r["end"] - r["start"] for r in rows),
        "overhead_s": wall - busy,
        "overhead_pct": 100.0 * (wall - busy) / busy,
    }
