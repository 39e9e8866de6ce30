"""``audiomcq demo``: the whole loop as the local KFP pipeline, then the report and one served answer.

What a new user sees: one line per finished pipeline task with its duration (the executors' own logs go to
``<out>/pipeline.log``; ``verbose`` streams them instead), then the results tables (filter behaviour, label quality
against the synthetic ground truth, accuracy per paradigm and stage with audio, on the strong-AC subset and in
silence), where the Markdown report and PNG plot were written, and a real audio question answered by the selected
checkpoint through KServe.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from audiomcq.errors import AudioMCQError
from audiomcq.jsonio import load_json
from audiomcq.progress import duration

log = logging.getLogger(__name__)


# kfp.local's task lines, once its ANSI colours are stripped: "Executing task 'x'", "Task 'x' finished with status S".
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '([^']+)'")
_FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
_RUN_DIR = re.compile(r"^pipeline: finished -> (.+)$")


def run_demo(
    out_dir: str | Path,
    recipe: str = "demo",
    overrides: list[str] | None = None,
    verbose: bool = False,
    say: Callable[[str], Any] = log.info,
) -> dict[str, Any]:
    """Run the pipeline under ``out_dir``, copy the report out, query the selected model; returns a summary."""
    out = Path(out_dir).resolve()
    started = time.monotonic()
    if verbose:
        from audiomcq.pipelines.run import run_local

        run_dir = run_local(out / "pipeline-root", recipe, overrides)
    else:
        args = ["--recipe", recipe, *(a for o in overrides or () for a in ("--set", o))]
        run_dir = run_pipeline_quietly(out / "pipeline-root", out / "pipeline.log", args, say=say)
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


def run_pipeline_quietly(
    root: Path,
    log_path: Path,
    args: list[str],
    name: str = "audiomcq-demo",
    say: Callable[[str], Any] = log.info,
) -> Path:
    """Run a pipeline locally in a child process, its output kept in ``log_path``; ``say`` one line per task as it
    finishes (name, status, duration). Returns the run's directory; a failure names the task and the log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "audiomcq.cli", "pipeline", "run", name, "--local", "--out", str(root), *args]
    say(f"pipeline {name}: running; the tasks' logs go to {log_path}")
    begun: dict[str, float] = {}
    run_dir, failed, done = None, None, 0
    start = time.monotonic()
    with (
        log_path.open("w") as log_fh,
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace") as proc,
    ):
        assert proc.stdout is not None
        for raw in proc.stdout:
            log_fh.write(raw)
            line = _ANSI.sub("", raw).strip()
            # parallel tasks log from several threads, so one line may hold more than one task's message
            for m in _STARTED.finditer(line):
                begun[m.group(1)] = time.monotonic()
            for m in _FINISHED.finditer(line):
                task, status = m.groups()
                done += 1
                took = duration(time.monotonic() - begun.pop(task, start))
                failed = failed or (task if status != "SUCCESS" else None)
                elapsed = duration(time.monotonic() - start)
                say(f"  [{done:2d}] {task:<44} {status.lower():<8} {took:>10}   ({elapsed} in all)")
            if m := _RUN_DIR.match(line):
                run_dir = Path(m.group(1))
    if proc.returncode != 0 or run_dir is None:
        what = f"task {failed!r} failed" if failed else f"the pipeline exited with status {proc.returncode}"
        raise AudioMCQError(f"pipeline {name}: {what}; its log: {log_path}")
    return run_dir


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
        body = {
            "instances": [
                {"audio": base64.b64encode(wav).decode(), "question": record["question"], "choices": record["choices"]}
            ]
        }
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


def add_demo_commands(sub: Any) -> None:
    """Register ``demo``."""
    p = sub.add_parser("demo", help="run the whole loop locally on the embedded default and query the winner")
    p.add_argument("--out", type=Path, default=Path("out/demo"))
    p.add_argument("--recipe", default="demo")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--verbose", action="store_true", help="stream the pipeline tasks' logs instead of one line each")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    """The embedded-default demo."""
    from audiomcq.synth.audio import espeak_available

    if not espeak_available():
        print("note: espeak-ng is missing, so spoken questions are left out (apt-get install espeak-ng)")
    result = run_demo(args.out, args.recipe, args.overrides, args.verbose, say=lambda line: print(line, flush=True))
    q = result["query"]
    print(result["report"])
    print(
        f"report: {result['report_path']}  plot: {result['plot_path']}  pipeline: {result['pipeline_seconds']:.0f} s"
    )
    print(
        f"{result['promotion']}: {result['promotion_path']} (a dry run; the InferenceService it would apply is beside)"
    )
    print(f"served answer (KServe V1): {q['question']} {q['choices']}")
    print(f"  audio {q['audio']} ({q['caption']}) -> answer {q['answer']!r}, truth {q['truth']!r}")
    return 0
