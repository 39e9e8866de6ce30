"""What produced a stage's work directory, so a rerun resumes only the work that is still valid.

Filtering (one work directory per model), evaluation (one per task and mode) and generation keep their finished
chunks as part files. Each such directory carries ``fingerprint.json``: the output format version, the run's
identity (a digest of the model and the settings that change results) and, for every finished part, a digest of
the input chunk it answered. A rerun with the same identity skips the parts whose chunk is unchanged and redoes the
others; a rerun with another identity is refused with one line naming what changed, unless ``fresh`` discards that
work first. A directory that holds parts but no fingerprint (made before fingerprints were kept) counts as another
identity: nothing proves what made it.

A model counts by its configs plus both ends of every weight file, so a swapped model is told apart without reading
all its weights (training runs use the same digests: ``audiomcq.train.fingerprint``). An audio file counts by its
size: cheap enough to check a whole input on every rerun, and unchanged by copying a dataset to another volume.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from audiomcq.errors import AudioMCQError
from audiomcq.jsonio import load_json, write_json

log = logging.getLogger(__name__)
FORMAT = 2  # the layout of part files and fingerprints; work of another format is never resumed
NAME = "fingerprint.json"
FRESH = "--fresh"
# The parts of an engine spec that change its answers; batch size, concurrency and timeouts only change speed.
_SPEC_KEYS = (
    "backend",
    "family",
    "dtype",
    "prompt",
    "system",
    "option",
    "option_sep",
    "stop",
    "audio_first",
    "max_length",
)
_EDGE = 1 << 20  # bytes hashed at each end of a weight file: tells models apart without reading 15 GB


def digest(obj: Any) -> str:
    """A stable digest of JSON-able data (key order ignored)."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def file_digest(path: str | Path) -> str:
    """The sha256 of a file's whole content."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_digest(model_dir: str | Path) -> str:
    """A digest of a model directory: its configs and, for each weight file, its size and both ends."""
    digest = hashlib.sha256()
    for path in sorted(Path(model_dir).iterdir()):
        if not path.is_file():
            continue
        digest.update(path.name.encode())
        if path.suffix in (".safetensors", ".bin", ".pt", ".pth"):
            size = path.stat().st_size
            digest.update(str(size).encode())
            with path.open("rb") as fh:
                digest.update(fh.read(_EDGE))
                fh.seek(max(size - _EDGE, 0))
                digest.update(fh.read(_EDGE))
        elif path.suffix in (".json", ".jinja", ".txt", ".model"):
            digest.update(path.read_bytes())
    return digest.hexdigest()


def plain(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists), so a saved and a fresh identity compare equal."""
    return json.loads(json.dumps(obj, default=str))


def audio_size(record: Any, audio_root: str | Path | None) -> int | None:
    """The size of a record's audio file, or None when it has none or the file is missing."""
    if not getattr(record, "audio_path", None):
        return None
    path = Path(record.audio_path)
    if audio_root is not None and not path.is_absolute():
        path = Path(audio_root) / path
    try:
        return path.stat().st_size
    except OSError:
        return None


def chunk_digest(records: Iterable[Any], audio_root: str | Path | None = None, **extra: Any) -> str:
    """A digest of one chunk's records (every field) and their audio files' sizes; ``extra`` adds context."""
    rows = [[r.to_dict(), audio_size(r, audio_root) if audio_root is not None else None] for r in records]
    return digest([rows, extra])


def engine_identity(spec: Any) -> dict[str, Any]:
    """The model behind an engine spec (a digest of its directory, or the endpoint and the name it serves) and the
    spec's settings that change its answers."""
    if spec.backend == "openai":
        model = f"{spec.base_url}#{spec.served_model or spec.path}"
    else:
        model = model_digest(spec.path) if Path(spec.path).is_dir() else str(spec.path)
    return {"model": model, "settings": {key: getattr(spec, key) for key in _SPEC_KEYS}}


