"""Compile the pipelines to IR YAML, or run one locally with kfp.local (lightweight components in subprocesses)."""

from __future__ import annotations

import builtins
import os
from pathlib import Path

from kfp import compiler

from pipelines.post_training import post_training

PIPELINES = {"audiomcq-post-training": post_training}


def compile_all(out_dir: str | Path) -> list[Path]:
    """Write ``<name>.yaml`` for every pipeline; the output is deterministic for a given kfp version."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, pipeline in PIPELINES.items():
        path = out / f"{name}.yaml"
        compiler.Compiler().compile(pipeline, str(path))
        paths.append(path)
    return paths


def run_local(root: str | Path, recipe: str = "demo", overrides: list[str] | None = None) -> Path:
    """Run ``audiomcq-post-training`` with kfp.local's SubprocessRunner; returns the run's directory."""
    from kfp import local

    # Independent tasks run side by side here (two at a time); one math thread each keeps them from fighting over
    # the cores (two 2-thread torch processes on 2 cores ran ~3x slower than one thread each).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.glob("audiomcq-post-training-*"))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    # kfp.local indents print() by swapping builtins.print per task; ParallelFor threads restore it out of order,
    # leaving an indenting print behind for the rest of the process. Put the real one back.
    real_print = builtins.print
    try:
        post_training(recipe=recipe, overrides=list(overrides or []))
    finally:
        builtins.print = real_print
    (run_dir,) = set(root.glob("audiomcq-post-training-*")) - before
    return run_dir
