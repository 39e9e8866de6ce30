"""Shared fixtures: the real benchmark metadata in ../shared/benchmarks and our own small format fixtures."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCHMARKS = REPO.parent / "shared" / "benchmarks"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def free_port() -> int:
    """A TCP port nothing listens on right now, for a throwaway server on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, tries: int = 150) -> None:
    """Poll ``url`` until it answers (servers started by fixtures take a moment)."""
    for _ in range(tries):
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.1)


def kill_at_first_checkpoint(cmd: list[str], out: Path, env: dict[str, str]) -> None:
    """Start a training command, SIGKILL it as soon as ``out`` holds a complete checkpoint, check it died mid-way."""
    import os
    import signal

    from audiomcq.train.common import latest_complete_checkpoint

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while latest_complete_checkpoint(out) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert latest_complete_checkpoint(out) is not None and not (out / "final").exists(), "killed mid-way"


@pytest.fixture(scope="session")
def mmau_file() -> Path:
    """The real MMAU test-mini metadata (1,000 items)."""
    path = SHARED_BENCHMARKS / "mmau-test-mini.json"
    assert path.is_file(), f"{path} is missing: tests need ../shared beside the repository"
    return path


@pytest.fixture(scope="session")
def mmar_file() -> Path:
    """The real MMAR metadata (1,000 items)."""
    path = SHARED_BENCHMARKS / "MMAR-meta.jsonl"
    assert path.is_file(), f"{path} is missing: tests need ../shared beside the repository"
    return path


@pytest.fixture(scope="session")
def mmsu_file() -> Path:
    return FIXTURES / "mmsu" / "mmsu-sample.jsonl"


@pytest.fixture(scope="session")
def dcase_dir() -> Path:
    return FIXTURES / "dcase2025" / "dev"


@pytest.fixture
def write_jsonl(tmp_path: Path):
    """Write rows (dicts, or raw strings for broken lines) as a JSONL file and return its path."""

    def _write(rows, name: str = "data.jsonl") -> Path:
        path = tmp_path / name
        with path.open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
        return path

    return _write


def record_dict(**overrides) -> dict:
    """A valid AudioMCQ record with every canonical field set."""
    base = {
        "id": "audiocaps_000123",
        "source_dataset": "AudioCaps",
        "audio_path": "AudioCaps/9HUZjSJnUAA_30.wav",
        "question": "What mechanical sound is clearly prominent in the audio?",
        "choices": ["Engine revving repeatedly", "Airplane taking off", "Motorcycle passing by", "Car horn blaring"],
        "answer": "Engine revving repeatedly",
        "question_type": "sound",
        "audio-contribution": "strong",
        "structured_cot": "<stage1>sound</stage1>",
        "simple_cot": "<simple analysis>engine</simple analysis>",
    }
    base.update(overrides)
    return base


@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory) -> Path:
    """A small synthetic corpus (train 64, eval 16) shared by the model tests."""
    from audiomcq.synth import generate

    out = tmp_path_factory.mktemp("synth")
    generate(out, 64, seed=3, eval_n=16)
    return out


@pytest.fixture(scope="session")
def tiny_omni(synth_corpus, tmp_path_factory) -> Path:
    """A tiny random Qwen2.5-Omni thinker saved as an HF directory, tokenizer trained on the corpus prompts."""
    from audiomcq.models.tiny import TinySpec, build_tiny, save_tiny, tokenizer_texts

    model, processor = build_tiny(
        "qwen2_5_omni", tokenizer_texts([synth_corpus / "train.jsonl"]), TinySpec(hidden=64, audio_d=32)
    )
    return save_tiny(model, processor, tmp_path_factory.mktemp("tiny_omni"))


