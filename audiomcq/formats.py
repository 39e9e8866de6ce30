"""How every table and summary line shows a percentage: one decimal, and a dash where nothing was measured."""

from __future__ import annotations

from typing import Any

MISSING = "–"


def pct(value: float | None, digits: int = 1) -> str:
    """``value`` (already a percentage) with ``digits`` decimals, or ``MISSING`` when it is None."""
    return MISSING if value is None else f"{value:.{digits}f}"


def accuracy(cell: dict[str, Any] | None) -> str:
    """A scored group's (``{accuracy, correct, count}``) accuracy, or ``MISSING`` when the group was not scored."""
    return pct(cell["accuracy"]) if cell else MISSING
