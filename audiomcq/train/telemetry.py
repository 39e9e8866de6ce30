"""Training telemetry: every logged step (loss, learning rate, rewards per function and their spread, the share of
GRPO groups with zero reward spread, KL, completion length, step time, tokens/s) goes to the log, to
``metrics.jsonl`` in the run directory, into each checkpoint as ``metrics.json``, and to a Prometheus Pushgateway when
``AUDIOMCQ_PUSHGATEWAY`` names one (``host:port``), grouped by run.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

log = logging.getLogger(__name__)
SHOWN = (
    "loss",
    "learning_rate",
    "reward",
    "reward_std",
    "frac_reward_zero_std",
    "kl",
    "step_seconds",
    "tokens_per_second",
)


class Telemetry(TrainerCallback):
    """Writes, logs and pushes each logged step; snapshots the metrics since the last save into the checkpoint."""

    def __init__(self, run: str) -> None:
        self.run = run
        self.gateway = os.environ.get("AUDIOMCQ_PUSHGATEWAY")  # read once: no per-step lookups when unset
        self.since_save: list[dict[str, Any]] = []
        self._started = 0.0
        self._step_seconds: float | None = None
        self._last_tokens: tuple[float, float] | None = None  # (num_tokens, wall time) at the previous log

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._started = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._step_seconds = time.perf_counter() - self._started

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        entry = {"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, (int, float))}}
        if self._step_seconds is not None:
            entry["step_seconds"] = self._step_seconds
        if "num_tokens" in entry:  # trl's running count of tokens processed (prompts and completions)
            now = time.perf_counter()
            if self._last_tokens is not None and now > self._last_tokens[1]:
                tokens, then = self._last_tokens
                entry["tokens_per_second"] = (entry["num_tokens"] - tokens) / (now - then)
            self._last_tokens = (entry["num_tokens"], now)
        self.since_save.append(entry)
        with (Path(args.output_dir) / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(entry) + "\n")
        log.info(
            "%s step %d: %s", self.run, entry["step"], ", ".join(f"{k} {entry[k]:.4g}" for k in SHOWN if k in entry)
        )
        if self.gateway:
            self._push(entry)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and ckpt.is_dir():
            (ckpt / "metrics.json").write_text(json.dumps(self.since_save, indent=1))
            self.since_save = []

    def _push(self, entry: dict[str, Any]) -> None:
        from audiomcq.infra.metrics import push

        push("audiomcq-train", {"run": self.run}, entry, prefix="audiomcq_train")