@pytest.fixture(scope="session")
def tiny_qwen2_audio(synth_corpus, tmp_path_factory) -> Path:
    """A tiny random Qwen2-Audio model saved as an HF directory."""
    from audiomcq.models.tiny import TinySpec, build_tiny, save_tiny, tokenizer_texts

    model, processor = build_tiny(
        "qwen2_audio", tokenizer_texts([synth_corpus / "train.jsonl"]), TinySpec(hidden=64, audio_d=32)
    )
    return save_tiny(model, processor, tmp_path_factory.mktemp("tiny_qwen2_audio"))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One SeaweedFS server (a real object store) for the session; each test gets it emptied (``s3``)."""
    from fakes.s3_server import SeaweedS3

    root = tmp_path_factory.mktemp("seaweedfs")
    server = SeaweedS3(root / "data", root / "weed.log")
    yield server
    server.stop()


def point_at(server, monkeypatch):
    """Point the S3 client at ``server`` through the environment and return a client of it, with an empty ``data``
    bucket and no other."""
    from audiomcq.infra import storage

    # Throwaway values for a throwaway local server.
    monkeypatch.setenv("AUDIOMCQ_S3_ENDPOINT", server.endpoint)
    monkeypatch.setenv("AUDIOMCQ_S3_SECURE", "false")
    monkeypatch.setenv("AUDIOMCQ_S3_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = storage.client()
    for bucket in client.list_buckets():  # one object at a time: every test starts from an empty store
        for obj in list(client.list_objects(bucket.name, recursive=True)):
            client.remove_object(bucket.name, obj.object_name)
        if any(True for _ in client.list_objects(bucket.name, recursive=True)):
            raise RuntimeError(f"could not empty the test bucket {bucket.name}")
        if bucket.name != "data":
            client.remove_bucket(bucket.name)
    if not client.bucket_exists("data"):
        client.make_bucket("data")
    return client


@pytest.fixture
def s3(s3_server, monkeypatch):
    """A real S3 server (SeaweedFS) on 127.0.0.1 with an empty ``data`` bucket and no other; the environment points
    the client at it."""
    return point_at(s3_server, monkeypatch)


@pytest.fixture
def s3_own(tmp_path_factory, monkeypatch):
    """A SeaweedFS server of the test's own, which it may stop and start again, and a client of it, as ``s3``:
    (server, client)."""
    from fakes.s3_server import SeaweedS3

    root = tmp_path_factory.mktemp("seaweedfs-own")
    server = SeaweedS3(root / "data", root / "weed.log")
    try:
        yield server, point_at(server, monkeypatch)
    finally:
        server.stop()


@pytest.fixture
def pushgateway():
    """A real Prometheus Pushgateway on 127.0.0.1: (``host:port``, base URL)."""
    binary = shutil.which("prometheus-pushgateway")
    if binary is None:
        pytest.skip("prometheus-pushgateway is not installed (.ci/run installs it)")
    port = free_port()
    proc = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{port}"], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/-/ready")
    yield f"127.0.0.1:{port}", url
    proc.terminate()
    proc.wait()


@pytest.fixture
def prometheus(pushgateway, tmp_path):
    """A real Prometheus on 127.0.0.1 scraping the pushgateway every second: (base URL, pushgateway address)."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (.ci/run installs it)")
    address, _ = pushgateway
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs: [{job_name: pushgateway, honor_labels: true, "
        f"static_configs: [{{targets: ['{address}']}}]}}]\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/-/ready")
    yield url, address
    proc.terminate()
    proc.wait()


# --- a local Kubernetes API server (tests/fakes/kube_api.py) ---------------------------------------------------------
@pytest.fixture
def kube_api(tmp_path, monkeypatch):
    """A fake Kubernetes API server on 127.0.0.1; the environment points ``audiomcq.infra.k8s`` at it (host + token
    file).

    ``kube_api.on(plural, fn)`` plays a controller, ``kube_api.objects`` / ``.get()`` / ``.add()`` give direct
    access, ``kube_api.kubeconfig(path)`` writes a kubeconfig for SDKs that load one."""
    from fakes.kube_api import KubeAPIServer

    server = KubeAPIServer(token="throwaway-test-token").start()
    token_file = tmp_path / "kube-token"
    token_file.write_text(server.token)
    monkeypatch.setenv("AUDIOMCQ_KUBE_HOST", server.url)
    monkeypatch.setenv("AUDIOMCQ_KUBE_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("AUDIOMCQ_KUBE_NAMESPACE", "default")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    yield server
    server.stop()