def clean_tmp(folder: Path) -> int:
    """Remove the temporary files that atomic writes of a killed run left in ``folder``; returns how many."""
    count = 0
    for path in folder.glob(".*.tmp") if folder.is_dir() else ():
        path.unlink(missing_ok=True)
        count += 1
    if count:
        log.info("%s: removed %d temporary file(s) of an interrupted run", folder, count)
    return count


def _show(value: Any) -> str:
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12]  # a digest: its start tells two apart
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """What differs between two identities, as ``name (old -> new)``; nested settings are named by their key."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += changes(a, b, f"{prefix}{key}." if key != "settings" else "setting ")
        else:
            out.append(f"{prefix}{key} ({_show(a)} -> {_show(b)})")
    return out


class WorkDir:
    """A work directory of part files (``part-NNNNNN.jsonl``), each with a record of the chunk it answered
    (``part-NNNNNN.meta.json``, written after the part, so a part cut short by a kill is never taken as done), and
    the fingerprint that says what made them.

    Opening one checks the saved identity against ``identity``: equal, the parts stand; different (or parts without
    a fingerprint), it raises naming the change, or with ``fresh`` discards the parts. ``meta`` holds what a stage
    keeps beside the parts (e.g. the generation budget and what it was derived from)."""

    def __init__(self, folder: str | Path, identity: dict[str, Any], *, fresh: bool = False) -> None:
        self.folder = Path(folder)
        self.identity = plain({"format": FORMAT, **identity})
        self.meta: dict[str, Any] = {}
        saved = load_json(self.path) if self.path.is_file() else None
        found = self.parts()
        if saved is None:
            diff = ["fingerprint (none: nothing records what made these parts)"] if found else []
        else:
            diff = changes(saved.get("identity", {}), self.identity)
        if diff and not fresh:
            raise AudioMCQError(
                f"{self.folder}: its finished work was made with another {'; '.join(diff)}; resuming would mix two "
                f"runs. Rerun with {FRESH} to discard it, or use a new --out"
            )
        if diff:
            log.warning("%s: discarding %d part(s) made with another %s", self.folder, len(found), "; ".join(diff))
            self._remove(found)
        elif saved is not None:
            self.meta = saved.get("meta", {})
        clean_tmp(self.folder)
        self.save()

    @property
    def path(self) -> Path:
        return self.folder / NAME

    def parts(self) -> list[Path]:
        return sorted(self.folder.glob("part-*.jsonl")) if self.folder.is_dir() else []

    def part(self, index: int) -> Path:
        return self.folder / f"part-{index:06d}.jsonl"

    def _record(self, part: Path) -> Path:
        return part.with_suffix(".meta.json")

    def entry(self, index: int, chunk: str) -> dict[str, Any] | None:
        """The record of part ``index`` when it exists and answered exactly the chunk digested as ``chunk``."""
        part = self.part(index)
        record = self._record(part)
        if not (part.is_file() and record.is_file()):
            return None
        entry = load_json(record)
        return entry if entry.get("digest") == chunk else None

    def done(self, index: int, chunk: str, **extra: Any) -> None:
        """Record that part ``index`` (already written) answers the chunk digested as ``chunk``."""
        write_json(self._record(self.part(index)), plain({"digest": chunk, **extra}))

    def forget(self) -> None:
        """Drop every part: what they answered is no longer valid (e.g. the generation budget changed)."""
        self._remove(self.parts())

    def prune(self, count: int) -> None:
        """Remove the parts at index ``count`` and beyond: the input has fewer chunks now."""
        self._remove([p for p in self.parts() if int(p.name[5:11]) >= count])

    def _remove(self, parts: list[Path]) -> None:
        for part in parts:
            self._record(part).unlink(missing_ok=True)
            part.unlink(missing_ok=True)

    def save(self) -> None:
        write_json(self.path, {"identity": self.identity, "meta": self.meta})
