"""Clips no model can hear (corrupt, random bytes, empty, no frames, NaN, 10 samples, absurdly loud) and clips over
the models' 30 s window: ``data validate`` catches them, filtering and evaluation count them and go on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiomcq.cli import main
from audiomcq.jsonio import iter_json_items, load_json

SR = 16_000
BAD = {  # file name -> the code it is counted under
    "corrupt.wav": "unreadable",
    "random.wav": "unreadable",
    "empty.wav": "unreadable",
    "no-frames.wav": "empty",
    "nan.wav": "non_finite",
    "ten-samples.wav": "too_short",
    "loud.wav": "too_loud",
}


def _write_clips(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")
    (root / "random.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    (root / "empty.wav").write_bytes(b"")
    sf.write(root / "no-frames.wav", np.zeros(0, np.float32), SR)
    wave = np.full(SR, 0.1, np.float32)
    wave[123] = np.nan
    sf.write(root / "nan.wav", wave, SR, subtype="FLOAT")
    sf.write(root / "ten-samples.wav", np.full(10, 0.1, np.float32), SR)
    sf.write(root / "loud.wav", np.full(SR, 1e30, np.float32), SR, subtype="FLOAT")
    sf.write(root / "long.wav", (0.1 * np.sin(np.arange(31 * SR) / 20)).astype(np.float32), SR)
    sf.write(root / "good.wav", (0.1 * np.sin(np.arange(SR) / 10)).astype(np.float32), SR)


@pytest.fixture
def clips(tmp_path) -> Path:
    root = tmp_path / "clips"
    _write_clips(root)
    return root


def _records(synth_corpus: Path, clips: Path, path: Path) -> Path:
    """One record per test clip (named after it), taken from the synthetic corpus's questions."""
    base = [json.loads(line) for line in (synth_corpus / "eval.jsonl").read_text().splitlines()]
    names = [*BAD, "long.wav", "good.wav"]
    rows = [
        {**base[i], "id": name.removesuffix(".wav"), "audio_path": str(clips / name)} for i, name in enumerate(names)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("name", list(BAD))
def test_a_clip_no_model_can_hear_is_an_audio_error_with_its_code(clips, name):
    from audiomcq.audio import AudioError, load_checked

    with pytest.raises(AudioError) as info:
        load_checked(clips / name)
    assert info.value.code == BAD[name] and str(clips / name) in str(info.value)


def test_a_long_clip_is_cut_to_the_window_and_said_so(clips):
    from audiomcq.audio import fit_window, load_checked

    wave, cut = fit_window(load_checked(clips / "long.wav"))
    assert cut and wave.size == 30 * SR
    assert fit_window(load_checked(clips / "good.wav"))[1] is False


def test_data_validate_decodes_every_clip(synth_corpus, clips, tmp_path, capsys):
    data = _records(synth_corpus, clips, tmp_path / "records.jsonl")
    quarantine = tmp_path / "bad.jsonl"
    args = [
        "data",
        "validate",
        str(data),
        "--audio-root",
        str(clips),
        "--lenient",
        "--quarantine",
        str(quarantine),
        "--output",
        str(tmp_path / "ok.jsonl"),
    ]
    assert main(args) == 1
    bad = {row["record"]["id"]: row["reasons"] for _, row in iter_json_items(quarantine)}
    expected = {name.removesuffix(".wav"): [f"audio_{code}"] for name, code in BAD.items()}
    expected["empty"] = ["audio_empty"]  # a 0-byte file is caught before decoding
    assert bad == {**expected, "long": ["audio_too_long"]}
    assert [r["id"] for _, r in iter_json_items(tmp_path / "ok.jsonl")] == ["good"]
    capsys.readouterr()
    assert main([*args, "--long-audio", "trim"]) == 1
    summary = capsys.readouterr().out
    assert "1 valid with audio longer than the models' window" in summary
    assert [r["id"] for _, r in iter_json_items(tmp_path / "ok.jsonl")] == ["long", "good"]


def test_data_validate_strict_stops_at_the_first_bad_clip_in_one_line(synth_corpus, clips, tmp_path, capsys):
    data = _records(synth_corpus, clips, tmp_path / "records.jsonl")
    assert main(["data", "validate", str(data), "--audio-root", str(clips)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{data}:1:" in err and "corrupt.wav" in err and "unreadable" in err


def test_evaluation_counts_bad_clips_and_goes_on(tiny_omni, synth_corpus, clips, tmp_path):
    data = _records(synth_corpus, clips, tmp_path / "records.jsonl")
    out = tmp_path / "out"
    assert (
        main(
            [
                "eval",
                "--model",
                str(tiny_omni),
                "--data",
                str(data),
                "--audio-root",
                str(clips),
                "--out",
                str(out),
                "--max-new-tokens",
                "4",
            ]
        )
        == 0
    )
    metrics = load_json(out / "synthetic" / "metrics.json")
    for mode in ("audio", "silence"):
        counts = metrics["modes"][mode]
        assert counts["audio_corrupt"] == len(BAD) and counts["audio_missing"] == 0
        assert counts["answered"] == 2 and counts["audio_trimmed"] == 1
    rows = {p["id"]: p for _, p in iter_json_items(out / "synthetic" / "predictions-audio.jsonl")}
    assert all("model_output" not in rows[name.removesuffix(".wav")] for name in BAD)
    assert "longer than 30 s" in (out / "metrics.md").read_text()


def test_filtering_counts_bad_clips_and_goes_on(tiny_omni, synth_corpus, clips, tmp_path):
    data = _records(synth_corpus, clips, tmp_path / "records.jsonl")
    out = tmp_path / "out"
    assert (
        main(
            [
                "filter",
                "run",
                "--data",
                str(data),
                "--audio-root",
                str(clips),
                "--models",
                str(tiny_omni),
                "--probes",
                "silence:2",
                "audio",
                "--min-correct",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    stats = load_json(out / "stats.json")
    assert stats["audio_corrupt"] == len(BAD) and stats["audio_trimmed"] == 1 and stats["count"] == len(BAD) + 2
    labelled = {r["id"]: r for _, r in iter_json_items(out / "labelled.jsonl")}
    assert labelled["nan"]["acf"]["audio_corrupt"] is True and labelled["long"]["acf"]["audio_trimmed"] is True
    assert all(r["audio-contribution"] in ("weak", "strong") for r in labelled.values())  # labelled in silence
