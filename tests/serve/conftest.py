"""Fixtures for the tests of a real ``audiomcq serve`` with small limits (test_serve.py, test_serve_refusals.py,
test_serve_metrics_fuzz.py): the server on the tiny Omni model, one per module, the file server on 127.0.0.1 whose
/audio/ it may fetch from, and the corpus's eval records. Modules that need other settings define their own
``server``, which wins over this one."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

LIMITS = [
    "--max-batch-size",
    "8",
    "--max-wait-ms",
    "30",
    "--max-audio-seconds",
    "4",
    "--max-audio-bytes",
    "400000",
    "--max-choices",
    "6",
    "--max-question-chars",
    "300",
    "--max-instances",
    "4",
    "--max-completion-tokens",
    "32",
]


class _Files(http.server.SimpleHTTPRequestHandler):
    """Serves the corpus; ``/audio/moved`` redirects to a real clip (the model server must not follow it)."""

    def do_GET(self) -> None:
        if self.path == "/audio/moved":
            self.send_response(302)
            self.send_header("Location", "/audio/synth-eval-00000.wav")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def files(synth_corpus):
    """An HTTP file server over the corpus on 127.0.0.1: its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Files(*a, directory=str(synth_corpus)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def server(tiny_omni, files, tmp_path_factory):
    """``audiomcq serve`` on the tiny Omni model, with small limits and the file server's /audio/ allowed."""
    from audiomcq.bench.serve import running_server

    log = tmp_path_factory.mktemp("serve") / "server.log"
    args = [*LIMITS, "--sample-rates", "16000,44100", "--allow-url-prefixes", f"{files}/audio/"]
    try:
        with running_server(tiny_omni, args, log) as base:
            yield base
    finally:
        if log.is_file():
            print(log.read_text()[-3000:])


@pytest.fixture(scope="module")
def records(synth_corpus):
    return [json.loads(line) for line in (synth_corpus / "eval.jsonl").read_text().splitlines()]
