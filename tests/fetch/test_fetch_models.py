"""``audiomcq fetch model`` against the hub stand-in and the S3 server: files verified and the completion marker
written last, corrupted or truncated files fetched again, a killed fetch resumed without downloading finished files,
gated repos and tokens reported in one line with the token never shown, and a fetched prefix loading as a model."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading

import pytest
from fakes.hub_stub import StubRepo

from audiomcq.cli import main
from audiomcq.errors import AudioMCQError
from audiomcq.fetch import fetch_model
from audiomcq.infra import storage
from fetch.fetch_helpers import SECRET, s3_bytes


def model_repo(seed: int = 0) -> StubRepo:
    blob = lambda n, k: hashlib.sha256(f"{seed}-{k}".encode()).digest() * (n // 32)  # noqa: E731
    files = {
        "config.json": b'{"model_type": "qwen2_audio"}',
        "tokenizer_config.json": b'{"model_max_length": 8}',
        "chat_template.jinja": b"{{ messages }}",
        "model-00001-of-00002.safetensors": blob(4096, 1),
        "model-00002-of-00002.safetensors": blob(8192, 2),
        "model.safetensors.index.json": b'{"weight_map": {}}',
        "spk_dict.pt": blob(2048, 3),
        "README.md": b"---\nlicense: apache-2.0\n---\n# model\n",
        "pytorch_model.bin": blob(4096, 4),  # duplicates the safetensors: never fetched
        ".gitattributes": b"*.safetensors filter=lfs\n",
    }
    return StubRepo(files, card={"license": "apache-2.0"})


# --- models --------------------------------------------------------------------------------------------------------
def test_model_lands_verified_with_manifest_and_the_marker_last(s3, hub):
    repo = hub.add("model", "Qwen/Tiny-Audio", model_repo())
    last = "Qwen/Tiny-Audio/spk_dict.pt"  # fetched last (sorted order): hold it to look at the prefix mid-fetch
    hub.hold[last] = threading.Event()
    s3.put_object("data", "models/tiny/_COMPLETE", io.BytesIO(b"1"), 1)  # a stale marker from an earlier fetch
    result = {}
    worker = threading.Thread(
        target=lambda: result.update(fetch_model("Qwen/Tiny-Audio", "s3://data/models/tiny", endpoint=hub.url))
    )
    worker.start()
    assert hub.reached.setdefault(last, threading.Event()).wait(30)
    assert not storage.is_complete("s3://data/models/tiny"), "a fetch in progress is never marked complete"
    assert s3_bytes(s3, "models/tiny/config.json") == repo.files["config.json"]
    hub.hold[last].set()
    worker.join(30)
    assert storage.is_complete("s3://data/models/tiny")
    keys = {o.object_name for o in s3.list_objects("data", prefix="models/tiny/", recursive=True)}
    wanted = set(repo.files) - {"pytorch_model.bin", ".gitattributes"}
    assert keys == {f"models/tiny/{n}" for n in wanted | {"fetch-manifest.json", "_COMPLETE"}}
    for name in wanted:
        assert s3_bytes(s3, f"models/tiny/{name}") == repo.files[name]
    manifest = json.loads(s3_bytes(s3, "models/tiny/fetch-manifest.json"))
    assert manifest["commit"] == repo.commit and manifest["repo"] == "Qwen/Tiny-Audio"
    assert manifest["license"] == {"license": "apache-2.0"}
    by_path = {f["path"]: f for f in manifest["files"]}
    shard = repo.files["model-00002-of-00002.safetensors"]
    assert by_path["model-00002-of-00002.safetensors"]["digest"] == f"sha256:{hashlib.sha256(shard).hexdigest()}"
    assert by_path["config.json"]["digest"].startswith("gitsha1:") and not by_path["config.json"]["lfs"]
    assert result["total_bytes"] == sum(len(repo.files[n]) for n in wanted)


def test_a_corrupted_download_or_file_is_detected_and_fetched_again(hub, tmp_path):
    repo = hub.add("model", "Qwen/Tiny-Audio", model_repo())
    shard = "model-00001-of-00002.safetensors"
    hub.corrupt_once.add(f"Qwen/Tiny-Audio/{shard}")  # right length, wrong bytes: only the checksum catches it
    out = tmp_path / "model"
    fetch_model("Qwen/Tiny-Audio", out, endpoint=hub.url)
    assert (out / shard).read_bytes() == repo.files[shard]
    assert hub.gets(f"Qwen/Tiny-Audio/{shard}") == 2 and hub.gets("Qwen/Tiny-Audio/config.json") == 1
    assert (out / "_COMPLETE").is_file() and not (out / ".fetch-staging").exists()

    (out / shard).write_bytes(repo.files[shard][:100])  # truncated at the destination
    other = "model-00002-of-00002.safetensors"
    damaged = bytearray(repo.files[other])
    damaged[10] ^= 1
    (out / other).write_bytes(bytes(damaged))  # same size, one bit flipped
    fetch_model("Qwen/Tiny-Audio", out, endpoint=hub.url)
    assert (out / shard).read_bytes() == repo.files[shard] and (out / other).read_bytes() == repo.files[other]
    assert hub.gets(f"Qwen/Tiny-Audio/{shard}") == 3 and hub.gets(f"Qwen/Tiny-Audio/{other}") == 2
    assert hub.gets("Qwen/Tiny-Audio/config.json") == 1, "intact files are not downloaded again"


def test_a_persistently_wrong_file_fails_naming_it(hub, tmp_path):
    repo = hub.add("model", "Qwen/Tiny-Audio", model_repo())
    repo.listed_sha256["spk_dict.pt"] = "0" * 64  # the hub lists a digest the served bytes never match
    with pytest.raises(AudioMCQError, match=r"spk_dict\.pt: checksum still wrong after 3 downloads"):
        fetch_model("Qwen/Tiny-Audio", tmp_path / "m", endpoint=hub.url)
    assert not (tmp_path / "m" / "_COMPLETE").exists()


def test_a_killed_fetch_resumes_without_downloading_finished_files(s3, hub, tmp_path):
    hub.add("model", "Qwen/Tiny-Audio", model_repo())
    held = "Qwen/Tiny-Audio/model-00002-of-00002.safetensors"
    hub.hold[held] = threading.Event()
    env = {**os.environ, "HF_HUB_DISABLE_PROGRESS_BARS": "1", "AUDIOMCQ_STAGING": str(tmp_path / "staging")}
    code = "import sys; from audiomcq.cli import main; sys.exit(main(sys.argv[1:]))"
    cmd = [
        sys.executable,
        "-c",
        code,
        "fetch",
        "model",
        "Qwen/Tiny-Audio",
        "--to",
        "s3://data/m",
        "--endpoint",
        hub.url,
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert hub.reached.setdefault(held, threading.Event()).wait(60), "the fetch never reached the held file"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not storage.is_complete("s3://data/m")
    finished = ["config.json", "chat_template.jinja", "model-00001-of-00002.safetensors"]
    assert all(hub.gets(f"Qwen/Tiny-Audio/{n}") == 1 for n in finished)
    hub.hold[held].set()
    os.environ["AUDIOMCQ_STAGING"] = str(tmp_path / "fresh-pod")  # a retry in a new pod: nothing local survives
    try:
        fetch_model("Qwen/Tiny-Audio", "s3://data/m", endpoint=hub.url)
    finally:
        del os.environ["AUDIOMCQ_STAGING"]
    assert storage.is_complete("s3://data/m")
    assert all(hub.gets(f"Qwen/Tiny-Audio/{n}") == 1 for n in finished), "finished files were downloaded again"
    assert hub.gets(held) == 2


def test_gated_repo_and_token_give_one_clear_line_and_the_token_is_never_shown(hub, tmp_path, capsys, monkeypatch):
    repo = hub.add("model", "Qwen/Gated", model_repo())
    repo.gated, repo.tokens = True, {SECRET}
    args = [
        "--log-level",
        "info",
        "fetch",
        "model",
        "Qwen/Gated@main",
        "--to",
        str(tmp_path / "g"),
        "--endpoint",
        hub.url,
    ]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err[-1].startswith("audiomcq: error:") and "gated repository" in err[-1] and "$HF_TOKEN (NOT set)" in err[-1]
    )
    monkeypatch.setenv("HF_TOKEN", "hf_not_accepted")
    assert main(args) == 1
    assert "gated repository" in capsys.readouterr().err.strip().splitlines()[-1]
    monkeypatch.setenv("MY_TOKEN", SECRET)
    assert main([*args, "--token-env", "MY_TOKEN"]) == 0
    captured = capsys.readouterr()
    assert f"Qwen/Gated@{repo.commit}" in captured.out and "licence apache-2.0" in captured.out
    assert SECRET not in captured.out + captured.err
    assert SECRET not in (tmp_path / "g" / "fetch-manifest.json").read_text()
    assert main(["fetch", "model", "Qwen/Nope", "--to", str(tmp_path / "n"), "--endpoint", hub.url]) == 1
    assert "repository not found" in capsys.readouterr().err
    assert main(["fetch", "model", "Qwen/Gated@v9", "--to", str(tmp_path / "n"), "--endpoint", hub.url]) == 1
    assert "no such revision" in capsys.readouterr().err
    from conftest import free_port

    assert (
        main(
            [
                "fetch",
                "model",
                "Qwen/Gated",
                "--to",
                str(tmp_path / "n"),
                "--endpoint",
                f"http://127.0.0.1:{free_port()}",
            ]
        )
        == 1
    )
    assert capsys.readouterr().err.strip().endswith("Connection refused")


def test_a_fetched_prefix_loads_through_local_model(s3, hub, tmp_path, monkeypatch):
    from fakes.real_checkpoints import QWEN2_AUDIO, build

    from audiomcq.models.loading import load_model

    checkpoint = build(QWEN2_AUDIO, tmp_path / "ckpt")
    hub.add("model", "Qwen/Qwen2-Audio-7B-Instruct", StubRepo({p.name: p.read_bytes() for p in checkpoint.iterdir()}))
    fetch_model("Qwen/Qwen2-Audio-7B-Instruct", "s3://data/models/qwen2-audio", endpoint=hub.url)
    monkeypatch.setenv("AUDIOMCQ_STAGING", str(tmp_path / "staging"))
    local = storage.local_model("s3://data/models/qwen2-audio")
    loaded = load_model(local)
    assert loaded.family == "qwen2_audio" and type(loaded.model).__name__ == "Qwen2AudioForConditionalGeneration"
