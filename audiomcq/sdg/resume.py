"""What finished generation work a rerun may reuse, beyond the parts that still match their chunk.

A part counts for exactly the chunk it was made from (``audiomcq.fingerprint``). With an LLM backend, though, an
item's row depends only on the item and the run's settings (which the work directory's fingerprint pins), not on the
chunk it sits in, so when the input or the chunk size changed, the rows of items already answered are taken from the
old parts instead of paying the LLM for them again; each row keeps the accounting of the requests that made it, so
the summary still counts what the output cost. (The template backend draws distractors from the chunk, so its rows
are made again; it costs nothing.) An old part about to be overwritten is first moved to ``work/stale/``, which is
removed once the outputs are written.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from audiomcq.fingerprint import WorkDir, digest

log = logging.getLogger(__name__)


def item_key(item: Any) -> str:
    """A digest of a source item (or an input reject): every field, so an edited caption is another item."""
    return digest([type(item).__name__, asdict(item)])


class Reuse:
    """Finished rows by item key, across the parts of a work directory and its stale folder (built on first use:
    a run whose parts all stand never reads them twice)."""

    def __init__(self, state: WorkDir) -> None:
        self.state = state
        self.stale = state.folder / "stale"
        self.files: list[Path] = []  # where each indexed file is now (a retired part moves)
        self.index: dict[str, tuple[int, int]] | None = None  # item key -> (file number, byte offset)

    def _build(self) -> dict[str, tuple[int, int]]:
        index: dict[str, tuple[int, int]] = {}
        self.files = [*(sorted(self.stale.glob("*.jsonl")) if self.stale.is_dir() else []), *self.state.parts()]
        for number, path in enumerate(self.files):
            with path.open("rb") as fh:
                offset = 0
                for line in fh:
                    key = json.loads(line).get("item")
                    if key:
                        index[key] = (number, offset)
                    offset += len(line)
        return index

    def take(self, key: str) -> dict[str, Any] | None:
        """The finished row of the item ``key``, if some part or stale part holds one."""
        if self.index is None:
            self.index = self._build()
        found = self.index.get(key)
        if found is None:
            return None
        with self.files[found[0]].open("rb") as fh:
            fh.seek(found[1])
            return json.loads(fh.readline())

    def retire(self, part: Path) -> None:
        """Move a part that is about to be overwritten into the stale folder, keeping its rows reachable."""
        if not part.is_file():
            return
        if self.index is None:
            self.index = self._build()
        self.stale.mkdir(exist_ok=True)
        target = self.stale / f"{part.stem}-{sum(1 for _ in self.stale.iterdir()):06d}.jsonl"
        part.rename(target)
        part.with_suffix(".meta.json").unlink(missing_ok=True)
        self.files = [target if f == part else f for f in self.files]

    def clear(self) -> None:
        """Remove the stale parts once the outputs no longer need them."""
        if self.stale.is_dir():
            shutil.rmtree(self.stale)
