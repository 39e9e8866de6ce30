"""What SFT and GRPO runs share: train a built trainer and save a complete, reloadable model directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def train_and_save(trainer: Any, processor: Any, out_dir: str | Path, final_dir: str | Path | None) -> dict[str, Any]:
    """Train; save model + processor to ``final_dir`` (default ``<out_dir>/final``); return path, steps and logs."""
    result = trainer.train()
    final = Path(final_dir or Path(out_dir) / "final")
    trainer.save_model(str(final))
    processor.save_pretrained(str(final))  # the trainer saves the tokenizer only; eval and serving need it all
    return {
        "final": str(final),
        "steps": trainer.state.global_step,
        "train_runtime": result.metrics.get("train_runtime"),
        "log": trainer.state.log_history,
    }
