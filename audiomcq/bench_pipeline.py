"""``audiomcq bench pipeline``: orchestration overhead of a local pipeline run.

The run's wall time is compared with the time during which at least one stage was computing (the union of the
stages' own intervals, recorded by ``audiomcq.timing``). The difference is what running stages as KFP tasks costs:
process start-up, imports, artifact bookkeeping and scheduling gaps.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def bench_pipeline(work: str | Path, recipe: str = "demo", overrides: list[str] | None = None,
                   **params: object) -> dict[str, Any]:  # fmt: skip
    """Run ``audiomcq-post-training`` locally with stage timings on (``params``: more pipeline arguments, e.g.
    ``publish``); returns wall, busy and overhead seconds."""
    from audiomcq.timing import busy_seconds
    from pipelines.run import run_local

    work = Path(work)
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
        "recipe": recipe,
        "tasks": len(rows),
        "wall_s": wall,
        "busy_s": busy,
        "task_compute_s": sum(r["end"] - r["start"] for r in rows),
        "overhead_s": wall - busy,
        "overhead_pct": 100.0 * (wall - busy) / busy,
    }
