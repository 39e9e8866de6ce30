"""MMAR (ddlBoJack/MMAR): JSONL (``MMAR-meta.jsonl``; ``.json`` accepted); 2-6 options; modality/category.

Official scorer: the same ``string_match`` as MMAU, on key ``answer_prediction`` (``model_prediction`` before
2026-02-16). Report: modality, category, sub-category.
"""

from __future__ import annotations

from audiomcq.benchmarks.base import Benchmark


class MMAR(Benchmark):
    """MMAR, 1,000 items across sound, music, speech and their mixtures."""

    name = "mmar"
    source_dataset = "MMAR"
    type_field = "modality"
    prediction_keys = ("answer_prediction", "model_prediction")
    breakdowns = ("modality", "category", "sub-category")
