"""Streaming load and save of MCQ record files, held to the strict rules for training data.

A bad record is never dropped silently: in strict mode the reader raises naming file, line and reason; in lenient
mode it writes the raw record with its reasons to a quarantine JSONL and counts it. Files stream line by line so a
571k-record shard never has to sit in memory; a JSONL line that is not UTF-8 is a bad record located by its line,
like a line that is not JSON, rather than an error for the whole file.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiomcq.data.record import MCQRecord, check_clip, validate
from audiomcq.errors import AudioMCQError, RecordError
from audiomcq.jsonio import BadLine, atomic_writer, iter_json_items, json_problem, write_jsonl

log = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """What a load saw: how many records were read, kept and quarantined, and why."""

    source: str
    read: int = 0
    kept: int = 0
    quarantined: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    quarantine_path: str | None = None
    trimmed: int = 0  # kept records whose clip is longer than the models' window (heard cut to it)

    def summary(self) -> str:
        """One line for logs and the CLI."""
        line = f"{self.source}: {self.read} read, {self.kept} valid, {self.quarantined} quarantined"
        if self.reasons:
            line += " (" + ", ".join(f"{code} {n}" for code, n in self.reasons.most_common()) + ")"
        if self.trimmed:
            line += f"; {self.trimmed} valid with audio longer than the models' window, heard cut to it"
        if self.quarantined and self.quarantine_path:
            line += f" -> {self.quarantine_path}"
        return line

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for stage outputs."""
        return {
            "source": self.source,
            "read": self.read,
            "kept": self.kept,
            "quarantined": self.quarantined,
            "reasons": dict(self.reasons),
            "quarantine_path": self.quarantine_path,
            "trimmed": self.trimmed,
        }


class RecordReader:
    """Iterate valid records of a JSONL (or JSON list) file; ``report`` is complete once iteration ends.

    Args:
        path: the record file.
        strict: raise on the first bad record (default); otherwise quarantine it and go on.
        quarantine: where lenient mode writes bad records (default ``<path>.quarantine.jsonl``).
        audio_root: when given, a record whose audio file is missing under it is bad too.
        validate: apply the training-data rules (default); off, only unreadable records and duplicate ids are bad
            (benchmark items are asked and scored as published, quirks included).
        long_audio: with ``audio_root``, also decode every clip: one a model cannot hear is bad, and one longer
            than the models' window is bad (``"refuse"``) or kept and counted in ``report.trimmed`` (``"trim"``).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        strict: bool = True,
        quarantine: str | Path | None = None,
        audio_root: str | Path | None = None,
        validate: bool = True,
        long_audio: str | None = None,
    ) -> None:
        if long_audio not in (None, "refuse", "trim"):
            raise AudioMCQError(f"long_audio must be refuse or trim, not {long_audio!r}")
        self.path = Path(path)
        self.validate = validate
        self.long_audio = long_audio
        self.strict = strict
        self.audio_root = audio_root
        self.quarantine = Path(quarantine) if quarantine else self.path.with_name(self.path.name + ".quarantine.jsonl")
        self.report = LoadReport(source=str(self.path))

    def __iter__(self) -> Iterator[MCQRecord]:
        if self.strict:
            yield from self._records(None)
            return
        with atomic_writer(self.quarantine) as qfh:
            yield from self._records(qfh)
        if self.report.quarantined:
            self.report.quarantine_path = str(self.quarantine)
            log.warning("%s", self.report.summary())
        else:
            self.quarantine.unlink()

    def _records(self, qfh: Any) -> Iterator[MCQRecord]:
        seen: set[str] = set()
        for line, raw in iter_items(self.path):
            self.report.read += 1
            reasons: list[tuple[str, str]] = []
            record = None
            if isinstance(raw, BadLine):
                reasons.append(("invalid_json", raw.reason))
            else:
                try:
                    record = MCQRecord.from_dict(raw)
                except ValueError as exc:
                    reasons.append(("bad_shape", str(exc)))
            if record is not None:
                decode = self.long_audio is not None and self.audio_root is not None
                if self.validate:
                    reasons.extend((p.code, p.message) for p in validate(record, None if decode else self.audio_root))
                if decode:
                    problems, trimmed = check_clip(record, self.audio_root, self.long_audio)  # type: ignore[arg-type]
                    reasons.extend((p.code, p.message) for p in problems)
                    self.report.trimmed += trimmed and not reasons
                if record.id in seen:
                    reasons.append(("duplicate_id", f"id {record.id!r} already seen in this file"))
                seen.add(record.id)
            if not reasons:
                self.report.kept += 1
                yield record  # type: ignore[misc]
                continue
            message = "; ".join(msg for _, msg in reasons)
            if qfh is None:
                raise RecordError(str(self.path), line, message)
            self.report.quarantined += 1
            self.report.reasons.update(code for code, _ in reasons)
            entry = {
                "source": str(self.path),
                "line": line,
                "reasons": [code for code, _ in reasons],
                "message": message,
                "record": raw.text if isinstance(raw, BadLine) else raw,
            }
            qfh.write(json.dumps(entry, ensure_ascii=False) + "\n")


def iter_items(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line or row number, raw item)`` from JSONL / a JSON list, or from a Parquet shard (streamed in batches)."""
    if path.suffix != ".parquet":
        if path.is_file() and not _starts_list(path):
            yield from _jsonl_lines(path)
        else:
            yield from iter_json_items(path, lenient=True)
        return
    import pyarrow.parquet as pq

    row = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for item in batch.to_pylist():
            row += 1
            yield row, item


def count_items(path: str | Path) -> int | None:
    """How many items a record file holds, cheaply (non-blank JSONL lines, a Parquet file's row count), for progress
    totals; None for a JSON list or a path that is not a local file (counting it would mean parsing it)."""
    path = Path(path)
    if not path.is_file():
        return None
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if _starts_list(path):
        return None
    with path.open("rb") as fh:
        return sum(1 for raw in fh if raw.strip())


def _starts_list(path: Path) -> bool:
    """Whether the file's first non-space byte opens a JSON list (read as bytes: the text may not be UTF-8)."""
    with path.open("rb") as fh:
        while block := fh.read(4096):
            if stripped := block.lstrip():
                return stripped.startswith(b"[")
    return False


def _jsonl_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line, object)`` per non-blank JSONL line; a line that is not UTF-8 or not JSON comes back as a BadLine."""
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                text = raw.decode("utf-8", "replace").rstrip("\n")
                yield lineno, BadLine(text, f"not UTF-8 text ({exc.reason} at byte {exc.start} of the line)")
                continue
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line.rstrip("\r\n"))  # a cut-off last line: "Unterminated string"
            except json.JSONDecodeError as exc:
                yield lineno, BadLine(line.rstrip("\n"), json_problem(exc))


def read_records(path: str | Path, **kwargs: Any) -> list[MCQRecord]:
    """Load a whole record file into a list (strict by default); see RecordReader for the options."""
    return list(RecordReader(path, **kwargs))


def write_records(path: str | Path, records: Iterable[MCQRecord]) -> int:
    """Atomically write records as JSONL; returns how many were written."""
    return write_jsonl(path, (r.to_dict() for r in records))
