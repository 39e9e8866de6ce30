"""Procedural 16 kHz audio for the synthetic corpus: tones, noise colours, clicks, melodies, onsets, speech.

Signals are float32 in [-1, 1]. Speech comes from espeak-ng when it is installed (each word synthesised once and
cached); without it the corpus is generated without the spoken families and says so once.
"""

from __future__ import annotations

import functools
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from audiomcq.audio import SR, load_audio, to_model_rate

log = logging.getLogger(__name__)


def tone(freq: float, dur: float, amp: float = 0.5, shape: str = "sine") -> np.ndarray:
    """A steady tone with 10 ms fades (no clicks at the edges)."""
    t = np.arange(int(dur * SR)) / SR
    phase = 2 * np.pi * freq * t
    wave = np.sign(np.sin(phase)) if shape == "square" else np.sin(phase)
    return _fade(amp * wave).astype(np.float32)


def noise(dur: float, rng: np.random.Generator, colour: str = "white", amp: float = 0.3) -> np.ndarray:
    """White, pink or brown noise, peak-normalised to ``amp``."""
    n = int(dur * SR)
    white = rng.standard_normal(n)
    if colour == "white":
        out = white
    else:
        spectrum = np.fft.rfft(white)
        f = np.maximum(np.fft.rfftfreq(n, 1 / SR), 1.0)
        out = np.fft.irfft(spectrum / (np.sqrt(f) if colour == "pink" else f), n)
    return _fade(amp * out / (np.max(np.abs(out)) + 1e-9)).astype(np.float32)


def clicks(dur: float, times: list[float], amp: float = 0.8) -> np.ndarray:
    """Short 5 ms clicks at the given times (s)."""
    out = np.zeros(int(dur * SR), dtype=np.float32)
    width = int(0.005 * SR)
    for t in times:
        i = int(t * SR)
        out[i : i + width] = amp * np.hanning(width)[: len(out[i : i + width])]
    return out


def melody(freqs: list[float], dur: float, amp: float = 0.5) -> np.ndarray:
    """Notes of equal length one after another."""
    step = dur / len(freqs)
    return np.concatenate([tone(f, step, amp) for f in freqs]).astype(np.float32)


def place(clip: np.ndarray, dur: float, onset: float) -> np.ndarray:
    """``clip`` placed at ``onset`` seconds in a silent ``dur``-second signal (cropped at the end)."""
    out = np.zeros(int(dur * SR), dtype=np.float32)
    i = int(onset * SR)
    part = clip[: max(0, len(out) - i)]
    out[i : i + len(part)] = part
    return out


def add_floor(signal: np.ndarray, rng: np.random.Generator, level: float = 0.003) -> np.ndarray:
    """A faint noise floor, so no clip is digitally silent (silence is reserved for the filtering probe)."""
    return (signal + level * rng.standard_normal(len(signal))).astype(np.float32)


def _fade(x: np.ndarray, ms: float = 10.0) -> np.ndarray:
    n = min(int(ms * SR / 1000), len(x) // 2)
    if n:
        ramp = np.linspace(0.0, 1.0, n)
        x = x.copy()
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def espeak_available() -> bool:
    """Whether espeak-ng is on PATH."""
    return shutil.which("espeak-ng") is not None


@functools.lru_cache(maxsize=256)
def speak(text: str, voice: str = "en-us", speed: int = 160) -> np.ndarray:
    """``text`` spoken by espeak-ng, resampled to 16 kHz; raises RuntimeError when espeak-ng is missing."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "s.wav"
        subprocess.run([exe, "-v", voice, "-s", str(speed), "-w", str(out), text], check=True, capture_output=True)
        return load_audio(out)


def resample(wave: np.ndarray, rate: int) -> np.ndarray:
    """Band-limited resampling to 16 kHz mono; kept for old imports, ``audiomcq.audio.to_model_rate`` does it."""
    return to_model_rate(wave, rate)


def write_wav(path: Path, signal: np.ndarray) -> None:
    """16-bit PCM mono WAV at 16 kHz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.clip(signal, -1.0, 1.0), SR, subtype="PCM_16")


def read_wav(path: str | Path) -> np.ndarray:
    """A WAV (any rate, any channels) as 16 kHz mono float32; kept for old imports of ``audiomcq.audio.load_audio``."""
    return load_audio(path)
