"""The one place audio is decoded and brought to the models' input: 16 kHz mono float32.

Training, filtering, evaluation, serving and GRPO rollouts all call ``load_audio`` (or ``to_model_rate`` on samples
they decoded after their own checks), so a clip reaches every model as the same samples and the same features.
Resampling is band-limited (soxr, "HQ"): plain interpolation folds content above 8 kHz back into the band the
model hears (a 12 kHz tone at 44.1 kHz would come out as a loud 4 kHz one).

``load_checked`` is the strict variant for the stages that answer questions about many clips (filtering,
evaluation, ``data validate``): a clip no model can hear (unreadable, empty, too short, NaN/inf or absurdly loud
samples) raises ``AudioError`` with a ``code`` the stage counts, instead of crashing the model deep inside a batch
or feeding it garbage. Training keeps ``load_audio``: its non-finite guard stops at the first NaN loss and names the
record.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf

from audiomcq.errors import AudioMCQError

SR = 16_000
WINDOW_SECONDS = 30.0  # what both model families' audio encoders hear; their processors cut the rest unannounced
MIN_SECONDS = 0.1  # both model families fail on clips under about 1,000 samples at 16 kHz
MIN_SAMPLES = round(MIN_SECONDS * SR)
# Full scale is 1.0; a float file may overshoot a little, but 60 dB above full scale is corrupt or mis-scaled
# samples (integers stored as floats, garbage), which turn the model's features into inf/NaN.
MAX_AMPLITUDE = 1e3


class AudioError(AudioMCQError):
    """A clip that cannot be given to a model; ``code`` (unreadable, empty, too_short, non_finite, too_loud) is what
    stages count it under."""

    def __init__(self, where: str, code: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.code, self.where, self.reason = code, where, reason


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


def check_samples(wave: np.ndarray, where: str) -> None:
    """Raise ``AudioError`` for non-finite or absurdly loud samples."""
    if not np.isfinite(wave).all():
        raise AudioError(where, "non_finite", "the audio has NaN or infinite samples")
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if peak > MAX_AMPLITUDE:
        raise AudioError(
            where,
            "too_loud",
            f"the audio's peak amplitude is {peak:.3g}, beyond any recording (full "
            f"scale is 1.0; above {MAX_AMPLITUDE:g} the samples are corrupt or mis-scaled)",
        )


def load_checked(source: str | Path | bytes, where: str | None = None) -> np.ndarray:
    """``load_audio`` for clips a model will be asked about: raises ``AudioError`` (naming ``where``, by default the
    file) for an unreadable or empty file, non-finite or absurd samples, or a clip shorter than ``MIN_SECONDS``. A
    clip longer than the window is returned whole; ``fit_window`` says what the model hears of it."""
    where = where or ("audio" if isinstance(source, bytes | bytearray) else str(source))
    try:
        wave, rate = decode(source)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as err:
        raise AudioError(where, "unreadable", f"unreadable audio ({err})") from None
    if wave.shape[0] == 0:
        raise AudioError(where, "empty", "the audio has no samples")
    check_samples(wave, where)
    mono = to_model_rate(wave, rate)
    if mono.size < MIN_SAMPLES:
        seconds = f"{mono.size / SR:.4f} s ({mono.size} samples at 16 kHz)"
        raise AudioError(where, "too_short", f"the audio lasts {seconds}, under the {MIN_SECONDS:g} s a model takes")
    return mono


def fit_window(wave: np.ndarray, seconds: float = WINDOW_SECONDS) -> tuple[np.ndarray, bool]:
    """The part of a 16 kHz clip a model hears (its first ``seconds``) and whether anything was cut, so a stage can
    count the cut clips instead of the processor cutting them unannounced."""
    limit = round(seconds * SR)
    return (wave[:limit], True) if wave.size > limit else (wave, False)
