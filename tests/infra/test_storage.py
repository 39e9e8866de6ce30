"""S3 inputs and outputs through the MinIO client, against a real local S3 server (SeaweedFS) on 127.0.0.1."""

import io
import json
import shutil
from pathlib import Path

import pytest

from audiomcq.cli import main
from audiomcq.errors import AudioMCQError
from audiomcq.infra import storage


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
    assert (
        main(
            [
                "filter",
                "run",
                "--data",
                "s3://data/in/eval.jsonl",
                "--out",
                "s3://data/acf",
                "--work",
                str(tmp_path / "work"),
                *args,
            ]
        )
        == 0
    )
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


def test_training_checkpoints_go_to_s3_and_a_fresh_machine_resumes_from_them(
    s3, synth_corpus, tiny_omni, tmp_path, monkeypatch
):
    """SFT with ``--out s3://``: complete checkpoints and the final model are uploaded; a run restarted with an
    empty disk after the upload of checkpoint-2 (checkpoint-4 and the final model lost) resumes from S3 and ends
    bit-identical to an uninterrupted local run. The starting model itself comes from S3 too."""
    from audiomcq.infra.storage import cache_dir as staging_dir

    monkeypatch.setenv("AUDIOMCQ_STAGING", str(tmp_path / "staging"))
    storage.publish(tiny_omni, "s3://data/models/base")
    common = [
        "--data",
        str(synth_corpus / "train.jsonl"),
        "--audio-root",
        str(synth_corpus),
        "--recipe",
        "smoke",
        "--set",
        "sft.steps=4",
        "--set",
        "sft.save_steps=2",
    ]
    assert main(["train", "sft", "--model", str(tiny_omni), "--out", str(tmp_path / "local"), *common]) == 0
    uri = "s3://data/runs/sft"
    assert main(["train", "sft", "--model", "s3://data/models/base", "--out", uri, *common]) == 0
    names = {o.object_name for o in s3.list_objects("data", prefix="runs/sft/", recursive=True)}
    for ckpt in ("checkpoint-2", "checkpoint-4"):
        assert {f"runs/sft/{ckpt}/COMPLETE", f"runs/sft/{ckpt}/_COMPLETE", f"runs/sft/{ckpt}/optimizer.pt"} <= names
    assert {"runs/sft/final/model.safetensors", "runs/sft/metrics.jsonl", "runs/sft/_COMPLETE"} <= names
    assert "runs/sft/final/_COMPLETE" in names  # the final model is a loadable prefix of its own
    assert (Path(storage.local_model(f"{uri}/final")) / "model.safetensors").is_file()
    # The machine is lost after checkpoint-2 went up: nothing local, nothing later in the store.
    shutil.rmtree(staging_dir(uri))
    for name in names:
        if not name.startswith("runs/sft/checkpoint-2/"):
            s3.remove_object("data", name)
    assert main(["train", "sft", "--model", "s3://data/models/base", "--out", uri, *common]) == 0
    assert (staging_dir(uri) / "checkpoint-2" / "trainer_state.json").is_file()  # it came back from S3
    resumed = s3.get_object("data", "runs/sft/final/model.safetensors").read()
    assert resumed == (tmp_path / "local" / "final" / "model.safetensors").read_bytes()


def test_an_unfinished_upload_is_not_a_model(s3, tmp_path):
    s3.put_object("data", "models/half/config.json", io.BytesIO(b"{}"), 2)  # no _COMPLETE marker
    with pytest.raises(AudioMCQError, match="_COMPLETE"):
        storage.local_model("s3://data/models/half")


