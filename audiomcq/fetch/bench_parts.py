"""Building blocks of the benchmark fetchers: pinned metadata from GitHub, audio embedded in hub Parquet shards,
archives and plain files from hub repos. Each one is resumable on its own (see :mod:`audiomcq.fetch.place`)."""

from __future__ import annotations

import json
import logging
import mimetypes
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from audiomcq.errors import AudioMCQError
from audiomcq.fetch import archives, hub, place
from audiomcq.fetch.archives import Remote
from audiomcq.fetch.store import Destination

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What every benchmark fetcher needs: the destination, hub access and download-site overrides."""

    dest: Destination
    token_env: str | None = "HF_TOKEN"
    endpoint: str | None = None
    endpoints: dict[str, str] = field(default_factory=dict)
    metadata_revision: str | None = None
    split: str = "dev"
    sources: list[dict[str, Any]] = field(default_factory=list)  # manifest entries, filled as parts run

    def hub_repo(self, repo_id: str, revision: str | None = None) -> hub.HubRepo:
        repo = hub.resolve(
            repo_id, revision=revision, repo_type="dataset", endpoint=self.endpoint, token_env=self.token_env
        )
        self.sources.append({"what": "hub dataset", **repo.describe()})
        return repo


def github_file(ctx: Context, repo: str, commit: str, path: str, gitsha1: str | None, size: int | None) -> Path:
    """A metadata file from a GitHub repo at ``commit`` (or ``ctx.metadata_revision``), placed at the root under
    its own name; checked against the pinned git blob id when fetched at the pinned commit. Returns a local copy."""
    revision = ctx.metadata_revision or commit
    pinned = revision == commit
    digest = f"gitsha1:{gitsha1}" if pinned and gitsha1 else None
    name = PurePosixPath(path).name
    url = f"{archives.base_url('github', ctx.endpoints)}/{repo}/{revision}/{path}"
    ctx.sources.append({"what": "metadata", "url": url, "digest": digest, "verified": digest is not None})
    if ctx.dest.has(name, size if pinned else None, digest):
        return ctx.dest.local_copy(name)
    local = archives.download(Remote(url, name, digest, size if pinned else None), ctx.dest.staging / "meta")
    kept = ctx.dest.put_file(local, name, digest, keep=True)
    assert kept is not None
    return kept


def rows(path: Path, columns: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """The rows of a Parquet, JSONL or JSON-list file, streamed."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        names = [c for c in columns if c in pf.schema_arrow.names] if columns else None
        for batch in pf.iter_batches(batch_size=64, columns=names):
            yield from batch.to_pylist()
        return
    from audiomcq.jsonio import iter_json_items

    for _, item in iter_json_items(path):
        if isinstance(item, dict):
            yield item


def audio_bytes(value: Any) -> tuple[bytes | None, str | None]:
    """``(bytes, path)`` of an audio cell: an HF Audio struct ``{"bytes", "path"}``, raw bytes, or a path string."""
    if isinstance(value, dict):
        return value.get("bytes"), value.get("path")
    if isinstance(value, bytes | bytearray):
        return bytes(value), None
    return None, value if isinstance(value, str) else None


def embedded_audio(
    ctx: Context,
    repo: hub.HubRepo,
    target: Callable[[dict[str, Any]], str | None],
    audio_column: str,
    columns: list[str],
) -> dict[str, int]:
    """Write the audio embedded in the repo's Parquet shards to the paths ``target(row)`` names (None: a row the
    metadata does not know, counted as unmatched). A shard already written in full is skipped."""
    counts = {"written": 0, "kept": 0, "unmatched": 0, "no_audio": 0}
    for file in repo.select(("*.parquet",)):
        if place.is_done(ctx.dest, "parquet", file.path):
            continue
        local = hub.download(repo, file, ctx.dest.staging / "hub")
        for row in rows(local, [audio_column, *columns]):
            rel = target(row)
            data, _ = audio_bytes(row.get(audio_column))
            if rel is None:
                counts["unmatched"] += 1
            elif data is None:
                counts["no_audio"] += 1
            elif ctx.dest.has(rel, len(data), None):
                counts["kept"] += 1
            else:
                tmp = ctx.dest.staging / "audio" / rel
                tmp.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_bytes(data)
                ctx.dest.put_file(tmp, rel)
                counts["written"] += 1
        ctx.dest.put_json(place.done_record("parquet", file.path), {"file": file.to_dict(), **counts})
        local.unlink(missing_ok=True)
    return counts


