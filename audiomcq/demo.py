"""``audiomcq demo``: the whole loop as the local KFP pipeline, then the report and one served answer.

What a new user sees: the results tables (filter behaviour, label quality against the synthetic ground truth,
accuracy per paradigm and stage with audio, on the strong-AC subset and in silence), where the Markdown report
and PNG plot were written, and a real audio question answered by the selected checkpoint through KServe.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from audiomcq.errors import AudioMCQError
from audiomcq.jsonio import load_json

log = logging.getLogger(__name__)


def run_demo(out_dir: str | Path, recipe: str = "demo", overrides: list[str] | None = None) -> dict[str, Any]:
    """Run the pipeline under ``out_dir``, copy the report out, query the selected model; returns a summary."""
    from pipelines.run import run_local

    out = Path(out_dir).resolve()
    started = time.monotonic()
    run_dir = run_local(out / "pipeline-root", recipe, overrides)
    pipeline_seconds = time.monotonic() - started
    report_dir = run_dir / "report"
    shutil.copyfile(report_dir / "markdown", out / "report.md")
    shutil.copyfile(report_dir / "html", out / "report.html")
    shutil.copyfile(report_dir / "html.png", out / "accuracy.png")
    shutil.copyfile(run_dir / "promote" / "summary", out / "promotion.md")  # the gate, run dry: no cluster here
    shutil.copyfile(run_dir / "promote" / "decision" / "inferenceservice.yaml", out / "inferenceservice.yaml")
    selection = load_json(next(run_dir.rglob("selection.json")))
    corpus = next(p for p in run_dir.rglob("loop") if (p / "eval.jsonl").is_file())
    answer = query_selected(selection["model"], corpus)
    return {
        "run_dir": str(run_dir),
        "report": (out / "report.md").read_text(),
        "report_path": str(out / "report.md"),
        "plot_path": str(out / "accuracy.png"),
        "pipeline_seconds": pipeline_seconds,
        "promotion": (out / "promotion.md").read_text().splitlines()[0].lstrip("# "),
        "promotion_path": str(out / "promotion.md"),
        "query": answer,
    }


def query_selected(model_dir: str, corpus: Path, timeout: float = 120.0) -> dict[str, Any]:
    """Start the KServe server on the selected model, ask one held-out question with its real audio, stop it."""
    record = json.loads((corpus / "eval.jsonl").read_text().splitlines()[0])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "audiomcq.cli", "serve", "--model", model_dir, "--http-port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    base = f"http://127.0.0.1:{port}/v1/models/audiomcq"
    try:
        deadline = time.monotonic() + timeout
        while not _ready(base):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AudioMCQError(f"the model server on port {port} did not become ready")
            time.sleep(0.5)
        wav = (corpus / record["audio_path"]).read_bytes()
        body = {"instances": [{"audio": base64.b64encode(wav).decode(), "question": record["question"],
                               "choices": record["choices"]}]}  # fmt: skip
        req = urllib.request.Request(
            f"{base}:predict", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            prediction = json.load(resp)["predictions"][0]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {
        "audio": str(corpus / record["audio_path"]),
        "caption": record.get("caption"),
        "question": record["question"],
        "choices": record["choices"],
        "truth": record["answer"],
        "answer": prediction["answer"],
    }


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(json.load(resp).get("ready"))
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False
