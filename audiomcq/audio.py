"""The one place audio is decoded and brought to the models' input: 16 kHz mono float32.

Training, filtering, evaluation, serving and GRPO rollouts all call ``load_audio`` (or ``to_model_rate`` on samples
they decoded after their own checks), so a clip reaches every model as the same samples and the same features.
Resampling is band-limited (soxr, "HQ"): plain interpolation folds content above 8 kHz back into the band the
model hears (a 12 kHz tone at 44.1 kHz would come out as a loud 4 kHz one).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16_000


def to_model_rate(wave: np.ndarray, rate: int) -> np.ndarray:
    """``(frames,)`` or ``(frames, channels)`` samples at ``rate`` Hz as contiguous 16 kHz mono float32.

    Channels are averaged; a 16 kHz input is returned as is (after the mix) so already-native clips are untouched.
    """
    wave = np.asarray(wave)
    if wave.ndim not in (1, 2):
        raise ValueError(f"audio must be (frames,) or (frames, channels), not shape {wave.shape}")
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, not {rate}")
    mono = wave.astype(np.float32, copy=False)
    if mono.ndim == 2:
        mono = mono.mean(axis=1)
    if rate == SR or mono.size == 0:
        return np.ascontiguousarray(mono, dtype=np.float32)
    import soxr  # imported here: only clips that are not already 16 kHz need it

    return np.ascontiguousarray(soxr.resample(np.ascontiguousarray(mono), rate, SR, quality="HQ"), dtype=np.float32)


def model_samples(frames: int, rate: int) -> int:
    """How many 16 kHz samples ``to_model_rate`` makes of ``frames`` samples at ``rate`` Hz (soxr rounds half up),
    known from a file's header without decoding it."""
    return frames if rate == SR else (2 * frames * SR + rate) // (2 * rate)


def header_samples(path: str | Path) -> int:
    """A file's length in 16 kHz samples, from its header alone."""
    info = sf.info(str(path))
    return model_samples(int(info.frames), int(info.samplerate))


def decode(source: str | Path | bytes) -> tuple[np.ndarray, int]:
    """``(frames, channels)`` float32 samples and the sample rate of an audio file or its bytes."""
    data = io.BytesIO(source) if isinstance(source, bytes | bytearray) else str(source)
    wave, rate = sf.read(data, dtype="float32", always_2d=True)
    return wave, int(rate)


def load_audio(source: str | Path | bytes) -> np.ndarray:
    """An audio file (path or bytes; any rate, any channels) as the 16 kHz mono float32 a model is given."""
    return to_model_rate(*decode(source))
