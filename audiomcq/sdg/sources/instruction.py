"""The instruction-QA source: CompA-R, whose items already hold a question and its answer.

- **CompA-R.** CONFIRMED: GAMA's instruction-tuning format (Sreyan88/GAMA README), a JSON array of
  ``{"audio_id": <path>, "instruction": .., "output": .., "dataset"?: .., "task"?: ..}``. UNCONFIRMED: the file name
  (Google Drive): read every ``*.json`` at the root; keep CompA-R-test out of it. Audio is addressed by the file
  name of ``audio_id`` (its directories are the authors' cluster paths).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from audiomcq.errors import AudioMCQError
from audiomcq.sdg.sources.formats import Adapter, Record, SourceItem, first_problem, load_json, one_line


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
            audio = one_line(entry.get(self.AUDIO)).replace("\\", "/")
            question, answer = one_line(entry.get(self.QUESTION)), one_line(entry.get(self.ANSWER))
            problem = first_problem(
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
