"""Sound caption sources: Clotho, AudioCaps and TACOS (captions tied to time regions).

- **Clotho v2.1.** CONFIRMED: ``clotho_captions_{development,validation,evaluation}.csv`` with columns ``file_name,
  caption_1..caption_5`` (DCASE 2020 task 6 baseline README, public Clotho loaders). ASSUMED: audio extracted as
  ``development/``, ``validation/``, ``evaluation/`` under the source's audio dir (the 7z archive names).
- **AudioCaps 2.0.** CONFIRMED: ``train.csv``, ``val.csv``, ``test.csv`` with ``audiocap_id, youtube_id, start_time,
  caption`` (cdjkim/audiocaps ``dataset2.0/README.md``); one caption per row, val/test clips have several rows.
  Audio named ``<youtube_id>_<start_time>.wav``, as AudioMCQ's own ``AudioCaps/9HUZjSJnUAA_30.wav``.
- **TACOS.** CONFIRMED: Zenodo record 15379789, 12,358 Freesound recordings with 47,748 captions, each tied to an
  onset/offset region (OptimusPrimus/tacos README, arXiv 2505.07609). UNCONFIRMED: the file layout; read every
  ``*.csv`` at the root with one region per row, ``filename, onset, offset, caption`` (DCASE strong-label style),
  grouped into one item per recording; a bad region is rejected, the recording keeps the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from audiomcq.sdg.sources.formats import (
    Adapter,
    Record,
    Rejected,
    SourceItem,
    as_number,
    csv_rows,
    first_problem,
    one_line,
)


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
                caption = one_line(row[column])
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
            cap_id, ytid, caption = row[self.ID].strip(), row[self.YTID].strip(), one_line(row[self.CAPTION])
            start = as_number(row[self.START])
            problem = first_problem(
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


class TACOS(Adapter):
    name = "TACOS"
    pattern = "*.csv"
    expected = "the TACOS strong-caption CSV (filename, onset, offset, caption)"
    FILE, ONSET, OFFSET, TEXT = "filename", "onset", "offset", "caption"

    def parse(self, path: Path, rel: str, split: str | None) -> Iterator[Record]:
        clips: dict[str, list[dict]] = {}  # recording -> regions; a recording's rows need not be adjacent
        first_line: dict[str, int] = {}
        for record in csv_rows(path, rel, self.name, (self.FILE, self.ONSET, self.OFFSET, self.TEXT)):
            if isinstance(record, Rejected):
                yield record
                continue
            line, row = record
            name, text = row[self.FILE].strip(), one_line(row[self.TEXT])
            onset, offset = as_number(row[self.ONSET]), as_number(row[self.OFFSET])
            timed = onset is not None and offset is not None
            problem = first_problem(
                (bool(name), f"empty {self.FILE}"),
                (timed, f"{self.ONSET}/{self.OFFSET} {row[self.ONSET]!r}/{row[self.OFFSET]!r} are not numbers"),
                (not timed or onset >= 0, f"negative {self.ONSET} {onset}"),
                (not timed or offset > onset, f"{self.OFFSET} {offset} is not after {self.ONSET} {onset}"),
                (bool(text), f"empty {self.TEXT}"),
            )
            if problem:
                yield self.reject(rel, line, problem)
                continue
            clips.setdefault(name, []).append({"start": onset, "end": offset, "text": text})
            first_line.setdefault(name, line)
        for name, regions in clips.items():
            segments = tuple(sorted(regions, key=lambda s: (s["start"], s["end"], s["text"])))
            timeline = "; ".join(f"[{s['start']:g}s-{s['end']:g}s] {s['text']}" for s in segments)
            meta = {"n_segments": len(segments), "location": f"{rel}:{first_line[name]}"}
            stem = PurePosixPath(name).stem
            yield SourceItem(
                self.name, f"tacos/{stem}", f"TACOS/{name}", caption=timeline, segments=segments, meta=meta
            )
