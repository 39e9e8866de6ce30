"""Hugging Face Hub access for the fetchers: resolve a repo at a pinned commit, download files one at a time with
``huggingface_hub``, and hold every file to the hub's own checksum.

The endpoint is the ``endpoint`` argument, else ``HF_ENDPOINT`` (huggingface_hub's own setting), else the public
hub. The token is read from the environment variable whose *name* the caller gives (``HF_TOKEN`` by default) and is
never logged. A revision (branch, tag or commit) is resolved once to its commit sha, and every file is fetched at that
sha, so a fetch that resumes later gets the same bytes even if the branch moved. A downloaded file is checked against
the LFS sha256 (large files) or the git blob sha1 (small files) the hub lists for it; a mismatch is fetched again
and, if it persists, fails naming the file.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiomcq.errors import AudioMCQError
from audiomcq.fetch import digests
from audiomcq.fetch.store import Destination

log = logging.getLogger(__name__)
DEFAULT_ENDPOINT = "https://huggingface.co"
ATTEMPTS = 3  # downloads of one file before a persistent checksum mismatch is an error


@dataclass(frozen=True)
class HubFile:
    """One file of a repo at a commit, with the digest the hub publishes for it."""

    path: str
    size: int | None
    digest: str | None  # "sha256:…" for LFS files, "gitsha1:…" otherwise
    lfs: bool

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "digest": self.digest, "lfs": self.lfs}


@dataclass
class HubRepo:
    """A repo resolved at one commit: what a fetch downloads and records."""

    repo_id: str
    repo_type: str
    revision: str
    commit: str
    endpoint: str
    files: list[HubFile]
    license: dict[str, Any] = field(default_factory=dict)
    gated: Any = False
    token_env: str | None = None

    def select(self, patterns: Sequence[str], exclude: Sequence[str] = ()) -> list[HubFile]:
        """Files matching any of ``patterns`` (fnmatch on the repo path) and none of ``exclude``."""
        return [
            f
            for f in self.files
            if any(fnmatch.fnmatchcase(f.path, p) for p in patterns)
            and not any(fnmatch.fnmatchcase(f.path, p) for p in exclude)
        ]

    def describe(self) -> dict[str, Any]:
        """The manifest's source block."""
        return {
            "repo": self.repo_id,
            "repo_type": self.repo_type,
            "revision": self.revision,
            "commit": self.commit,
            "endpoint": self.endpoint,
            "license": self.license,
            "gated": self.gated,
        }


