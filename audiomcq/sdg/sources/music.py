"""Music caption sources: MusicCaps and LP-MusicCaps (MagnaTagATune).

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
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from audiomcq.sdg.sources.formats import (
    Adapter,
    Record,
    Rejected,
    SourceItem,
    as_flag,
    as_number,
    csv_rows,
    first_problem,
    one_line,
    parquet_rows,
)


def _literal_list(value: str) -> list[str] | str:
    """MusicCaps writes aspect lists as Python literals; keep the raw text when one does not parse."""
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value
    return [one_line(v) for v in parsed] if isinstance(parsed, list | tuple) else value


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
            ytid, caption = row[self.YTID].strip(), one_line(row[self.CAPTION])
            start, end = as_number(row[self.START]), as_number(row[self.END])
            timed = start is not None and end is not None
            problem = first_problem(
                (bool(ytid), f"empty {self.YTID}"),
                (timed, f"{self.START}/{self.END} {row[self.START]!r}/{row[self.END]!r} are not numbers"),
                (not timed or 0 <= start < end, f"{self.END} {end} is not after {self.START} {start}"),
                (bool(caption), "empty caption"),
            )
            if problem:
                yield self.reject(rel, line, problem)
                continue
            is_eval = as_flag(row.get(self.EVAL))
            author = as_number(row.get(self.AUTHOR))
            meta = {
                "split": None if is_eval is None else ("eval" if is_eval else "train"),
                "start_s": start,
                "end_s": end,
                "audioset_positive_labels": [m.strip() for m in (row.get(self.LABELS) or "").split(",") if m.strip()],
                "aspect_list": _literal_list(row.get(self.ASPECTS) or "[]"),
                "author_id": None if author is None else int(author),
                "is_balanced_subset": as_flag(row.get(self.BALANCED)),
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
            track, audio = one_line(row[self.TRACK]), one_line(row[self.PATH])
            chosen = next((c for c in self.CAPTIONS if one_line(row.get(c))), None)
            problem = first_problem(
                (bool(track), f"empty {self.TRACK}"),
                (bool(audio), f"empty {self.PATH}"),
                (chosen is not None, f"no caption ({', '.join(self.CAPTIONS)} all empty)"),
            )
            if problem:
                yield self.reject(rel, number, problem)
                continue
            meta = {key: row[key] for key in self.EXTRA if key in row}
            meta |= {"split": split, "caption_field": chosen, "location": f"{rel}:{number}"}
            caption = one_line(row[chosen])
            yield SourceItem(self.name, f"lp-musiccaps/{track}", f"LP-MusicCaps/{audio}", caption=caption, meta=meta)
