"""Training telemetry reaches the run directory, each checkpoint, and a real Prometheus Pushgateway."""

import json
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest


@pytest.fixture
def pushgateway():
    binary = shutil.which("prometheus-pushgateway")
    if binary is None:
        pytest.skip("prometheus-pushgateway is not installed (.ci/run installs it)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{port}"], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/-/ready", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    yield f"127.0.0.1:{port}", url
    proc.terminate()
    proc.wait()


def test_sft_steps_are_logged_snapshotted_and_pushed(pushgateway, tiny_omni, synth_corpus, tmp_path, monkeypatch):
    from audiomcq.train.sft import train_sft

    address, url = pushgateway
    monkeypatch.setenv("AUDIOMCQ_PUSHGATEWAY", address)
    out = tmp_path / "run" / "sft"
    train_sft(tiny_omni, synth_corpus / "train.jsonl", synth_corpus, out, steps=3, lr=1e-3, batch_size=4,
              save_steps=2, logging_steps=1)  # fmt: skip
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert all(r["learning_rate"] >= 0 and r["step_seconds"] > 0 for r in steps)
    assert all(r["tokens_per_second"] > 0 for r in steps[1:]) and "tokens_per_second" not in steps[0]
    snapshot = json.loads((out / "checkpoint-2" / "metrics.json").read_text())
    assert [r["step"] for r in snapshot if "loss" in r] == [1, 2]
    exposed = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    assert 'audiomcq_train_loss{instance="",job="audiomcq-train",run="run-sft"}' in exposed
    assert "audiomcq_train_tokens_per_second{" in exposed
