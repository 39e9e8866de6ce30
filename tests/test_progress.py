"""Progress of long commands: log lines with rate and ETA off a terminal, a bar on one, and filter run's progress."""

import json
import logging
import os
import subprocess
import sys

import pytest

from audiomcq.acf.answer import shard_size
from audiomcq.data.io import count_items
from audiomcq.progress import Progress, duration


def test_off_a_terminal_progress_logs_count_share_rate_and_eta(caplog, monkeypatch):
    now = [0.0]
    monkeypatch.setattr("audiomcq.progress.time.monotonic", lambda: now[0])
    caplog.set_level(logging.INFO, logger="audiomcq.progress")
    progress = Progress("filter m0", 1000, "question", every=5.0, bar=False)
    now[0] = 10.0
    progress.skip(400)  # already-done work: counted, not in the rate
    now[0] = 12.0
    progress.update(50)  # within 5 s of the last line: silent
    now[0] = 20.0
    progress.update(50)  # 100 questions worked in 20 s = 5/s; 500 left = 100 s
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[-1].startswith("filter m0: 500/1,000 questions (50.0%), 400 already done, 5.0 questions/s")
    assert lines[-1].endswith("ETA 1 min 40 s")


def test_lines_are_rate_limited_and_the_last_one_always_comes(caplog):
    caplog.set_level(logging.INFO, logger="audiomcq.progress")
    with Progress("eval mmau", None, "item", every=3600.0, bar=False) as progress:
        for _ in range(50):
            progress.update()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("eval mmau: 50 items,")
    assert "ETA" not in lines[0]  # no total, no ETA


def test_on_a_terminal_a_bar_is_drawn(capsys):
    with Progress("filter m0", 10, "question", bar=True) as progress:
        progress.update(10)
    err = capsys.readouterr().err
    assert "filter m0" in err and "10/10" in err


@pytest.mark.parametrize(("seconds", "text"), [(42.2, "42 s"), (425, "7 min 05 s"), (11520, "3 h 12 min")])
def test_durations_read_like_a_person_would_say_them(seconds, text):
    assert duration(seconds) == text


def test_totals_come_from_a_cheap_count(tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text('{"a": 1}\n\n{"a": 2}\n{"a": 3}\n   \n{"a": 4}\n{"a": 5}\n')
    assert count_items(data) == 5
    assert [shard_size(data, (i, 2)) for i in range(2)] == [3, 2]
    listed = tmp_path / "in.json"
    listed.write_text(json.dumps([{"a": 1}]))
    assert count_items(listed) is None and shard_size(listed, (0, 1)) is None


def test_filter_run_reports_progress_at_the_default_log_level(synth_corpus, tiny_omni, tmp_path):
    env = {**os.environ, "AUDIOMCQ_PROGRESS_SECONDS": "0", "OMP_NUM_THREADS": "1"}
    rows = (synth_corpus / "train.jsonl").read_text().splitlines()[:6]
    data = tmp_path / "in.jsonl"
    data.write_text("\n".join(rows) + "\n")
    common = f"--audio-root {synth_corpus} --models {tiny_omni} --probes silence:1 --min-correct 1 --chunk-size 4"
    cmd = [sys.executable, "-m", "audiomcq.cli", "filter", "run", "--data", str(data), *common.split()]
    cmd += ["--out", str(tmp_path / "out")]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    lines = [line for line in done.stderr.splitlines() if "audiomcq.progress" in line]
    assert any("filter filter0: 4/6 questions (66.7%)" in line for line in lines), done.stderr
    assert any("filter filter0: 6/6 questions (100.0%)" in line for line in lines), done.stderr
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)  # all parts valid: resumed
    assert "filter filter0: 6/6 questions (100.0%), 6 already done" in again.stderr
