"""How many tokens a record costs a model, audio placeholders included, without encoding its audio.

Both families' processors replace the prompt's one ``<|AUDIO|>`` with one token per 40 ms of audio: the clip's
mel frames (one per 160 samples at 16 kHz, rounded up, cut at the extractor's window) go through two stride-2
reductions. Counting from the file header makes the check cheap enough to run over a whole training set before a
run starts (``audiomcq data validate --max-length``) and inside the trainers; a test holds it equal to the
processors' own expansion.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from audiomcq.data.record import MCQRecord

HOP = 160  # samples per mel frame at 16 kHz, for every Whisper-style extractor these models use


def audio_tokens(processor: Any, samples: int) -> int:
    """The number of ``<|AUDIO|>`` tokens ``processor`` expands a clip of ``samples`` 16 kHz samples into."""
    extractor = processor.feature_extractor
    frames = -(-samples // HOP)
    window = getattr(extractor, "n_samples", None)
    if window and not getattr(processor, "audio_unbounded", False):
        frames = min(frames, window // HOP)
    return ((frames - 1) // 2 + 1 - 2) // 2 + 1


def text_tokens(processor: Any, text: str, samples: int) -> int:
    """Tokens of a chat text holding one audio placeholder once the audio (``samples`` at 16 kHz) is expanded."""
    ids = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    return len(ids) - 1 + audio_tokens(processor, samples)  # the one placeholder becomes the audio's tokens


def record_tokens(processor: Any, record: MCQRecord, samples: int, target: str | None = None) -> int:
    """Tokens of ``record``'s chat prompt (and ``target``, the SFT answer with its end token, when given) once its
    audio of ``samples`` 16 kHz samples is expanded."""
    from audiomcq.models.batch import prompt_text

    return text_tokens(processor, prompt_text(processor, record.question, record.choices) + (target or ""), samples)


def token_counts(
    processor: Any, records: Iterable[MCQRecord], audio_root: str | Path | None, target: Any = None
) -> Iterator[tuple[MCQRecord, int | None]]:
    """Every record with its token count, or None when its audio cannot be read (the stage reports that itself);
    ``target(record)`` gives the SFT answer text."""
    from audiomcq.audio import header_samples

    for record in records:
        path = Path(record.audio_path or "")
        if audio_root is not None and not path.is_absolute():
            path = Path(audio_root) / path
        try:
            samples = header_samples(path)
        except (OSError, RuntimeError, ValueError):
            yield record, None
            continue
        yield record, record_tokens(processor, record, samples, target(record) if target else None)
