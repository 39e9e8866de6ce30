"""What every caption source's adapter shares: the records it yields, the readers of CSV, JSON and Parquet metadata,
and the adapter base class.

Every file name, column and key an adapter reads is a class attribute of that adapter, so a wrong guess is a one-line
fix. Locations in :class:`Rejected` are ``<file relative to the root>:<n>``: n is the CSV line where the record starts
(the header is line 1), the Parquet data row (from 1), or the JSON entry's position (from 1). Each adapter's module
says what is confirmed about its format, and where, and what is assumed.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from audiomcq.errors import AudioMCQError


@dataclass(frozen=True)
class SourceItem:
    """One (audio, caption) pair - for CompA-R one (audio, question, answer) - for question generation to use."""

    source: str
    id: str
    audio_path: str
    caption: str | None = None
    question: str | None = None
    answer: str | None = None
    segments: tuple[dict, ...] = ()
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Rejected:
    """A row that could not be used, located so that someone can find it and fix it."""

    source: str
    location: str
    reason: str


Record = SourceItem | Rejected


def one_line(value: Any) -> str:
    """A cell as one line of text: captions with line breaks or doubled spaces would leak into LLM prompts."""
    return " ".join(str(value).split()) if value is not None else ""


def as_number(value: Any) -> float | None:
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def as_flag(value: Any) -> bool | None:
    text = one_line(value).lower()
    return {"true": True, "1": True, "false": False, "0": False}.get(text)


def first_problem(*checks: tuple[bool, str]) -> str | None:
    """The first failed check's message: a row is rejected for the first thing wrong with it."""
    return next((message for ok, message in checks if not ok), None)


def csv_rows(path: Path, rel: str, source: str, required: Sequence[str]) -> Iterator[tuple[int, dict] | Rejected]:
    """(start line, row) per CSV record; a record with the wrong number of fields is a Rejected, a missing column or
    an undecodable file an error (no row of such a file can be trusted)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [name.strip() for name in next(reader, [])]
            missing = [name for name in required if name not in header]
            if missing:
                raise AudioMCQError(f"{source}: {rel} lacks column(s) {missing}; its header is {header}")
            end = reader.line_num
            for row in reader:
                start, end = end + 1, reader.line_num
                if not any(cell.strip() for cell in row):
                    continue  # a blank line is not a record
                if len(row) != len(header):
                    yield Rejected(source, f"{rel}:{start}", f"{len(row)} fields where the header has {len(header)}")
                    continue
                yield start, dict(zip(header, row, strict=True))
    except (UnicodeDecodeError, csv.Error) as err:
        raise AudioMCQError(f"{source}: {rel} is not a readable UTF-8 CSV: {err}") from err


def load_json(path: Path, rel: str, source: str) -> Any:
    try:
        with path.open(encoding="utf-8-sig") as fh:
            return json.load(fh)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AudioMCQError(f"{source}: {rel} is not valid JSON: {err}") from err


def parquet_rows(path: Path, rel: str, source: str, required: Sequence[str], optional: Sequence[str]) -> Iterator:
    """(row number, row) per Parquet row, read a batch at a time."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (OSError, ValueError) as err:
        raise AudioMCQError(f"{source}: {rel} is not a readable Parquet file: {err}") from err
    names = set(parquet.schema_arrow.names)
    missing = [name for name in required if name not in names]
    if missing:
        raise AudioMCQError(f"{source}: {rel} lacks column(s) {missing}; it has {sorted(names)}")
    columns = [name for name in (*required, *optional) if name in names]
    number = 0
    for batch in parquet.iter_batches(batch_size=4096, columns=columns):
        for row in batch.to_pylist():
            number += 1
            yield number, row


class Adapter:
    """One source: where its metadata files are and how each row becomes items. One instance per read."""

    name: ClassVar[str]
    splits: ClassVar[tuple[str, ...]] = ()  # file-level splits; () when the source is one set of files
    pattern: ClassVar[str]  # a path under the root: ``{split}`` is filled in per split, ``*`` matches within a folder
    expected: ClassVar[str]  # what the file is, for the error when it is missing

    def parse(self, path: Path, rel: str, split: str | None) -> Iterator[Record]:
        raise NotImplementedError

    def reject(self, rel: str, number: int, reason: str) -> Rejected:
        return Rejected(self.name, f"{rel}:{number}", reason)
