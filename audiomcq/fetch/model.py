"""``audiomcq fetch model``: a base model from the hub into the store, pinned, verified and marked complete.

Only what a stage loads is fetched: safetensors weights and their index, the configs (model, generation,
preprocessor, processor), the tokenizer files, chat templates, Qwen2.5-Omni's ``spk_dict.pt``, and the licence and
model card. The result is a plain model directory (the hub's layout) plus ``fetch-manifest.json`` (repo, resolved
commit, every file with size and digest, the card's licence fields) and the ``_COMPLETE`` marker, written last, so
:func:`audiomcq.infra.storage.local_model` accepts the prefix as any other model.

    audiomcq fetch model Qwen/Qwen2.5-Omni-7B@main --to s3://audiomcq/models/qwen2.5-omni-7b
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audiomcq import __version__
from audiomcq.errors import AudioMCQError
from audiomcq.fetch import hub
from audiomcq.fetch.store import Destination

log = logging.getLogger(__name__)
MANIFEST = "fetch-manifest.json"

#: what a training, filtering, evaluation or serving stage reads from a model repo
MODEL_FILES = (
    "*.safetensors",
    "*.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "video_preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.json",
    "chat_template.jinja",
    "spk_dict.pt",
    "LICENSE*",
    "README.md",
)
#: PyTorch pickles are taken only when a repo has no safetensors weights at all
PICKLED_WEIGHTS = ("pytorch_model*.bin", "pytorch_model.bin.index.json")


def split_ref(ref: str) -> tuple[str, str | None]:
    """``"org/name@rev"`` -> ("org/name", "rev"); no ``@`` -> revision None (the default branch)."""
    repo_id, sep, revision = ref.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")) or (sep and not revision):
        raise AudioMCQError(f"{ref!r}: expected a hub repo id ORG/NAME, optionally @REVISION")
    return repo_id, revision or None


def fetch_model(
    repo_id: str,
    to: str | Path,
    *,
    revision: str | None = None,
    token_env: str | None = "HF_TOKEN",
    endpoint: str | None = None,
    include: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Fetch ``repo_id`` at ``revision`` into ``to`` (a directory or ``s3://`` prefix); returns the manifest.

    ``include`` adds file patterns to the default selection. Files already at ``to`` with the hub's digest are not
    downloaded again, so a rerun after an interruption resumes; the completion marker goes up last."""
    repo = hub.resolve(repo_id, revision=revision, repo_type="model", endpoint=endpoint, token_env=token_env)
    files = repo.select((*MODEL_FILES, *include))
    if not any(f.path.endswith(".safetensors") for f in files):
        files += repo.select(PICKLED_WEIGHTS)
    names = {f.path for f in files}
    if "config.json" not in names:
        raise AudioMCQError(f"{repo.endpoint}/{repo_id}@{repo.commit}: no config.json: not a transformers model repo")
    if not any(n.endswith((".safetensors", ".bin")) for n in names):
        raise AudioMCQError(f"{repo.endpoint}/{repo_id}@{repo.commit}: the repo holds no weights")
    dest = Destination(to)
    dest.begin()
    entries = hub.fetch_files(repo, sorted(files, key=lambda f: f.path), dest)
    manifest = {
        "kind": "model",
        **repo.describe(),
        "files": [{k: v for k, v in e.items() if k != "source_path"} for e in entries],
        "total_bytes": sum(e["size"] or 0 for e in entries),
        "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tool": f"audiomcq {__version__}",
    }
    dest.put_json(MANIFEST, manifest)
    dest.complete(len(entries) + 1)
    fetched = sum(e["fetched"] for e in entries)
    log.info(
        "%s@%s: %d files (%d downloaded, %d already there) -> %s",
        repo_id,
        repo.commit,
        len(entries),
        fetched,
        len(entries) - fetched,
        dest.uri,
    )
    return manifest