def test_filter_models_and_audio_root_can_live_in_s3(s3, synth_corpus, tiny_omni, tmp_path, monkeypatch):
    """Filter models and the audio root (needed by clip-length silence and mismatched-clip probes) from S3 give
    exactly the labels of local copies; a second sync downloads nothing new."""
    monkeypatch.setenv("AUDIOMCQ_STAGING", str(tmp_path / "cache"))
    storage.publish(tiny_omni, "s3://data/models/f1")
    for wav in sorted(synth_corpus.rglob("*.wav")):
        key = f"audio/{wav.relative_to(synth_corpus).as_posix()}"
        s3.fput_object("data", key, str(wav))
    common = [
        "filter",
        "run",
        "--data",
        str(synth_corpus / "eval.jsonl"),
        "--probes",
        "silence:clip",
        "mismatch:1",
        "--min-correct",
        "1",
    ]
    assert (
        main(
            [
                *common,
                "--models",
                "s3://data/models/f1",
                "--audio-root",
                "s3://data/audio",
                "--out",
                str(tmp_path / "remote"),
            ]
        )
        == 0
    )
    assert (
        main(
            [*common, "--models", str(tiny_omni), "--audio-root", str(synth_corpus), "--out", str(tmp_path / "local")]
        )
        == 0
    )
    labelled = "labelled.jsonl"
    local_rows = (tmp_path / "local" / labelled).read_text().splitlines()
    remote_rows = (tmp_path / "remote" / labelled).read_text().splitlines()
    assert len(local_rows) == len(remote_rows) == 16

    def labels(rows):
        return [(json.loads(r)["id"], json.loads(r)["audio-contribution"]) for r in rows]

    assert labels(remote_rows) == labels(local_rows)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*.wav")}
    storage.local_tree("s3://data/audio")
    assert before and before == {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*.wav")}


def test_fetch_dir_can_leave_checkpoints_in_s3(s3, tmp_path):
    """What the post-training step copies into its artifact: the run without its checkpoints (they stay in S3)."""
    from audiomcq.infra import storage

    run = tmp_path / "run"
    for rel in ("summary.json", "sft/checkpoint-2/model.bin", "sft/final/model.bin", "sft/metrics.jsonl"):
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_text(rel)
    storage.publish(run, "s3://data/runs/r1")
    got = storage.fetch_dir("s3://data/runs/r1", tmp_path / "copy", skip="checkpoint-*")
    files = sorted(p.relative_to(got).as_posix() for p in got.rglob("*") if p.is_file())
    assert files == ["_COMPLETE", "sft/final/model.bin", "sft/metrics.jsonl", "summary.json"]


def test_a_checkpoint_interrupted_mid_upload_never_carries_its_marker(s3, tmp_path, monkeypatch):
    """The checkpoint's own COMPLETE file goes up after its weights: an upload that dies in between leaves neither
    marker in the store."""
    ckpt = tmp_path / "checkpoint-2"
    ckpt.mkdir()
    for name in ("COMPLETE", "config.json", "model.safetensors", "optimizer.pt"):
        (ckpt / name).write_text(name)
    real, sent = storage.client(), []

    class DiesOnTheLastWeight:
        def __getattr__(self, name):
            return getattr(real, name)

        def fput_object(self, bucket, key, path):
            if key.endswith("optimizer.pt"):
                raise ConnectionError("the store went away")
            sent.append(key)
            return real.fput_object(bucket, key, path)

    monkeypatch.setattr(storage, "client", DiesOnTheLastWeight)
    with pytest.raises(ConnectionError):
        storage.publish(ckpt, "s3://data/runs/x/checkpoint-2")
    assert sent and not any(k.endswith("COMPLETE") for k in sent)


@pytest.mark.slow
def test_a_store_that_stops_mid_upload_leaves_no_marker_and_a_rerun_finishes_the_upload(
    s3_own, synth_corpus, tmp_path, monkeypatch, caplog
):
    """``train sft --out s3://``: the real store stops while checkpoint-1 is going up. The command ends with one
    line naming that checkpoint's URL; the half-uploaded prefix carries neither marker, so ``eval``/``serve``
    (``local_model``) and ``select`` refuse it; once the store is back, the same command finishes the run and
    uploads checkpoint-1 whole, marker last."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from audiomcq.models.tiny import TinySpec, build_tiny, save_tiny, tokenizer_texts

    server, s3 = s3_own
    # a 20,000-row embedding makes the checkpoint tens of MB: its upload lasts long enough to be caught mid-way
    spec = TinySpec(hidden=64, audio_d=32, model_vocab=20000)
    model = save_tiny(
        *build_tiny("qwen2_5_omni", tokenizer_texts([synth_corpus / "train.jsonl"]), spec), tmp_path / "model"
    )
    staging = tmp_path / "staging"
    monkeypatch.setenv("AUDIOMCQ_STAGING", str(staging))
    uri = "s3://data/run/sft"  # a paradigm run's layout, which select reads
    cmd = [
        sys.executable,
        "-m",
        "audiomcq.cli",
        "train",
        "sft",
        "--model",
        str(model),
        "--out",
        uri,
        "--data",
        str(synth_corpus / "train.jsonl"),
        "--audio-root",
        str(synth_corpus),
        "--recipe",
        "smoke",
        "--set",
        "sft.steps=2",
        "--set",
        "sft.save_steps=1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    prefix = "run/sft/checkpoint-1/"
    try:
        deadline = time.monotonic() + 300
        while not any(True for _ in s3.list_objects("data", prefix=prefix, recursive=True)):
            assert proc.poll() is None and time.monotonic() < deadline, "the checkpoint upload never started"
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGSTOP)  # the upload holds still while the store goes away
        server.stop()
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=300)
    lines = [line for line in err.splitlines() if line.startswith("audiomcq:")]
    assert proc.returncode == 1 and "Traceback" not in err and len(lines) == 1, err[-3000:]
    assert f"{uri}/checkpoint-1: upload failed" in lines[0] and server.endpoint in lines[0], lines[0]

    server.start()
    sent = {o.object_name.removeprefix(prefix) for o in s3.list_objects("data", prefix=prefix, recursive=True)}
    local = {p.name for p in (storage.cache_dir(uri) / "checkpoint-1").iterdir() if p.is_file()}
    assert sent and sent < local and not sent & {"COMPLETE", "_COMPLETE"}, (sent, local)  # half of it went up
    assert not storage.is_complete(f"{uri}/checkpoint-1")
    with pytest.raises(AudioMCQError, match="_COMPLETE"):  # what eval and serve load a model with
        storage.local_model(f"{uri}/checkpoint-1")
    selection = tmp_path / "selection.jsonl"
    selection.write_text("".join((synth_corpus / "eval.jsonl").read_text().splitlines(keepends=True)[:2]))
    assert (
        main(
            [
                "select",
                "--run",
                "s3://data/run",
                "--audio-root",
                str(synth_corpus),
                "--data",
                str(selection),
                "--out",
                str(tmp_path / "select"),
            ]
        )
        == 1
    )
    assert f"{uri}/checkpoint-1 skipped: its upload has not completed" in caplog.text

    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    names = {o.object_name for o in s3.list_objects("data", prefix="run/sft/", recursive=True)}
    assert {f"{prefix}{name}" for name in local} <= names  # checkpoint-1 whole, its COMPLETE included
    for marked in ("checkpoint-1", "checkpoint-2", "final", ""):
        assert storage.is_complete(f"{uri}/{marked}".rstrip("/")), marked
