"""``audiomcq bench train``: step time and tokens/s of SFT and GRPO on the tiny model, from the telemetry files.

SFT tokens are the non-padding input tokens the trainer counted; GRPO rollout tokens are the completion tokens
sampled per step (mean completion length x completions per step). Medians of per-step times skip the first step
(warm-up).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any


def _rows(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def bench_train(work: str | Path, steps: int = 20) -> dict[str, Any]:
    """Run a short SFT and GRPO on a fresh tiny model; returns step times and throughputs."""
    from audiomcq.models.tiny import TinySpec, build_tiny, save_tiny, tokenizer_texts
    from audiomcq.synth import generate
    from audiomcq.train.grpo import train_grpo
    from audiomcq.train.sft import train_sft

    work = Path(work)
    generate(work / "corpus", 256, seed=7, eval_n=0)
    data = work / "corpus" / "train.jsonl"
    model, processor = build_tiny("qwen2_5_omni", tokenizer_texts([data]), TinySpec())
    tiny = save_tiny(model, processor, work / "model")
    train_sft(tiny, data, work / "corpus", work / "sft", steps=steps, lr=1e-3, batch_size=16, logging_steps=1,
              trainer_args={"include_num_input_tokens_seen": "non_padding"})  # fmt: skip
    sft = [r for r in _rows(work / "sft") if "loss" in r]
    sft_time = sum(r["step_seconds"] for r in sft)
    result = {
        "sft": {
            "steps": len(sft),
            "step_seconds_median": statistics.median(r["step_seconds"] for r in sft[1:]),
            "tokens_per_second": sft[-1]["num_input_tokens_seen"] / sft_time,
        }
    }
    per_step = 8 * 4
    train_grpo(tiny, data, work / "corpus", work / "grpo", steps=max(2, steps // 2), lr=3e-4, prompts_per_step=8,
               num_generations=4, temperature=1.0, max_completion_length=16)  # fmt: skip
    grpo = [r for r in _rows(work / "grpo") if "reward" in r]
    completion_tokens = sum(r["completions/mean_length"] * per_step for r in grpo)
    result["grpo"] = {
        "steps": len(grpo),
        "step_seconds_median": statistics.median(r["step_seconds"] for r in grpo[1:]),
        "rollout_tokens_per_second": completion_tokens / sum(r["step_seconds"] for r in grpo),
        "completions_per_step": per_step,
    }
    return result
