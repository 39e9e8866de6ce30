"""Local stand-ins on 127.0.0.1 for the sites the fetchers talk to: the Hugging Face Hub's HTTP API and a plain
file server (Zenodo's record API, OpenSLR, GitHub raw). Files are bytes the tests make.

The hub stand-in answers what ``huggingface_hub`` calls: ``GET /api/{models,datasets}/{repo}/revision/{rev}``
(siblings with ``blobId``/``lfs.sha256``, ``sha``, ``cardData``, ``gated``) and ``HEAD``/``GET
[/datasets]/{repo}/resolve/{rev}/{path}`` with ``X-Repo-Commit``, ``ETag`` (git blob sha1), ``X-Linked-Etag`` and
``X-Linked-Size`` (LFS files), Range requests, and the 401/403 ``X-Error-Code: GatedRepo`` answers of a gated repo.
Hooks let a test corrupt a file's first download, hold a download until released, and count requests.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlparse

LFS_MIN = 1024  # files this large are served as LFS objects


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class StubRepo:
    files: dict[str, bytes]
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    card: dict[str, Any] = field(default_factory=dict)
    gated: bool = False
    tokens: set[str] = field(default_factory=set)  # tokens that accepted the licence of a gated repo
    listed_sha256: dict[str, str] = field(default_factory=dict)  # LFS digests the listing states instead of the real

    def sibling(self, path: str) -> dict[str, Any]:
        data = self.files[path]
        out: dict[str, Any] = {"rfilename": path, "size": len(data), "blobId": git_sha1(data)}
        if len(data) >= LFS_MIN:
            sha = self.listed_sha256.get(path) or hashlib.sha256(data).hexdigest()
            out["lfs"] = {"sha256": sha, "size": len(data), "pointerSize": 134}
        return out


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class StubServer:
    """Base: a threaded HTTP server with request counting and download hooks."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()
        self.corrupt_once: set[str] = set()  # paths whose next GET returns damaged bytes of the right length
        self.truncate_once: set[str] = set()  # paths whose next GET stops half-way through the body
        self.hold: dict[str, threading.Event] = {}  # paths whose GET waits until the event is set
        self.reached: dict[str, threading.Event] = {}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner.handle(self, "GET")

            def do_HEAD(self) -> None:
                owner.handle(self, "HEAD")

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> StubServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        for event in self.hold.values():
            event.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def gets(self, path: str) -> int:
        return self.requests[("GET", path)]

    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        raise NotImplementedError

    # --- helpers -----------------------------------------------------------------------------------------------------
    def send_json(self, h: BaseHTTPRequestHandler, obj: Any, status: int = 200) -> None:
        body = json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def send_error(self, h: BaseHTTPRequestHandler, status: int, code: str = "", message: str = "") -> None:
        body = json.dumps({"error": message or code}).encode()
        h.send_response(status)
        if code:
            h.send_header("X-Error-Code", code)
        if message:
            h.send_header("X-Error-Message", message)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def send_file(
        self, h: BaseHTTPRequestHandler, method: str, key: str, data: bytes, headers: dict[str, str]
    ) -> None:
        start = 0
        rng = h.headers.get("Range")
        if method == "GET" and key in self.hold:
            self.reached.setdefault(key, threading.Event()).set()
            self.hold[key].wait(30)
        if method == "GET" and key in self.corrupt_once:
            self.corrupt_once.discard(key)
            data = bytes(b ^ 0xFF for b in data[:16]) + data[16:]
        if rng and rng.startswith("bytes=") and method == "GET":
            start = int(rng[6:].split("-")[0] or 0)
        body = data[start:]
        h.send_response(206 if start else 200)
        for name, value in headers.items():
            h.send_header(name, value)
        h.send_header("Accept-Ranges", "bytes")
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if method == "HEAD":
            return
        if key in self.truncate_once:
            self.truncate_once.discard(key)
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        h.wfile.write(body)


class HubStub(StubServer):
    """The hub: ``repos`` maps ``"model:org/name"`` / ``"dataset:org/name"`` to a StubRepo."""

    def __init__(self) -> None:
        super().__init__()
        self.repos: dict[str, StubRepo] = {}

    def add(self, kind: str, repo_id: str, repo: StubRepo) -> StubRepo:
        self.repos[f"{kind}:{repo_id}"] = repo
        return repo

    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        path = unquote(urlparse(h.path).path)
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 4:
            kind = {"models": "model", "datasets": "dataset"}.get(parts[1], "")
            repo_id = "/".join(parts[2:4])
            self.requests[(method, f"api:{repo_id}")] += 1
            repo = self.repos.get(f"{kind}:{repo_id}")
            if repo is None:
                return self.send_error(h, 401, "RepoNotFound", "Repository not found")
            revision = parts[5] if len(parts) > 5 and parts[4] == "revision" else "main"
            if revision not in ("main", repo.commit):
                return self.send_error(h, 404, "RevisionNotFound", "Invalid rev id")
            info = {
                "id": repo_id,
                "sha": repo.commit,
                "gated": "manual" if repo.gated else False,
                "siblings": [repo.sibling(p) for p in sorted(repo.files)],
                "cardData": repo.card,
            }
            return self.send_json(h, info)
        kind = "dataset" if parts[0] == "datasets" else "model"
        if kind == "dataset":
            parts = parts[1:]
        if len(parts) < 5 or parts[2] != "resolve":
            return self.send_error(h, 404, "", "not found")
        repo_id, revision, file = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        key = f"{repo_id}/{file}"
        self.requests[(method, key)] += 1
        repo = self.repos.get(f"{kind}:{repo_id}")
        if repo is None:
            return self.send_error(h, 401, "RepoNotFound", "Repository not found")
        if repo.gated:
            auth = h.headers.get("Authorization", "")
            if not auth:
                return self.send_error(h, 401, "GatedRepo", f"Access to {repo_id} is restricted")
            if auth.removeprefix("Bearer ") not in repo.tokens:
                return self.send_error(h, 403, "GatedRepo", f"Access to {repo_id} is restricted: accept the terms")
        if revision not in ("main", repo.commit):
            return self.send_error(h, 404, "RevisionNotFound", "Invalid rev id")
        if file not in repo.files:
            return self.send_error(h, 404, "EntryNotFound", "Entry not found")
        data = repo.files[file]
        headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{git_sha1(data)}"'}
        if len(data) >= LFS_MIN:
            headers.update({"X-Linked-Etag": f'"{hashlib.sha256(data).hexdigest()}"', "X-Linked-Size": str(len(data))})
        self.send_file(h, method, key, data, headers)


class FileStub(StubServer):
    """Plain files by URL path (``files``), plus Zenodo's record listing at ``/api/records/<id>``."""

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, bytes] = {}
        self.records: dict[str, list[str]] = {}  # Zenodo record id -> paths of its files in ``files``
        self.md5_override: dict[str, str] = {}

    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        path = unquote(urlparse(h.path).path)
        self.requests[(method, path)] += 1
        if path.startswith("/api/records/"):
            record = path.rsplit("/", 1)[-1]
            listing = []
            for p in self.records.get(record, []):
                md5 = self.md5_override.get(p) or hashlib.md5(self.files[p]).hexdigest()
                listing.append(
                    {
                        "key": p.rsplit("/", 1)[-1],
                        "size": len(self.files[p]),
                        "checksum": f"md5:{md5}",
                        "links": {"self": f"{self.url}{p}"},
                    }
                )
            return self.send_json(h, {"id": record, "files": listing})
        if path not in self.files:
            return self.send_error(h, 404, "", "not found")
        self.send_file(h, method, path, self.files[path], {})
