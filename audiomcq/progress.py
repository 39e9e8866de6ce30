"""Progress of long commands: a bar with rate and ETA on a terminal, a periodic log line everywhere else.

A filter run over the paper's 571k questions with three models takes hours; without progress it is hours of
silence. On a terminal (stderr is a TTY) a tqdm bar shows done/total, rate and ETA. In a pod, a CI job or a file the
bar would be a stream of carriage returns, so instead one ``INFO`` line is logged at most every ``every`` seconds
(``AUDIOMCQ_PROGRESS_SECONDS`` overrides the default) and once at the end.

Work found already done on resume (``skip``) advances the count but not the rate, so the ETA is not flattered by
parts that cost nothing.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from types import TracebackType
from typing import Any, Self

log = logging.getLogger("audiomcq.progress")
DEFAULT_EVERY = 30.0


def _every() -> float:
    value = os.environ.get("AUDIOMCQ_PROGRESS_SECONDS", "")
    try:
        return max(0.0, float(value)) if value else DEFAULT_EVERY
    except ValueError:
        return DEFAULT_EVERY


def duration(seconds: float) -> str:
    """``42 s``, ``7 min 05 s`` or ``3 h 12 min``: how long, for a person."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Progress:
    """Count work done towards ``total`` (None when unknown) in ``unit``s, labelled ``desc``."""

    def __init__(
        self,
        desc: str,
        total: int | None = None,
        unit: str = "item",
        *,
        every: float | None = None,
        bar: bool | None = None,
    ) -> None:
        self.desc, self.total, self.unit = desc, total, unit
        self.every = _every() if every is None else every
        self.done = self.skipped = 0
        self.start = self._last = time.monotonic()
        use_bar = sys.stderr.isatty() if bar is None else bar
        self._bar: Any = None
        if use_bar:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=f" {unit}", dynamic_ncols=True, leave=True)

    def rate(self) -> float:
        """Units per second of the work done in this process (skipped work excluded)."""
        elapsed = time.monotonic() - self.start
        worked = self.done - self.skipped
        return worked / elapsed if elapsed > 0 and worked > 0 else 0.0

    def eta(self) -> float | None:
        """Seconds left at the current rate, or None (no total, or no rate yet)."""
        rate = self.rate()
        if self.total is None or rate <= 0:
            return None
        return max(0, self.total - self.done) / rate

    def line(self) -> str:
        """``filter0: 2,048/571,000 questions (0.4%), 18.3 questions/s, ETA 8 h 38 min``."""
        count = f"{self.done:,}/{self.total:,}" if self.total is not None else f"{self.done:,}"
        share = f" ({100 * self.done / self.total:.1f}%)" if self.total else ""
        skipped = f", {self.skipped:,} already done" if self.skipped else ""
        eta = self.eta()
        tail = f", ETA {duration(eta)}" if eta is not None and self.done < (self.total or 0) else ""
        elapsed = duration(time.monotonic() - self.start)
        return (
            f"{self.desc}: {count} {self.unit}s{share}{skipped}, {self.rate():.1f} {self.unit}s/s, "
            f"{elapsed} elapsed{tail}"
        )

    def update(self, n: int = 1) -> None:
        """``n`` more units done here."""
        self._advance(n)

    def skip(self, n: int = 1) -> None:
        """``n`` units found already done (a resumed part): counted, but not in the rate."""
        self.skipped += n
        self._advance(n)

    def _advance(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            log.info("%s", self.line())

    def close(self) -> None:
        """End the bar, or log the final line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        else:
            log.info("%s", self.line())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
