"""The one audio loader: band-limited resampling to 16 kHz, and the same samples and features on every path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiomcq.audio import SR, decode, load_audio, to_model_rate
from audiomcq.data.record import MCQRecord


def _sine(freq: float, rate: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _energy(wave: np.ndarray) -> float:
    """Mean power (RMS squared), so clips of different lengths and rates compare."""
    return float(np.mean(np.square(wave.astype(np.float64))))


def _wav(path: Path, wave: np.ndarray, rate: int) -> Path:
    sf.write(path, wave, rate, subtype="FLOAT")  # float WAV: no quantisation between the test signal and the file
    return path


def test_a_tone_above_8_khz_is_filtered_out_not_folded_back(tmp_path):
    """At 44.1 kHz a 12 kHz tone is above the 16 kHz Nyquist; interpolation would alias it to a loud 4 kHz tone."""
    source = _sine(12_000, 44_100)
    out = load_audio(_wav(tmp_path / "high.wav", source, 44_100))
    assert out.dtype == np.float32 and len(out) == SR
    ratio = _energy(out) / _energy(source)
    assert ratio < 0.01, f"{ratio:.4f} of the 12 kHz tone's energy survived resampling to 16 kHz"


def test_a_tone_in_band_keeps_its_energy_and_its_frequency(tmp_path):
    source = _sine(1_000, 44_100)
    out = load_audio(_wav(tmp_path / "low.wav", source, 44_100))
    assert out.dtype == np.float32 and len(out) == SR
    ratio = _energy(out) / _energy(source)
    assert ratio > 0.95, f"only {ratio:.4f} of the 1 kHz tone's energy survived resampling"
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    peak = np.fft.rfftfreq(len(out), 1 / SR)[int(np.argmax(spectrum))]
    assert peak == pytest.approx(1_000, abs=2)


def test_16_khz_mono_passes_through_and_channels_are_averaged():
    wave = _sine(440, SR)
    assert np.array_equal(to_model_rate(wave, SR), wave)
    stereo = np.stack([wave, np.zeros_like(wave)], axis=1)
    assert np.array_equal(to_model_rate(stereo, SR), stereo.mean(axis=1))
    assert to_model_rate(stereo, SR).flags["C_CONTIGUOUS"]
    with pytest.raises(ValueError):
        to_model_rate(wave[None, None], SR)


def test_decode_reads_paths_and_bytes_alike(tmp_path):
    path = _wav(tmp_path / "a.wav", np.stack([_sine(300, 22_050), _sine(600, 22_050)], axis=1), 22_050)
    from_path, rate = decode(path)
    from_bytes, rate_b = decode(path.read_bytes())
    assert rate == rate_b == 22_050 and from_path.shape == (22_050, 2) and from_path.dtype == np.float32
    assert np.array_equal(from_path, from_bytes)


def test_old_names_delegate_to_the_loader(tmp_path):
    from audiomcq.synth import audio as A

    path = _wav(tmp_path / "high.wav", _sine(12_000, 44_100), 44_100)
    assert A.SR == SR
    assert np.array_equal(A.read_wav(path), load_audio(path))
    assert np.array_equal(A.resample(_sine(12_000, 44_100), 44_100), load_audio(path))


@pytest.fixture
def stereo_clip(tmp_path) -> tuple[Path, MCQRecord, np.ndarray]:
    """A 48 kHz stereo WAV (a tone per channel, different ones) under ``tmp_path``, its record, its 16 kHz samples."""
    rate = 48_000
    stereo = np.stack([_sine(440, rate, 1.5, 0.4), _sine(3_000, rate, 1.5, 0.3)], axis=1)
    (tmp_path / "clips").mkdir()
    sf.write(tmp_path / "clips" / "stereo.wav", stereo, rate, subtype="PCM_16")
    record = MCQRecord(
        id="r1", question="What is heard?", choices=["a", "b"], answer="a", audio_path="clips/stereo.wav"
    )
    reference = load_audio(tmp_path / "clips" / "stereo.wav")
    assert reference.dtype == np.float32 and len(reference) == int(1.5 * SR)
    return tmp_path, record, reference


def _whisper_features(wave: np.ndarray) -> np.ndarray:
    from transformers import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor(feature_size=128, sampling_rate=SR)
    return extractor(wave, sampling_rate=SR, return_tensors="np")["input_features"]


def _assert_same_as_reference(waves: dict[str, np.ndarray], reference: np.ndarray) -> None:
    expected = _whisper_features(reference)
    assert expected.shape[1] == 128 and np.abs(expected).sum() > 0
    for name, wave in waves.items():
        assert wave.dtype == np.float32 and wave.tobytes() == reference.tobytes(), name
        assert np.array_equal(_whisper_features(wave), expected), name


def test_every_reader_gives_the_same_16_khz_samples_and_whisper_features(stereo_clip):
    """Training, evaluation, GRPO rollouts and the ACF probes hand a model the very samples ``load_audio`` returns."""
    from audiomcq.acf.probes import Clips
    from audiomcq.evaluation.harness import load_audio as harness_load_audio
    from audiomcq.models.batch import load_waveform
    from audiomcq.prompts import build_messages
    from audiomcq.train.vllm_rollout import prompt_audio

    root, record, reference = stereo_clip
    status, from_harness = harness_load_audio(record, root)
    prompt = build_messages(record.question, record.choices, audio=str(root / record.audio_path))
    ((rollout, rollout_rate),) = prompt_audio([prompt])
    assert status == "ok" and rollout_rate == SR
    waves = {
        "batch.load_waveform": load_waveform(record, root),
        "harness.load_audio": from_harness,
        "vllm_rollout.prompt_audio": rollout,
        "acf.Clips.load": Clips.load([record], root).waves[0],
    }
    _assert_same_as_reference(waves, reference)


def test_the_server_decodes_uploaded_bytes_to_the_same_samples_and_features(stereo_clip):
    pytest.importorskip("kserve")
    from audiomcq.serve.config import ServeConfig
    from audiomcq.serve.inputs import decode_audio

    root, record, reference = stereo_clip
    served, seconds = decode_audio("instance 0", (root / record.audio_path).read_bytes(), ServeConfig())
    assert seconds == pytest.approx(1.5)
    _assert_same_as_reference({"serve.decode_audio": served}, reference)
