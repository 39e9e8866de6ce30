"""MMAU (Sakshi113/MMAU): a JSON list; ``audio_id`` paths; ``category`` sometimes a list; 2/4/5/8 options.

Official scorer: ``string_match`` on key ``model_output`` (older files and R1-AQA write ``model_prediction``);
items without the key are skipped. Report: task, difficulty, sub-category (we add category).
MMAU-test hides its answers: export predictions for the official server instead of scoring them here.
"""

from __future__ import annotations

from typing import ClassVar

from audiomcq.benchmarks.base import Benchmark


class MMAU(Benchmark):
    """MMAU test-mini (1,000 items with answers) and test (9,000, answers hidden)."""

    name = "mmau"
    source_dataset = "MMAU"
    renames: ClassVar[dict[str, str]] = {"audio_id": "audio_path"}
    type_field = "task"
    prediction_keys = ("model_output", "model_prediction")
    breakdowns = ("task", "difficulty", "category", "sub-category")