def hub_archives(ctx: Context, repo: hub.HubRepo, patterns: tuple[str, ...], under: str = "", strip: int = 0) -> int:
    """Unpack the repo's archives matching ``patterns`` below ``under``; returns the files placed."""
    placed = 0
    files = repo.select(patterns)
    if not files:
        raise AudioMCQError(f"{repo.endpoint}/datasets/{repo.repo_id}@{repo.commit}: no file matches {patterns}")
    for file in files:
        name = PurePosixPath(file.path).name
        if place.is_done(ctx.dest, under, name):
            continue
        local = hub.download(repo, file, ctx.dest.staging / "hub")
        placed += place.unpack_into(local, ctx.dest, under, strip)
        ctx.dest.put_json(place.done_record(under, name), {"file": file.to_dict(), "into": under})
        local.unlink(missing_ok=True)
    return placed


def row_id(row: dict[str, Any]) -> str | None:
    """A row's id: its ``id`` column, else the ``id`` inside a JSON ``other_attributes`` (MMAU's hub Parquet)."""
    if row.get("id") is not None:
        return str(row["id"])
    attrs = row.get("other_attributes")
    if isinstance(attrs, str):
        try:
            attrs = json.loads(attrs)
        except ValueError:
            return None
    return str(attrs["id"]) if isinstance(attrs, dict) and attrs.get("id") is not None else None


def audio_suffix(data: bytes, path: str | None) -> str:
    """A file suffix for embedded audio: the cell's own name if it has one, else sniffed from the header."""
    if path and PurePosixPath(path).suffix:
        return PurePosixPath(path).suffix
    if data[:4] == b"RIFF":
        return ".wav"
    if data[:4] == b"fLaC":
        return ".flac"
    if data[:3] == b"ID3" or data[:2] in (b"\xff\xfb", b"\xff\xf3"):
        return ".mp3"
    return mimetypes.guess_extension("audio/wav") or ".wav"


def table_to_jsonl(
    ctx: Context, sources: list[Path], out_rel: str, audio_column: str, audio_dir: str
) -> tuple[int, Path]:
    """Rows of the benchmark's own data files as one JSONL at ``out_rel``; embedded audio goes to
    ``audio_dir/<id><suffix>`` and the row's ``audio_path`` names it (a path-only cell is kept as the path).
    Returns the row count and a local copy of the JSONL."""
    out = ctx.dest.staging / "layout" / out_rel
    out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with out.open("w", encoding="utf-8") as fh:
        for source in sources:
            for row in rows(source):
                data, path = audio_bytes(row.pop(audio_column, None))
                rid = row_id(row) or f"row{count:06d}"
                if data is not None:
                    rel = f"{audio_dir}/{rid}{audio_suffix(data, path)}"
                    if not ctx.dest.has(rel, len(data), None):
                        tmp = ctx.dest.staging / "audio" / rel
                        tmp.parent.mkdir(parents=True, exist_ok=True)
                        tmp.write_bytes(data)
                        ctx.dest.put_file(tmp, rel)
                    row["audio_path"] = rel
                elif path and not row.get("audio_path"):
                    row["audio_path"] = path
                fh.write(json.dumps(_plain(row), ensure_ascii=False) + "\n")
                count += 1
    kept = ctx.dest.put_file(out, out_rel, keep=True)
    assert kept is not None
    return count, kept


def _plain(value: Any) -> Any:
    """JSON-safe copy of a row (bytes cells other than the audio are dropped as unreadable)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not isinstance(v, bytes | bytearray)}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
