"""The partly unconfirmed caption sources (speech, temporal, instruction QA): formats and adapters.

- **SpeechCraft (LibriTTS-R, English).** CONFIRMED: labels are gender, age, pitch, speed, volume, emotion, emphasis,
  transcript (thuhcsi/SpeechCraft README); the released annotation pipeline writes one JSON object keyed by utterance
  with ``{"labels": "age:..\\tgender:..\\tpitch:..\\tvolume:..\\tspeed:..\\temotion:..\\ttranscription: ..",
  "llama-instruction": "<text>"}``. UNCONFIRMED: the downloadable files' names and keys (cloud links only): read
  every ``*.json`` at the root as such an object; the text is ``description``, else ``llama-instruction``, else a
  plain-string value. Only keys ending in a LibriTTS-R utterance id (``<spk>_<chapter>_<6 digits>_<6 digits>``)
  are used (GigaSpeech-M was dropped by the paper: MMSU leakage); other keys come out as Rejected. ASSUMED: audio
  laid out ``<spk>/<chapter>/<utt>.wav`` (LibriTTS-R without its subset folder). Put the Description file here,
  not the Instruction one (that version quotes the transcript).
- **TACOS.** CONFIRMED: Zenodo record 15379789, 12,358 Freesound recordings with 47,748 captions, each tied to an
  onset/offset region (OptimusPrimus/tacos README, arXiv 2505.07609). UNCONFIRMED: the file layout; read every
  ``*.csv`` at the root with one region per row, ``filename, onset, offset, caption`` (DCASE strong-label style),
  grouped into one item per recording; a bad region is rejected, the recording keeps the rest.
- **CompA-R.** CONFIRMED: GAMA's instruction-tuning format (Sreyan88/GAMA README), a JSON array of
  ``{"audio_id": <path>, "instruction": .., "output": .., "dataset"?: .., "task"?: ..}``. UNCONFIRMED: the file name
  (Google Drive): read every ``*.json`` at the root; keep CompA-R-test out of it. Audio is addressed by the file
  name of ``audio_id`` (its directories are the authors' cluster paths).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from audiomcq.errors import AudioMCQError
from audiomcq.sdg.source_formats import (
    Adapter,
    AudioCaps,
    Clotho,
    LPMusicCaps,
    MusicCaps,
    Record,
    Rejected,
    SourceItem,
    _number,
    _problem,
    _text,
    csv_rows,
    load_json,
)


class SpeechCraft(Adapter):
    name = "SpeechCraft"
    pattern = "*.json"
    expected = "the SpeechCraft English description JSON (object keyed by utterance id)"
    LABELS = "labels"
    TEXTS = ("description", "llama-instruction")  # in order of preference
    RENAME: ClassVar[dict[str, str]] = {"transcription": "transcript"}
    UTTERANCE = re.compile(r"(?:^|[^0-9])(\d+)_(\d+)_(\d{6})_(\d{6})(?:\.wav)?$")

    def parse(self, path: Path, rel: str, split: str | None) -> Iterator[Record]:
        data = load_json(path, rel, self.name)
        if not isinstance(data, dict):
            kind = type(data).__name__
            raise AudioMCQError(
                f"{self.name}: {rel} should be a JSON object keyed by utterance id, not a {kind} "
                "(the format is UNCONFIRMED: see this module's docstring)"
            )
        for number, (key, value) in enumerate(data.items(), start=1):
            match = self.UTTERANCE.search(key)
            if not match:
                yield self.reject(rel, number, f"{key!r} is not a LibriTTS-R utterance id (only LibriTTS-R is used)")
                continue
            if isinstance(value, dict):
                text = next((_text(value[k]) for k in self.TEXTS if _text(value.get(k))), "")
                labels = self._labels(value.get(self.LABELS))
            else:
                text, labels = (_text(value), {}) if isinstance(value, str) else ("", {})
            if not text:
                yield self.reject(rel, number, f"{key}: no description ({', '.join(self.TEXTS)})")
                continue
            speaker, chapter = match.group(1), match.group(2)
            utt = "_".join(match.groups())
            meta = {**labels, "speaker": speaker, "chapter": chapter, "location": f"{rel}:{number}"}
            audio = f"SpeechCraft/{speaker}/{chapter}/{utt}.wav"
            yield SourceItem(self.name, f"speechcraft/{utt}", audio, caption=text, meta=meta)

    def _labels(self, labels: Any) -> dict[str, str]:
        """``"age:Elderly\\tgender:male\\t..."`` (or an already structured dict) -> {"age": "Elderly", ...}."""
        pairs = (
            labels.items()
            if isinstance(labels, dict)
            else (part.partition(":")[::2] for part in str(labels or "").split("\t") if ":" in part)
        )
        out = {}
        for key, value in pairs:
            name = _text(key).lower()
            out[self.RENAME.get(name, name)] = _text(value)
        return out


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
            name, text = row[self.FILE].strip(), _text(row[self.TEXT])
            onset, offset = _number(row[self.ONSET]), _number(row[self.OFFSET])
            timed = onset is not None and offset is not None
            problem = _problem(
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


class CompAR(Adapter):
    name = "CompA-R"
    pattern = "*.json"
    expected = "the CompA-R instruction-tuning JSON (array of audio_id/instruction/output)"
    AUDIO, QUESTION, ANSWER = "audio_id", "instruction", "output"
    EXTRA = ("dataset", "task")

    def __init__(self) -> None:
        self._per_audio: dict[str, int] = {}  # questions seen per recording: ids are <stem>#<k>

    def parse(self, path: Path, rel: str, split: str | None) -> Iterator[Record]:
        data = load_json(path, rel, self.name)
        if not isinstance(data, list):
            raise AudioMCQError(
                f"{self.name}: {rel} should be a JSON array of {{{self.AUDIO}, {self.QUESTION}, "
                f"{self.ANSWER}}} objects, not a {type(data).__name__}"
            )
        for number, entry in enumerate(data, start=1):
            if not isinstance(entry, dict):
                yield self.reject(rel, number, f"entry is a {type(entry).__name__}, not an object")
                continue
            audio = _text(entry.get(self.AUDIO)).replace("\\", "/")
            question, answer = _text(entry.get(self.QUESTION)), _text(entry.get(self.ANSWER))
            problem = _problem(
                (bool(PurePosixPath(audio).name), f"empty {self.AUDIO}"),
                (bool(question), f"empty {self.QUESTION}"),
                (bool(answer), f"empty {self.ANSWER}"),
            )
            if problem:
                yield self.reject(rel, number, problem)
                continue
            name = PurePosixPath(audio).name
            stem = PurePosixPath(name).stem
            k = self._per_audio[stem] = self._per_audio.get(stem, 0) + 1
            meta = {key: entry[key] for key in self.EXTRA if key in entry}
            meta |= {self.AUDIO: audio, "location": f"{rel}:{number}"}
            yield SourceItem(
                self.name, f"compa-r/{stem}#{k}", f"CompA-R/{name}", question=question, answer=answer, meta=meta
            )


ADAPTERS: tuple[type[Adapter], ...] = (Clotho, AudioCaps, MusicCaps, LPMusicCaps, SpeechCraft, TACOS, CompAR)