def endpoint_of(endpoint: str | None) -> str:
    return (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def read_token(token_env: str | None) -> str | None:
    """The token from the named variable; None when no name is given or the variable is unset."""
    return os.environ.get(token_env) or None if token_env else None


def resolve(
    repo_id: str,
    *,
    revision: str | None = None,
    repo_type: str = "model",
    endpoint: str | None = None,
    token_env: str | None = "HF_TOKEN",
) -> HubRepo:
    """Resolve ``repo_id`` at ``revision`` (default ``main``) to its commit and file list with digests."""
    from huggingface_hub import HfApi

    url = endpoint_of(endpoint)
    revision = revision or "main"
    api = HfApi(endpoint=url, token=read_token(token_env) or False)
    with hub_errors(repo_id, repo_type, url, token_env):
        info = api.repo_info(repo_id, revision=revision, repo_type=repo_type, files_metadata=True)
    if not info.sha:
        raise AudioMCQError(f"{url}: {repo_type} {repo_id}@{revision}: the hub did not name the commit")
    files = []
    for sib in info.siblings or []:
        lfs = sib.lfs is not None
        digest = f"sha256:{sib.lfs.sha256}" if lfs else (f"gitsha1:{sib.blob_id}" if sib.blob_id else None)
        size = sib.lfs.size if lfs else sib.size
        files.append(HubFile(sib.rfilename, size, digest, lfs))
    card = info.card_data.to_dict() if getattr(info, "card_data", None) is not None else {}
    licence = {k: card[k] for k in ("license", "license_name", "license_link") if card.get(k)}
    log.info("%s %s@%s -> %s (%d files)", repo_type, repo_id, revision, info.sha, len(files))
    return HubRepo(
        repo_id, repo_type, revision, info.sha, url, files, licence, getattr(info, "gated", False) or False, token_env
    )


def download(repo: HubRepo, file: HubFile, staging: Path, force: bool = False) -> Path:
    """One file into ``staging`` at the repo's commit, verified; refetched when its bytes do not match."""
    from huggingface_hub import hf_hub_download

    token = read_token(repo.token_env) or False
    for attempt in range(1, ATTEMPTS + 1):
        with hub_errors(repo.repo_id, repo.repo_type, repo.endpoint, repo.token_env, file.path):
            local = Path(
                hf_hub_download(
                    repo.repo_id,
                    file.path,
                    repo_type=repo.repo_type,
                    revision=repo.commit,
                    local_dir=staging,
                    endpoint=repo.endpoint,
                    token=token,
                    force_download=force or attempt > 1,
                )
            )
        problem = digests.mismatch(local, file.digest, file.size)
        if problem is None:
            return local
        log.warning("%s/%s: %s (try %d of %d); fetching it again", repo.repo_id, file.path, problem, attempt, ATTEMPTS)
        local.unlink(missing_ok=True)
    raise AudioMCQError(
        f"{repo.endpoint}/{repo.repo_id} {file.path}: checksum still wrong after {ATTEMPTS} downloads ({problem})"
    )


def fetch_files(
    repo: HubRepo, files: Iterable[HubFile], dest: Destination, *, under: str = "", keep: bool = False
) -> list[dict[str, Any]]:
    """Bring ``files`` into ``dest`` (below ``under``), skipping those already there with the published digest.

    Returns one manifest entry per file. With ``keep`` each entry's ``local`` names a local copy, for files the
    fetcher reads afterwards (benchmark metadata, release records)."""
    entries = []
    for file in files:
        rel = f"{under.strip('/')}/{file.path}" if under else file.path
        entry: dict[str, Any] = {**file.to_dict(), "path": rel, "source_path": file.path}
        if dest.has(rel, file.size, file.digest):
            log.info("%s: already there, verified", dest.child(rel))
            entry["fetched"] = False
            local = dest.local_copy(rel) if keep else None
        else:
            staged = download(repo, file, dest.staging)
            local = dest.put_file(staged, rel, file.digest, keep=keep)
            log.info("%s: fetched and verified", dest.child(rel))
            entry["fetched"] = True
        if keep and local is not None:
            entry["local"] = str(local)
        entries.append(entry)
    return entries


class hub_errors:
    """Turn huggingface_hub's exceptions into one line naming the repo, the file and what to do."""

    def __init__(self, repo_id: str, repo_type: str, endpoint: str, token_env: str | None, path: str = "") -> None:
        self.where = f"{endpoint}: {repo_type} {repo_id}" + (f" file {path}" if path else "")
        self.repo_url = f"{endpoint}/{'' if repo_type == 'model' else repo_type + 's/'}{repo_id}"
        self.token_env = token_env

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, err: BaseException | None, tb: object) -> bool:
        if err is None or isinstance(err, AudioMCQError):
            return False
        from huggingface_hub import errors as hf

        token = self._token_hint()
        status = getattr(getattr(err, "response", None), "status_code", None)
        if isinstance(err, hf.GatedRepoError):
            msg = f"gated repository: accept its licence at {self.repo_url} with the account whose token is in {token}"
        elif isinstance(err, hf.RevisionNotFoundError):
            msg = "no such revision (branch, tag or commit)"
        elif isinstance(err, hf.RemoteEntryNotFoundError):
            msg = "no such file at this commit"
        elif isinstance(err, hf.RepositoryNotFoundError):
            msg = f"repository not found, or private/gated and not readable with {token}"
        elif status in (401, 403):
            msg = f"HTTP {status}: access denied; check the token in {token} and that you accepted the licence"
        elif isinstance(err, hf.HfHubHTTPError):
            msg = f"HTTP {status}: {str(err).splitlines()[0]}"
        elif isinstance(err, hf.LocalEntryNotFoundError | OSError | ConnectionError | TimeoutError) or _transport(err):
            msg = f"cannot reach the hub or download: {str(err).splitlines()[0] or type(err).__name__}"
        else:
            return False
        raise AudioMCQError(f"{self.where}: {msg}") from None

    def _token_hint(self) -> str:
        if not self.token_env:
            return "a token (none was given: pass --token-env NAME)"
        state = "set" if os.environ.get(self.token_env) else "NOT set"
        return f"${self.token_env} ({state})"


def _transport(err: BaseException) -> bool:
    """A connection, timeout or protocol failure of the HTTP client huggingface_hub uses."""
    return type(err).__module__.split(".")[0].startswith(("httpx", "httpcore"))
