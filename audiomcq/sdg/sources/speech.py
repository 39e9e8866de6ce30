"""The speech caption source: SpeechCraft's descriptions of LibriTTS-R utterances.

- **SpeechCraft (LibriTTS-R, English).** CONFIRMED: labels are gender, age, pitch, speed, volume, emotion, emphasis,
  transcript (thuhcsi/SpeechCraft README); the released annotation pipeline writes one JSON object keyed by utterance
  with ``{"labels": "age:..\\tgender:..\\tpitch:..\\tvolume:..\\tspeed:..\\temotion:..\\ttranscription: ..",
  "llama-instruction": "<text>"}``. UNCONFIRMED: the downloadable files' names and keys (cloud links only): read
  every ``*.json`` at the root as such an object; the text is ``description``, else ``llama-instruction``, else a
  plain-string value. Only keys ending in a LibriTTS-R utterance id (``<spk>_<chapter>_<6 digits>_<6 digits>``)
  are used (GigaSpeech-M was dropped by the paper: MMSU leakage); other keys come out as Rejected. ASSUMED: audio
  laid out ``<spk>/<chapter>/<utt>.wav`` (LibriTTS-R without its subset folder). Put the Description file here,
  not the Instruction one (that version quotes the transcript).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from audiomcq.errors import AudioMCQError
from audiomcq.sdg.sources.formats import Adapter, Record, SourceItem, load_json, one_line


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
                text = next((one_line(value[k]) for k in self.TEXTS if one_line(value.get(k))), "")
                labels = self._labels(value.get(self.LABELS))
            else:
                text, labels = (one_line(value), {}) if isinstance(value, str) else ("", {})
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
            name = one_line(key).lower()
            out[self.RENAME.get(name, name)] = one_line(value)
        return out
