"""The seven AudioMCQ caption sources' published metadata formats, and how each row becomes an item.

Every file name, column and key an adapter reads is a class attribute of that adapter, so a wrong guess is a one-line
fix. Locations in :class:`Rejected` are ``<file relative to the root>:<n>``: n is the CSV line where the record starts
(the header is line 1), the Parquet data row (from 1), or the JSON entry's position (from 1).

What was confirmed, and where, vs assumed:

- **Clotho v2.1.** CONFIRMED: ``clotho_captions_{development,validation,evaluation}.csv`` with columns ``file_name,
  caption_1..caption_5`` (DCASE 2020 task 6 baseline README, public Clotho loaders). ASSUMED: audio extracted as
  ``development/``, ``validation/``, ``evaluation/`` under the source's audio dir (the 7z archive names).
- **AudioCaps 2.0.** CONFIRMED: ``train.csv``, ``val.csv``, ``test.csv`` with ``audiocap_id, youtube_id, start_time,
  caption`` (cdjkim/audiocaps ``dataset2.0/README.md``); one caption per row, val/test clips have several rows.
  Audio named ``<youtube_id>_<start_time>.wav``, as AudioMCQ's own ``AudioCaps/9HUZjSJnUAA_30.wav``.
- **MusicCaps.** CONFIRMED: ``musiccaps-public.csv`` with ``ytid, start_s, end_s, audioset_positive_labels,
  aspect_list, caption, author_id, is_balanced_subset, is_audioset_eval`` (Kaggle/HF ``google/MusicCaps`` card);
  ``aspect_list`` is a Python-list literal, labels a comma-separated MID list. ASSUMED: clips saved as
  ``<ytid>.wav`` (the usual download script); no file-level splits (``meta["split"]`` comes from
  ``is_audioset_eval``).
- **LP-MusicCaps (MTT).** CONFIRMED: HF ``seungheondoh/LP-MusicCaps-MTT`` ships Parquet only,
  ``data/{train,valid,test}-*.parquet`` (repo tree), features ``track_id, title, artist_name, release, tag_top50,
  tag_top188, caption_writing, caption_summary, caption_paraphrase, caption_attribute_prediction, pseudo_attribute,
  path`` (card ``dataset_info``); the card warns against ``caption_attribute_prediction`` and says ~4k rows have empty
  tags and captions; it mentions ``is_crawled``, which the listed features lack, so it is kept only when present.
  CHOICE: one caption per track (the paper's 15.6k questions fit one per clip): ``caption_writing``, else
  ``caption_summary``, else ``caption_paraphrase``, recorded in ``meta["caption_field"]``. ASSUMED: ``path`` is
  relative to the MagnaTagATune mp3 root.
- **SpeechCraft, TACOS, CompA-R**: see ``audiomcq.sdg.source_formats_more``.
"""

from __future__ import annotations

import ast
import csv
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from audiomcq.errors import AudioMCQError

log = logging.getLogger(__name__)


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


def _text(value: Any) -> str:
    """A cell as one line of text: captions with line breaks or doubled spaces would leak into LLM prompts."""
    return " ".join(str(value).split()) if value is not None else ""


def _number(value: Any) -> float | None:
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _flag(value: Any) -> bool | None:
    text = _text(value).lower()
    return {"true": True, "1": True, "false": False, "0": False}.get(text)


def _problem(*checks: tuple[bool, str]) -> str | None:
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


class Clotho(Adapter):
    name = "Clotho"
    splits = ("development", "validation", "evaluation")
    pattern = "clotho_captions_{split}.csv"
    expected = "the Clotho v2.1 captions CSV"
    FILE = "file_name"
    CAPTIONS = tuple(f"caption_{k}" for k in range(1, 6))

    def parse(self, path: Path, rel: str, split: str | None) -> Iterator[Record]:
        for record in csv_rows(path, rel, self.name, (self.FILE, *self.CAPTIONS)):
            if isinstance(record, Rejected):
                yield record
                continue
            line, row = record
            name = row[self.FILE].strip()
            if not name:
                yield self.reject(rel, line, f"empty {self.FILE}")
                continue
            stem = PurePosixPath(name).stem
            for k, column in enumerate(self.CAPTIONS, start=1):  # one item per caption: the paper pairs audio/caption
                caption = _text(row[column])
                if not caption:
                    yield self.reject(rel, line, f"{name}: empty {column}")
                    continue
                meta = {"split": split, "file_name": name, "caption_index": k, "location": f"{rel}:{line}"}
                yield SourceItem(self.name, f"clotho/{stem}#{k}", f"Clotho/{split}/{name}", caption=caption, meta=meta)


