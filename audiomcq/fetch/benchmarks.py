"""``audiomcq fetch benchmark``: evaluation sets from their official releases, laid out as ``audiomcq eval`` reads
them (the task's metadata file at the root under its usual name, audio at the paths the metadata names).

- ``mmau-test-mini``: metadata ``mmau-test-mini.json`` from GitHub Sakshi113/MMAU at a pinned commit (git blob id
  checked); audio embedded in the Parquet shards of HF ``gamma-lab-umd/MMAU-test-mini``.
- ``mmau-test``: ``mmau-test.json`` (answers withheld) likewise; audio from HF ``gamma-lab-umd/MMAU-test``.
- ``mmar``: ``MMAR-meta.jsonl`` from GitHub ddlBoJack/MMAR at a pinned commit; audio from HF ``BoJack/MMAR``
  ``mmar-audio.tar.gz``.
- ``mmsu``: HF ``ddwang2000/MMSU`` ``data/`` files written as ``mmsu.jsonl``; audio from the rows or ``audio/``.
- ``dcase2025``: HF ``PeacefulData/2025_DCASE_AudioQA_Official`` question files of one split into
  ``dcase2025/``, and the audio files they name.

The result is checked with the project's own benchmark loader: every item whose audio is missing is counted and
named in the manifest, so a wrong guess about a release's layout shows at once instead of at evaluation time.

    audiomcq fetch benchmark mmau-test-mini --to s3://audiomcq/benchmarks/mmau-test-mini
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from audiomcq import __version__
from audiomcq.errors import AudioMCQError
from audiomcq.fetch import hub
from audiomcq.fetch.bench_parts import Context, embedded_audio, github_file, hub_archives, row_id, table_to_jsonl
from audiomcq.fetch.store import Destination
from audiomcq.jsonio import iter_json_items, load_json

log = logging.getLogger(__name__)
MANIFEST = "fetch-manifest.json"
EXAMPLES = 10
# GitHub metadata pins: (repo, commit, path, git blob sha1, size); the blob ids are those of the files at the commit.
MMAU_COMMIT = "110127f54c0dfba3faa5ec9feee4a7e4148679c5"
MMAU_MINI = ("Sakshi113/MMAU", MMAU_COMMIT, "mmau-test-mini.json", "a2f7539b406a7a466d554e15a22342dbfe53c461", 590823)
MMAU_TEST = ("Sakshi113/MMAU", MMAU_COMMIT, "mmau-test.json", "344d99bb206f8be8e69b4507988556fb52b36b02", None)
MMAR_META = (
    "ddlBoJack/MMAR",
    "3bce090a967db576c8ad433b290a8da582d6d2a0",
    "MMAR-meta.jsonl",
    "3a1a26748bfeede58b16c4a1877daa398285f30b",
    2700936,
)


def _meta_paths(meta: Path, id_key: str, path_key: str) -> dict[str, str]:
    """id -> audio path (``./`` dropped) from a JSON-list or JSONL metadata file."""
    out = {}
    for _, item in iter_json_items(meta):
        if isinstance(item, dict) and item.get(id_key) is not None and item.get(path_key):
            out[str(item[id_key])] = posixpath.normpath(str(item[path_key]))
    return out


def _mmau(ctx: Context, pin: tuple[Any, ...], hub_repo: str) -> Path:
    meta = github_file(ctx, *pin)
    paths = _meta_paths(meta, "id", "audio_id")
    repo = ctx.hub_repo(hub_repo)
    counts = embedded_audio(ctx, repo, lambda row: paths.get(row_id(row) or ""), "context", ["id", "other_attributes"])
    ctx.sources[-1]["audio"] = counts
    return meta


def _mmar(ctx: Context) -> Path:
    meta = github_file(ctx, *MMAR_META)
    repo = ctx.hub_repo("BoJack/MMAR")
    ctx.sources[-1]["files_placed"] = hub_archives(ctx, repo, ("mmar-audio.tar.gz",))
    return meta


def _mmsu(ctx: Context) -> Path:
    repo = ctx.hub_repo("ddwang2000/MMSU")
    data = [f for f in repo.select(("data/*",)) if f.path.endswith((".parquet", ".jsonl", ".json"))]
    if not data:
        raise AudioMCQError(f"{repo.endpoint}/datasets/{repo.repo_id}@{repo.commit}: no data/ files")
    audio = repo.select(("audio/*",))
    archived = [f for f in audio if f.path.endswith((".zip", ".tar", ".tar.gz", ".tgz"))]
    if archived:
        hub_archives(ctx, repo, tuple(f.path for f in archived), "audio")
    hub.fetch_files(repo, [f for f in audio if f not in archived], ctx.dest)
    entries = hub.fetch_files(repo, data, Destination(ctx.dest.staging / "mmsu-data"), keep=True)
    local = [Path(e["local"]) for e in entries]
    count, meta = table_to_jsonl(ctx, local, "mmsu.jsonl", "audio", "audio")
    ctx.sources[-1]["rows"] = count
    return meta


def _dcase(ctx: Context) -> Path:
    repo = ctx.hub_repo("PeacefulData/2025_DCASE_AudioQA_Official")
    folder = f"dcase_2025_question_path/{ctx.split}"
    questions = [f for f in repo.select((f"{folder}/*",)) if f.path.endswith(".json")]
    if not questions:
        raise AudioMCQError(f"{repo.endpoint}/datasets/{repo.repo_id}@{repo.commit}: no question files in {folder}/")
    scratch = Destination(ctx.dest.staging / "dcase-questions")
    entries = hub.fetch_files(repo, questions, scratch, keep=True)
    in_repo = {f.path: f for f in repo.files}
    wanted, rewritten = {}, 0
    layout = ctx.dest.staging / "layout" / "dcase2025"
    layout.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        item = load_json(entry["local"])
        url = str(item.get("audio_url") or "")
        beside = posixpath.normpath(posixpath.join(posixpath.dirname(entry["source_path"]), url))
        if url and url not in in_repo and beside in in_repo:  # published relative to the question file
            item = {**item, "audio_url": beside, "audio_url_published": url}
            rewritten += 1
        for path in (item.get("audio_url"),):
            if path in in_repo:
                wanted[path] = in_repo[path]
        target = layout / PurePosixPath(entry["source_path"]).name
        target.write_text(json.dumps(item, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    hub.fetch_files(repo, sorted(wanted.values(), key=lambda f: f.path), ctx.dest)
    if len(wanted) < len(entries):  # audio not listed file by file: take the split's archives, if any
        packed = [f.path for f in repo.files if ctx.split in f.path and f.path.endswith((".zip", ".tar.gz", ".tar"))]
        if packed:
            hub_archives(ctx, repo, tuple(packed))
    ctx.sources[-1].update({"split": ctx.split, "questions": len(entries), "audio_url_rewritten": rewritten})
    for path in sorted(layout.iterdir()):
        ctx.dest.put_file(path, f"dcase2025/{path.name}", keep=True)
    return layout if ctx.dest.s3 else ctx.dest.local_copy("dcase2025")


FETCHERS: dict[str, Callable[[Context], Path]] = {
    "mmau-test-mini": lambda ctx: _mmau(ctx, MMAU_MINI, "gamma-lab-umd/MMAU-test-mini"),
    "mmau-test": lambda ctx: _mmau(ctx, MMAU_TEST, "gamma-lab-umd/MMAU-test"),
    "mmar": _mmar,
    "mmsu": _mmsu,
    "dcase2025": _dcase,
}


def fetch_benchmark(
    name: str,
    to: str | Path,
    *,
    token_env: str | None = "HF_TOKEN",
    endpoint: str | None = None,
    endpoints: dict[str, str] | None = None,
    metadata_revision: str | None = None,
    split: str = "dev",
) -> dict[str, Any]:
    """Fetch benchmark ``name`` into ``to`` (a directory or ``s3://`` prefix); returns the manifest.

    ``metadata_revision`` fetches GitHub metadata at another commit than the pinned one (then unverified);
    ``split`` picks the DCASE 2025 question split."""
    if name not in FETCHERS:
        raise AudioMCQError(f"unknown benchmark {name!r}; known: {', '.join(FETCHERS)}")
    dest = Destination(to)
    dest.begin()
    ctx = Context(dest, token_env, endpoint, dict(endpoints or {}), metadata_revision, split)
    meta = FETCHERS[name](ctx)
    layout = check_layout(name, meta, dest)
    manifest = {
        "kind": "benchmark",
        "name": name,
        "sources": ctx.sources,
        "layout": layout,
        "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tool": f"audiomcq {__version__}",
    }
    dest.put_json(MANIFEST, manifest)
    dest.complete(layout["items"])
    return manifest


def check_layout(name: str, meta: Path, dest: Destination) -> dict[str, Any]:
    """Load the metadata with the evaluation task's own adapter and count the items whose audio is there."""
    from audiomcq.evaluation.tasks import get_task

    task = get_task(name)
    loaded = task.benchmark.load(meta)
    have = {path for path, size in dest.listing().items() if size > 0}
    missing = [r for r in loaded.records if posixpath.normpath(r.audio_path or "") not in have]
    return {
        "task": name,
        "metadata": task.default_file,
        "items": len(loaded.records),
        "audio_present": len(loaded.records) - len(missing),
        "audio_missing": len(missing),
        "missing_examples": [f"{r.id}: {r.audio_path}" for r in missing[:EXAMPLES]],
        "problems": dict(loaded.problem_counts()),
    }
