"""``audiomcq fetch``: models, the AudioMCQ dataset and benchmarks, against local stand-ins of the hub, of the
download sites (tests/fakes/hub_stub.py) and of S3 (the ``s3`` fixture): verification, refetch of corrupted files,
resume after a kill, the completion marker last, manifests, gated repos and tokens."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import zipfile

import pytest
from conftest import SHARED_BENCHMARKS
from fakes.hub_stub import FileStub, HubStub, StubRepo

from audiomcq.cli import main
from audiomcq.errors import AudioMCQError
from audiomcq.fetch import archives, fetch_benchmark, fetch_dataset, fetch_model, sources
from audiomcq.infra import storage

SECRET = "hf_test_token_value_42"


@pytest.fixture
def hub(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("AUDIOMCQ_STAGING", str(tmp_path / "staging"))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    server = HubStub().start()
    yield server
    server.stop()


@pytest.fixture
def site():
    server = FileStub().start()
    yield server
    server.stop()


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


def s3_bytes(s3, key: str) -> bytes:
    return s3.get_object("data", key).read()


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


# --- the AudioMCQ dataset ------------------------------------------------------------------------------------------
def record(rid: str, source: str, audio: str, **over) -> dict:
    choices = ["a dog", "a cat", "rain", "a car"]
    base = {"id": rid, "source_dataset": source, "audio_path": audio, "question": "What is heard?"}
    return {**base, "choices": choices, "answer": "a dog", "audio-contribution": "strong", **over}


def jsonl(rows) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


def tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


WAV = b"RIFF" + bytes(2000)
UTT = "19_198_000000_000000"


def audiomcq_release(hub: HubStub) -> StubRepo:
    clotho = [
        record("c1", "SpeechCraft", f"SpeechCraft/19/198/{UTT}.wav"),
        record("c2", "TACOS", "TACOS/audio/rain.wav"),
        record("c3", "TACOS", "TACOS/audio/rain.wav", answer="snow"),  # answer not among the choices
        "{not json",
        record("c4", "AudioCaps", "AudioCaps/9HUZjSJnUAA_30.wav"),
        record("c1", "SpeechCraft", f"SpeechCraft/19/198/{UTT}.wav"),  # duplicate id
    ]
    files = {"datasets/AudioMCQ_Mixed.jsonl": jsonl(clotho), "README.md": b"---\nlicense: apache-2.0\n---\n"}
    return hub.add("dataset", "inclusionAI/AudioMCQ", StubRepo(files, card={"license": "apache-2.0"}))


def source_sites(site: FileStub, monkeypatch) -> dict[str, bytes]:
    libritts = tar_gz({f"LibriTTS_R/dev-clean/19/198/{UTT}.wav": WAV, f"LibriTTS_R/dev-clean/19/198/{UTT}.txt": b"x"})
    tacos = zip_bytes({"audio/rain.wav": WAV, "audio/wind.wav": WAV})
    site.files["/resources/141/dev_clean.tar.gz"] = libritts
    site.files["/resources/141/md5sum.txt"] = f"{hashlib.md5(libritts).hexdigest()}  dev_clean.tar.gz\n".encode()
    site.files["/tacos/TACOS_audio.zip"] = tacos
    site.files["/tacos/tacos_captions.csv"] = b"filename,onset,offset,caption\n"
    site.records["15379789"] = ["/tacos/TACOS_audio.zip", "/tacos/tacos_captions.csv"]
    # the test's archive stands in for the real subset: pin its md5 as the real one is pinned
    monkeypatch.setattr(sources, "LIBRITTS_R_MD5", {"dev_clean.tar.gz": hashlib.md5(libritts).hexdigest()})
    return {"libritts": libritts, "tacos": tacos}


def test_dataset_release_is_validated_and_audio_fetched_verified_and_reported(s3, hub, site, monkeypatch):
    release = audiomcq_release(hub)
    source_sites(site, monkeypatch)
    site.corrupt_once.add("/resources/141/dev_clean.tar.gz")  # md5 catches it: downloaded again
    site.truncate_once.add("/tacos/TACOS_audio.zip")  # the connection drops half-way: resumed with a Range request
    sites = {"zenodo": site.url, "openslr": site.url}
    manifest = fetch_dataset(
        "audiomcq", "s3://data/audiomcq", endpoint=hub.url, sources="TACOS,SpeechCraft,AudioCaps", endpoints=sites
    )
    assert storage.is_complete("s3://data/audiomcq") and manifest["commit"] == release.commit
    assert site.gets("/resources/141/dev_clean.tar.gz") == 2 and site.gets("/tacos/TACOS_audio.zip") == 2
    (check,) = manifest["validation"]
    assert (check["read"], check["kept"], check["quarantined"]) == (6, 3, 3)
    assert check["reasons"] == {"answer_not_in_choices": 1, "invalid_json": 1, "duplicate_id": 1}
    kept = [json.loads(line) for line in s3_bytes(s3, "audiomcq/records/AudioMCQ_Mixed.jsonl").splitlines()]
    assert [r["id"] for r in kept] == ["c1", "c2", "c4"]
    bad = [json.loads(line) for line in s3_bytes(s3, "audiomcq/quarantine/AudioMCQ_Mixed.jsonl").splitlines()]
    assert [b["line"] for b in bad] == [3, 4, 6]
    assert (
        s3_bytes(s3, "audiomcq/release/datasets/AudioMCQ_Mixed.jsonl")
        == release.files["datasets/AudioMCQ_Mixed.jsonl"]
    )
    assert s3_bytes(s3, f"audiomcq/audio/SpeechCraft/19/198/{UTT}.wav") == WAV
    assert s3_bytes(s3, "audiomcq/audio/TACOS/audio/rain.wav") == WAV
    keys = {o.object_name for o in s3.list_objects("data", prefix="audiomcq/audio/", recursive=True)}
    assert not any(k.endswith(".txt") for k in keys), "only the audio of LibriTTS-R is kept"
    report = json.loads(s3_bytes(s3, "audiomcq/audio-report.json"))
    assert (report["records"], report["present"], report["missing"]) == (3, 2, 1)
    caps = report["by_source"]["AudioCaps"]
    assert caps["missing_examples"] == ["AudioCaps/9HUZjSJnUAA_30.wav"] and "AudioCaps/<youtube_id>" in caps["provide"]
    tacos = next(d for d in manifest["audio_downloads"] if d["name"] == "TACOS_audio.zip")
    assert tacos["verified"] and tacos["files"] == 2

    payloads = ("/resources/141/dev_clean.tar.gz", "/tacos/TACOS_audio.zip", "/tacos/tacos_captions.csv")
    before = [site.gets(p) for p in payloads]
    again = fetch_dataset(
        "audiomcq", "s3://data/audiomcq", endpoint=hub.url, sources="TACOS,SpeechCraft", endpoints=sites
    )
    assert [site.gets(p) for p in payloads] == before, "a finished archive is not downloaded again"
    assert all(not f["fetched"] for f in again["files"])


def test_a_publisher_checksum_that_moved_from_the_pin_is_an_error(site, monkeypatch):
    site.files["/c/clotho_audio_evaluation.7z"] = b"7z-bytes"
    site.records[sources.CLOTHO_RECORD] = ["/c/clotho_audio_evaluation.7z"]
    site.md5_override["/c/clotho_audio_evaluation.7z"] = "f" * 32
    with pytest.raises(AudioMCQError, match=r"is now listed as md5:f+, pinned md5:4569624c"):
        sources.SOURCES["Clotho"].items({"zenodo": site.url})  # type: ignore[misc]


# --- archives -------------------------------------------------------------------------------------------------------
def test_archives_refuse_escaping_members_and_name_the_missing_7z_tool(tmp_path, monkeypatch):
    evil = tmp_path / "evil.zip"
    evil.write_bytes(zip_bytes({"../outside.wav": WAV}))
    with pytest.raises(AudioMCQError, match="points outside the target"):
        archives.extract(evil, tmp_path / "x")
    assert not (tmp_path / "outside.wav").exists()
    seven = tmp_path / "a.7z"
    seven.write_bytes(b"7z\xbc\xaf\x27\x1c")
    monkeypatch.setattr(archives.shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "py7zr", None)
    with pytest.raises(AudioMCQError, match="needs the 7z program"):
        archives.extract(seven, tmp_path / "y")


def test_a_download_whose_md5_never_matches_fails_after_retries(site, tmp_path):
    site.files["/f.tar.gz"] = b"payload"
    remote = archives.Remote(f"{site.url}/f.tar.gz", "f.tar.gz", "md5:" + "0" * 32)
    with pytest.raises(AudioMCQError, match="checksum still wrong after 3 downloads"):
        archives.download(remote, tmp_path)
    assert site.gets("/f.tar.gz") == 3 and not (tmp_path / "f.tar.gz").exists()


# --- benchmarks ------------------------------------------------------------------------------------------------------
def parquet(rows: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


def serve_github(site: FileStub, pin: tuple, data: bytes) -> None:
    repo, commit, path = pin[:3]
    site.files[f"/{repo}/{commit}/{path}"] = data


def test_mmau_test_mini_metadata_pinned_and_embedded_audio_laid_out_for_eval(hub, site, tmp_path):
    from audiomcq.fetch.benchmarks import MMAU_MINI
    from audiomcq.jsonio import load_json

    meta = SHARED_BENCHMARKS / "mmau-test-mini.json"
    serve_github(site, MMAU_MINI, meta.read_bytes())
    items = load_json(meta)[:4]
    rows = [
        {
            "context": {"bytes": WAV + bytes([i]), "path": None},
            "instruction": it["question"],
            "other_attributes": json.dumps({"id": it["id"], "task": it["task"]}),
        }
        for i, it in enumerate(items)
    ]
    rows.append({"context": {"bytes": WAV, "path": None}, "instruction": "?", "other_attributes": '{"id": "zzz"}'})
    hub.add("dataset", "gamma-lab-umd/MMAU-test-mini", StubRepo({"data/test-00000-of-00001.parquet": parquet(rows)}))
    out = tmp_path / "mmau"
    manifest = fetch_benchmark("mmau-test-mini", out, endpoint=hub.url, endpoints={"github": site.url})
    layout = manifest["layout"]
    assert (layout["items"], layout["audio_present"], layout["audio_missing"]) == (1000, 4, 996)
    assert (out / "mmau-test-mini.json").read_bytes() == meta.read_bytes() and (out / "_COMPLETE").is_file()
    first = out / items[0]["audio_id"]
    assert first.read_bytes() == WAV + b"\0" and first.parent.name == "test-mini-audios"
    assert manifest["sources"][0]["verified"] and manifest["sources"][1]["audio"]["unmatched"] == 1

    serve_github(site, MMAU_MINI, meta.read_bytes().replace(b"Man", b"Men", 1))  # an upstream edit since the pin
    with pytest.raises(AudioMCQError, match=r"mmau-test-mini\.json: checksum still wrong"):
        fetch_benchmark("mmau-test-mini", tmp_path / "other", endpoint=hub.url, endpoints={"github": site.url})


def test_mmar_to_s3_syncs_into_the_layout_eval_reads(s3, hub, site, tmp_path, capsys, monkeypatch):
    from audiomcq.evaluation.tasks import get_task
    from audiomcq.fetch.benchmarks import MMAR_META

    meta = SHARED_BENCHMARKS / "MMAR-meta.jsonl"
    serve_github(site, MMAR_META, meta.read_bytes())
    ids = [json.loads(line)["id"] for line in meta.read_text().splitlines()[:3]]
    hub.add("dataset", "BoJack/MMAR", StubRepo({"mmar-audio.tar.gz": tar_gz({f"audio/{i}.wav": WAV for i in ids})}))
    args = [
        "fetch",
        "benchmark",
        "mmar",
        "--to",
        "s3://data/bench/mmar",
        "--endpoint",
        hub.url,
        "--site",
        f"github={site.url}",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "mmar: 1000 items, audio 3 present, 997 missing" in out and "missing: " in out
    local = storage.local_tree("s3://data/bench/mmar")
    task = get_task("mmar")
    loaded = task.benchmark.load(local / task.default_file, audio_root=local)
    assert sum("audio_missing" not in {p.code for p in loaded.problems.get(r.id, [])} for r in loaded.records) == 3
    assert main(args) == 0 and hub.gets("BoJack/MMAR/mmar-audio.tar.gz") == 1, "a rerun does not download again"


def test_mmsu_rows_become_the_jsonl_eval_reads_with_their_audio(hub, tmp_path):
    rows = [
        {
            "id": f"mmsu_{i}",
            "task_name": "emotion",
            "question": "Which emotion?",
            "choice_a": "happy",
            "choice_b": "sad",
            "choice_c": "angry",
            "choice_d": "calm",
            "answer_gt": "sad",
            "category": "perception",
            "audio": {"bytes": WAV, "path": f"clip{i}.wav"},
        }
        for i in range(3)
    ]
    hub.add("dataset", "ddwang2000/MMSU", StubRepo({"data/test-00000.parquet": parquet(rows), "README.md": b"x"}))
    manifest = fetch_benchmark("mmsu", tmp_path / "mmsu", endpoint=hub.url)
    assert (manifest["layout"]["items"], manifest["layout"]["audio_present"]) == (3, 3)
    first = json.loads((tmp_path / "mmsu" / "mmsu.jsonl").read_text().splitlines()[0])
    assert first["audio_path"] == "audio/mmsu_0.wav" and "audio" not in first
    assert (tmp_path / "mmsu" / "audio" / "mmsu_0.wav").read_bytes() == WAV


def test_dcase2025_takes_one_split_and_only_the_audio_it_names_from_the_gated_repo(hub, tmp_path, monkeypatch):
    def question(url: str) -> bytes:
        return json.dumps(
            {
                "audio_url": url,
                "question": "Which?",
                "choice": ["A. x", "B. y"],
                "answer": "B. y",
                "question_type": "BQA",
            }
        ).encode()

    files = {
        "dcase_2025_question_path/dev/q1.json": question("local_audio_path/dev/a1.wav"),
        "dcase_2025_question_path/dev/q2.json": question("../../local_audio_path/dev/a2.wav"),
        "dcase_2025_question_path/train/t1.json": question("local_audio_path/train/t1.wav"),
        "local_audio_path/dev/a1.wav": WAV,
        "local_audio_path/dev/a2.wav": WAV + b"2",
        "local_audio_path/train/t1.wav": WAV,
    }
    repo = hub.add("dataset", "PeacefulData/2025_DCASE_AudioQA_Official", StubRepo(files, gated=True, tokens={SECRET}))
    with pytest.raises(AudioMCQError, match=r"gated repository: accept its licence at .*datasets/PeacefulData"):
        fetch_benchmark("dcase2025", tmp_path / "d0", endpoint=hub.url)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    manifest = fetch_benchmark("dcase2025", tmp_path / "dcase", endpoint=hub.url)
    assert (manifest["layout"]["items"], manifest["layout"]["audio_present"]) == (2, 2)
    assert manifest["sources"][0]["audio_url_rewritten"] == 1
    q2 = json.loads((tmp_path / "dcase" / "dcase2025" / "q2.json").read_text())
    assert q2["audio_url"] == "local_audio_path/dev/a2.wav" and q2["audio_url_published"].startswith("../../")
    assert hub.gets("PeacefulData/2025_DCASE_AudioQA_Official/local_audio_path/train/t1.wav") == 0
    assert repo.commit in json.dumps(manifest)


def test_a_7z_archive_unpacks_with_py7zr_when_no_7z_program(tmp_path, monkeypatch):
    py7zr = pytest.importorskip("py7zr")
    with py7zr.SevenZipFile(tmp_path / "clotho.7z", "w") as sz:
        sz.writestr(WAV, "evaluation/a.wav")
    monkeypatch.setattr(archives.shutil, "which", lambda name: None)
    out = archives.extract(tmp_path / "clotho.7z", tmp_path / "x", strip=1)
    assert [p.name for p in out] == ["a.wav"] and out[0].read_bytes() == WAV