class AudioCaps(Adapter):
    name = "AudioCaps"
    splits = ("train", "val", "test")
    pattern = "{split}.csv"
    expected = "the AudioCaps 2.0 CSV (audiocap_id, youtube_id, start_time, caption)"
    ID, YTID, START, CAPTION = "audiocap_id", "youtube_id", "start_time", "caption"

    def parse(self, path: Path, rel: str, split: str | None) -> Iterator[Record]:
        for record in csv_rows(path, rel, self.name, (self.ID, self.YTID, self.START, self.CAPTION)):
            if isinstance(record, Rejected):
                yield record
                continue
            line, row = record
            cap_id, ytid, caption = row[self.ID].strip(), row[self.YTID].strip(), _text(row[self.CAPTION])
            start = _number(row[self.START])
            problem = _problem(
                (bool(cap_id), f"empty {self.ID}"),
                (bool(ytid), f"empty {self.YTID}"),
                (start is not None and start >= 0, f"{self.START} {row[self.START]!r} is not a number of seconds"),
                (bool(caption), "empty caption"),
            )
            if problem:
                yield self.reject(rel, line, problem)
                continue
            seconds = int(start) if start.is_integer() else start  # "30.0" and "30" name the same clip, _30.wav
            meta = {"split": split, "youtube_id": ytid, "start_time": seconds, "location": f"{rel}:{line}"}
            audio = f"AudioCaps/{ytid}_{seconds}.wav"
            yield SourceItem(self.name, f"audiocaps/{cap_id}", audio, caption=caption, meta=meta)


def _literal_list(value: str) -> list[str] | str:
    """MusicCaps writes aspect lists as Python literals; keep the raw text when one does not parse."""
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value
    return [_text(v) for v in parsed] if isinstance(parsed, list | tuple) else value


class MusicCaps(Adapter):
    name = "MusicCaps"
    pattern = "musiccaps-public.csv"
    expected = "the MusicCaps metadata CSV"
    YTID, START, END, CAPTION = "ytid", "start_s", "end_s", "caption"
    LABELS, ASPECTS, AUTHOR = "audioset_positive_labels", "aspect_list", "author_id"
    BALANCED, EVAL = "is_balanced_subset", "is_audioset_eval"

    def parse(self, path: Path, rel: str, split: str | None) -> Iterator[Record]:
        for record in csv_rows(path, rel, self.name, (self.YTID, self.START, self.END, self.CAPTION)):
            if isinstance(record, Rejected):
                yield record
                continue
            line, row = record
            ytid, caption = row[self.YTID].strip(), _text(row[self.CAPTION])
            start, end = _number(row[self.START]), _number(row[self.END])
            timed = start is not None and end is not None
            problem = _problem(
                (bool(ytid), f"empty {self.YTID}"),
                (timed, f"{self.START}/{self.END} {row[self.START]!r}/{row[self.END]!r} are not numbers"),
                (not timed or 0 <= start < end, f"{self.END} {end} is not after {self.START} {start}"),
                (bool(caption), "empty caption"),
            )
            if problem:
                yield self.reject(rel, line, problem)
                continue
            is_eval = _flag(row.get(self.EVAL))
            author = _number(row.get(self.AUTHOR))
            meta = {
                "split": None if is_eval is None else ("eval" if is_eval else "train"),
                "start_s": start,
                "end_s": end,
                "audioset_positive_labels": [m.strip() for m in (row.get(self.LABELS) or "").split(",") if m.strip()],
                "aspect_list": _literal_list(row.get(self.ASPECTS) or "[]"),
                "author_id": None if author is None else int(author),
                "is_balanced_subset": _flag(row.get(self.BALANCED)),
                "is_audioset_eval": is_eval,
                "location": f"{rel}:{line}",
            }
            yield SourceItem(self.name, f"musiccaps/{ytid}", f"MusicCaps/{ytid}.wav", caption=caption, meta=meta)


class LPMusicCaps(Adapter):
    name = "LP-MusicCaps"
    splits = ("train", "valid", "test")
    pattern = "data/{split}-*.parquet"
    expected = "the LP-MusicCaps-MTT Parquet shard(s) from Hugging Face"
    TRACK, PATH = "track_id", "path"
    CAPTIONS = ("caption_writing", "caption_summary", "caption_paraphrase")  # in order of preference
    EXTRA = ("title", "artist_name", "release", "tag_top50", "tag_top188", "is_crawled")

    def parse(self, path: Path, rel: str, split: str | None) -> Iterator[Record]:
        required = (self.TRACK, self.PATH, self.CAPTIONS[0])
        for number, row in parquet_rows(path, rel, self.name, required, (*self.CAPTIONS[1:], *self.EXTRA)):
            track, audio = _text(row[self.TRACK]), _text(row[self.PATH])
            chosen = next((c for c in self.CAPTIONS if _text(row.get(c))), None)
            problem = _problem(
                (bool(track), f"empty {self.TRACK}"),
                (bool(audio), f"empty {self.PATH}"),
                (chosen is not None, f"no caption ({', '.join(self.CAPTIONS)} all empty)"),
            )
            if problem:
                yield self.reject(rel, number, problem)
                continue
            meta = {key: row[key] for key in self.EXTRA if key in row}
            meta |= {"split": split, "caption_field": chosen, "location": f"{rel}:{number}"}
            caption = _text(row[chosen])
            yield SourceItem(self.name, f"lp-musiccaps/{track}", f"LP-MusicCaps/{audio}", caption=caption, meta=meta)
