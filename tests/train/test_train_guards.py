"""Training never continues silently wrong: a non-finite loss stops it before the update, a checkpoint the disk
cannot hold stops it with one line and is never marked complete, and a resumed run proves it continues the same
training (starting model, records, settings) or refuses, naming what changed."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from audiomcq.cli import main
from audiomcq.train.common import latest_complete_checkpoint


def _sft(tiny_omni, synth_corpus, data, out, *sets):
    return [
        "train",
        "sft",
        "--model",
        str(tiny_omni),
        "--data",
        str(data),
        "--audio-root",
        str(synth_corpus),
        "--out",
        str(out),
        "--recipe",
        "smoke",
        *[f"--set={s}" for s in sets],
    ]


@pytest.fixture
def pools(synth_corpus, tmp_path):
    rows = [json.loads(line) for line in (synth_corpus / "train.jsonl").read_text().splitlines()][:8]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[::-1]))
    wave = np.full(16000, 0.1, np.float32)
    wave[100] = np.nan
    sf.write(tmp_path / "nan.wav", wave, 16000, subtype="FLOAT")
    nan = [{**rows[0], "id": "the-nan-clip", "audio_path": str(tmp_path / "nan.wav")}, *rows[1:]]
    (tmp_path / "nan.jsonl").write_text("".join(json.dumps(r) + "\n" for r in nan))
    return tmp_path


def test_a_nan_clip_stops_sft_with_one_line_and_no_checkpoint(tiny_omni, synth_corpus, pools, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        _sft(tiny_omni, synth_corpus, pools / "nan.jsonl", out, "sft.steps=2", "sft.save_steps=1", "sft.batch_size=8")
    )
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("audiomcq:")]
    assert code == 1 and "Traceback" not in err and len(lines) == 1, err
    assert "non-finite loss" in lines[0] and "the-nan-clip" in lines[0]
    assert latest_complete_checkpoint(out) is None and not (out / "final").exists()


def test_resuming_with_other_data_or_settings_is_refused_naming_the_change(
    tiny_omni, synth_corpus, pools, tmp_path, capsys
):
    out = tmp_path / "run"
    sets = ["sft.steps=2", "sft.save_steps=1", "sft.batch_size=4"]
    assert main(_sft(tiny_omni, synth_corpus, pools / "a.jsonl", out, *sets)) == 0
    assert json.loads((out / "final" / "fingerprint.json").read_text())["settings"]["lr"] == 1e-3
    capsys.readouterr()
    # the finished run again, with other records: its last checkpoint would hand back the old model
    assert main(_sft(tiny_omni, synth_corpus, pools / "b.jsonl", out, *sets)) == 1
    assert "trained with another data" in capsys.readouterr().err
    assert main(_sft(tiny_omni, synth_corpus, pools / "a.jsonl", out, *sets, "sft.lr=0.01")) == 1
    assert "setting lr (0.001 -> 0.01)" in capsys.readouterr().err
    # what only changes logging or saving resumes
    assert (
        main(
            _sft(
                tiny_omni, synth_corpus, pools / "a.jsonl", out, "sft.steps=2", "sft.save_steps=2", "sft.batch_size=4"
            )
        )
        == 0
    )
    assert f"resumed from {out}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("method", "share", "save_steps", "folder", "failing"),
    [
        ("sft", 0.5, 1, "checkpoint-1", "File too large"),  # model.safetensors passes the limit: safetensors' error
        ("grpo", 1.2, 1, "checkpoint-1", "a write failed"),  # the weights fit, optimizer.pt (1.5 times them) does not
        ("grpo", 0.5, 0, "final", "File too large"),  # no checkpoints: the final model is the first save
    ],
)
def test_a_model_the_disk_cannot_hold_stops_training_with_one_line(
    method, share, save_steps, folder, failing, tiny_omni, synth_corpus, pools, tmp_path
):
    limit = int((tiny_omni / "model.safetensors").stat().st_size * share)

    def file_size_limit() -> None:  # writes past the limit fail with EFBIG, as on a full disk, instead of a signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "audiomcq.cli", *_sft(tiny_omni, synth_corpus, pools / "a.jsonl", out)]
    cmd[cmd.index("sft")] = method
    cmd += [f"--set={method}.steps=2", *([f"--set={method}.save_steps={save_steps}"] if save_steps else [])]
    done = subprocess.run(
        cmd,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=file_size_limit,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    lines = [line for line in done.stderr.splitlines() if line.startswith("audiomcq:")]
    assert done.returncode == 1 and "Traceback" not in done.stderr and len(lines) == 1, done.stderr[-3000:]
    assert f"{out / folder}: could not save" in lines[0] and failing in lines[0], lines[0]
    assert f"file size limit {limit} bytes" in lines[0], lines[0]
    assert latest_complete_checkpoint(out) is None
    if folder == "final":
        assert not list(out.glob("checkpoint-*")) and not (out / "final" / "fingerprint.json").exists()
    else:
        assert (out / folder).is_dir() and not (out / folder / "COMPLETE").exists() and not (out / "final").exists()
