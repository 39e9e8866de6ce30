"""Stage timings for ``audiomcq bench pipeline``: with ``AUDIOMCQ_STAGE_TIMINGS`` naming a file, a decorated stage
appends ``{"stage", "start", "end"}`` (wall-clock seconds) as one JSON line when it returns; appends of one short line
are atomic, so parallel tasks can share the file. Without the variable the decorator costs nothing.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def timed(fn: F) -> F:
    """Record the wrapped stage's compute interval when timings are requested."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        path = os.environ.get("AUDIOMCQ_STAGE_TIMINGS")
        start = time.time()
        try:
            return fn(*args, **kwargs)
        finally:
            if path:
                line = json.dumps({"stage": fn.__name__, "start": start, "end": time.time()}) + "\n"
                with open(path, "a") as f:
                    f.write(line)

    return wrapper  # type: ignore[return-value]


def busy_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of ``(start, end)`` intervals: time when at least one stage was computing."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total
