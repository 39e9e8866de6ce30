"""``audiomcq fetch dataset``: the AudioMCQ release validated record by record (bad lines quarantined), the audio
of each source downloaded from its publisher's site (stand-ins of Zenodo and OpenSLR), verified, resumed after a
dropped connection and reported; and the archive handling under it: members escaping the target, a checksum that
never matches, 7z archives with and without the 7z program."""

from __future__ import annotations

import hashlib
import json
import sys

import pytest
from fakes.hub_stub import FileStub, HubStub, StubRepo

from audiomcq.errors import AudioMCQError
from audiomcq.fetch import archives, fetch_dataset, sources
from audiomcq.infra import storage
from fetch.fetch_helpers import WAV, s3_bytes, tar_gz, zip_bytes


# --- the AudioMCQ dataset ------------------------------------------------------------------------------------------
def record(rid: str, source: str, audio: str, **over) -> dict:
    choices = ["a dog", "a cat", "rain", "a car"]
    base = {"id": rid, "source_dataset": source, "audio_path": audio, "question": "What is heard?"}
    return {**base, "choices": choices, "answer": "a dog", "audio-contribution": "strong", **over}


def jsonl(rows) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


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


def test_a_7z_archive_unpacks_with_py7zr_when_no_7z_program(tmp_path, monkeypatch):
    py7zr = pytest.importorskip("py7zr")
    with py7zr.SevenZipFile(tmp_path / "clotho.7z", "w") as sz:
        sz.writestr(WAV, "evaluation/a.wav")
    monkeypatch.setattr(archives.shutil, "which", lambda name: None)
    out = archives.extract(tmp_path / "clotho.7z", tmp_path / "x", strip=1)
    assert [p.name for p in out] == ["a.wav"] and out[0].read_bytes() == WAV
