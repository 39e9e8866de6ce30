"""S3 inputs and outputs through the MinIO client, against a real local S3 server (moto) on 127.0.0.1."""

import io
import socket

import pytest

from audiomcq import storage
from audiomcq.cli import main
from audiomcq.errors import AudioMCQError


@pytest.fixture
def s3(monkeypatch):
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    # Throwaway values for a throwaway local server.
    monkeypatch.setenv("AUDIOMCQ_S3_ENDPOINT", f"127.0.0.1:{port}")
    monkeypatch.setenv("AUDIOMCQ_S3_SECURE", "false")
    monkeypatch.setenv("AUDIOMCQ_S3_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = storage.client()
    client.make_bucket("data")
    yield client
    server.stop()


def test_filter_reads_its_input_from_s3_and_publishes_its_output(s3, synth_corpus, tiny_omni, tmp_path, capsys):
    data = (synth_corpus / "eval.jsonl").read_bytes()
    s3.put_object("data", "in/eval.jsonl", io.BytesIO(data), len(data))
    args = [
        "--audio-root",
        str(synth_corpus),
        "--models",
        str(tiny_omni),
        "--probes",
        "silence:2",
        "--min-correct",
        "1",
    ]
    assert main(["filter", "run", "--data", "s3://data/in/eval.jsonl", "--out", "s3://data/acf", "--work",
                 str(tmp_path / "work"), *args]) == 0  # fmt: skip
    assert (
        main(["filter", "run", "--data", str(synth_corpus / "eval.jsonl"), "--out", str(tmp_path / "local"), *args])
        == 0
    )
    names = {o.object_name for o in s3.list_objects("data", prefix="acf/", recursive=True)}
    assert {"acf/labelled.jsonl", "acf/weak.jsonl", "acf/strong.jsonl", "acf/stats.json", "acf/_COMPLETE"} <= names
    assert not any("/work/" in n for n in names)  # scratch parts stay local
    remote = s3.get_object("data", "acf/labelled.jsonl").read()
    assert remote == (tmp_path / "local" / "labelled.jsonl").read_bytes()
    assert storage.is_complete("s3://data/acf") and not storage.is_complete("s3://data/in")
    assert "testing" not in capsys.readouterr().err  # credentials never reach the logs


def test_a_missing_object_is_a_clear_error(s3, tmp_path):
    with pytest.raises(AudioMCQError, match=r"s3://data/nope.jsonl: download failed"):
        storage.fetch("s3://data/nope.jsonl", tmp_path)
    with pytest.raises(AudioMCQError, match="not an s3://bucket/key URI"):
        storage.split("s3:///key")
