"""Probes: the ways a filter model is asked a question without hearing its audio.

- ``silence[:S]``: the paper's probe, S seconds of zeros (default 30 s; ``silence:clip`` matches each clip's length).
- ``noise[:S]``: Gaussian noise instead of silence (the MMAU/RUListening ablation), seeded by the record id.
- ``mismatch[:K]``: the clip of the record K places later in the same chunk. A model with a shared constant guess
  in silence answers a mismatched clip from *that clip*, so its chance hits stop being the same item for every model.
- ``shuffle[:K]``: silence with the choices rotated K places, which breaks "always pick option X" guessing.
- ``audio``: the real clip (the with-audio control).
"""

from __future__ import annotations

import functools
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audiomcq.audio import SR, AudioError, fit_window, load_checked
from audiomcq.data.record import MCQRecord, resolve_audio
from audiomcq.inference import Request

log = logging.getLogger(__name__)
KINDS = ("silence", "noise", "mismatch", "shuffle", "audio")


@dataclass(frozen=True)
class Probe:
    """One probe; ``arg`` is seconds for silence/noise (None: the clip's length) and a shift for mismatch/shuffle."""

    kind: str
    arg: float | None = None

    @classmethod
    def parse(cls, text: str) -> Probe:
        kind, _, arg = text.partition(":")
        if kind not in KINDS:
            raise ValueError(f"probe must be one of {', '.join(KINDS)} (with an optional :ARG), not {text!r}")
        if kind in ("silence", "noise"):
            return cls(kind, None if arg == "clip" else float(arg or 30.0))
        if kind in ("mismatch", "shuffle"):
            shift = int(arg or 1)
            if shift < 1:
                raise ValueError(f"{text!r}: the shift must be >= 1")
            return cls(kind, shift)
        return cls(kind)

    @property
    def name(self) -> str:
        if self.kind in ("silence", "noise"):
            return f"{self.kind}:{'clip' if self.arg is None else f'{self.arg:g}'}"
        return self.kind if self.arg is None else f"{self.kind}:{int(self.arg)}"

    @property
    def hides_audio(self) -> bool:
        """Whether the model answers without the record's own audio (every probe but ``audio``)."""
        return self.kind != "audio"


@dataclass
class Clips:
    """The real clips of one chunk, loaded once for all models and probes; ``None`` where the file is missing or
    no model could hear it (``status`` says which: ok, missing, corrupt). A clip longer than the models' window is
    cut to it here, where it is counted (``trimmed``), rather than by the processor unannounced."""

    waves: list[np.ndarray | None]
    fallback_seconds: float = 30.0
    status: list[str] = field(default_factory=list)
    trimmed: list[bool] = field(default_factory=list)

    @classmethod
    def load(cls, records: Sequence[MCQRecord], audio_root: str | Path | None, fallback: float = 30.0) -> Clips:
        waves: list[np.ndarray | None] = []
        status: list[str] = []
        trimmed: list[bool] = []
        for r in records:
            path = resolve_audio(r, audio_root) if audio_root is not None else Path(r.audio_path or "")
            wave, state, cut = None, "missing", False
            if path is not None and path.is_file():
                try:
                    wave, cut = fit_window(load_checked(path, where=f"record {r.id} ({path})"))
                    state = "ok"
                except AudioError as err:  # counted as audio_corrupt; the run goes on
                    log.warning("%s", err)
                    state = "corrupt"
            waves.append(wave)
            status.append(state)
            trimmed.append(cut)
        return cls(waves, fallback, status, trimmed)

    def seconds(self, i: int) -> float:
        wave = self.waves[i]
        return self.fallback_seconds if wave is None else len(wave) / SR


def requests(probe: Probe, records: Sequence[MCQRecord], clips: Clips) -> tuple[list[Request], list[tuple[str, ...]]]:
    """The requests for ``probe`` over a chunk, and the choices each was shown (for judging)."""
    out, shown = [], []
    for i, r in enumerate(records):
        choices = tuple(r.choices)
        if probe.kind == "shuffle":
            k = int(probe.arg or 1) % len(choices)
            choices = choices[k:] + choices[:k]
        out.append(Request(r.question, choices, _audio(probe, records, clips, i)))
        shown.append(choices)
    return out, shown


def _audio(probe: Probe, records: Sequence[MCQRecord], clips: Clips, i: int) -> np.ndarray:
    if probe.kind == "audio":
        wave = clips.waves[i]
        return wave if wave is not None else np.zeros(SR, np.float32)  # no clip: answered but never counted
    if probe.kind == "mismatch":
        donor = _donor(clips, i, int(probe.arg or 1))
        if donor is not None:
            return donor
    seconds = probe.arg if probe.kind in ("silence", "noise") and probe.arg is not None else clips.seconds(i)
    n = int(seconds * SR)
    if probe.kind == "noise":
        rng = np.random.default_rng(zlib.crc32(records[i].id.encode()))
        return (0.01 * rng.standard_normal(n)).astype(np.float32)
    return silence(n)


@functools.lru_cache(maxsize=16)
def silence(samples: int) -> np.ndarray:
    """One read-only array of zeros per length, shared by every question (the engine encodes it once)."""
    wave = np.zeros(samples, np.float32)
    wave.flags.writeable = False
    return wave


def _donor(clips: Clips, i: int, shift: int) -> np.ndarray | None:
    """The clip ``shift`` places later in the chunk (cyclic), skipping missing files and the record itself;
    None (fall back to silence) when the chunk has no other clip."""
    n = len(clips.waves)
    for step in range(n - 1):
        j = (i + shift + step) % n
        if j != i and clips.waves[j] is not None:
            return clips.waves[j]
    return None
