"""``audiomcq fetch benchmark``: MMAU test-mini's pinned metadata with its embedded audio laid out for evaluation,
MMAR synced to S3 in the layout evaluation reads, MMSU's parquet rows as JSONL with their audio, and one split of the
gated DCASE 2025 repository with only the audio it names."""

from __future__ import annotations

import io
import json

import pytest
from conftest import SHARED_BENCHMARKS
from fakes.hub_stub import FileStub, StubRepo

from audiomcq.cli import main
from audiomcq.errors import AudioMCQError
from audiomcq.fetch import fetch_benchmark
from audiomcq.infra import storage
from fetch.fetch_helpers import SECRET, WAV, tar_gz


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
