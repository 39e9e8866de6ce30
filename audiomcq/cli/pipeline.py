"""``audiomcq pipeline``: compile the KFP pipelines, run one locally with kfp.local, or submit one."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from audiomcq.errors import UsageError


def add_pipeline_commands(sub: Any) -> None:
    """Register ``pipeline``."""
    p = sub.add_parser("pipeline", help="compile the KFP pipelines, or run one locally with kfp.local")
    p.add_argument("action", choices=["compile", "run", "submit"])
    p.add_argument("pipeline", nargs="?", help="run/submit: which pipeline (or --name)")
    p.add_argument("--name", default="audiomcq-demo", help="run/submit: which pipeline")
    p.add_argument("--param", action="append", default=[], metavar="KEY=JSON", help="run/submit: a pipeline argument")
    p.add_argument("--experiment", default="audiomcq", help="submit: KFP experiment")
    p.add_argument("--run-name", help="submit: run name")
    p.add_argument("--service-account", help="submit: the runs' pods' account (default $KFP_SERVICE_ACCOUNT)")
    p.add_argument("--out", type=Path, default=Path("dist"), help="compile: output folder; run: pipeline root")
    p.add_argument("--local", action="store_true", help="run: execute with kfp.local (the only runner here)")
    p.add_argument("--manifests", action="store_true", help="compile: also the Pipeline/PipelineVersion CRs")
    p.add_argument("--images", type=Path, help="compile/submit: pin images from `skaffold build --file-output` JSON")
    p.add_argument("--recipe", help="run: the recipe parameter (audiomcq-demo: default demo)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_pipeline)


def cmd_pipeline(args: argparse.Namespace) -> int:
    """Compile or run locally."""
    if args.images and args.action != "run":
        from audiomcq.components.images import load_build_output

        for name, ref in load_build_output(args.images).items():
            print(f"image {name}: {ref}")
    from audiomcq.pipelines.run import compile_all, run_local

    if args.action == "compile":
        for path in compile_all(args.out, manifests=args.manifests):
            print(f"compiled {path}")
        return 0
    from audiomcq.cli.args import pairs

    name = args.pipeline or args.name
    params = {k: _json_or_text(v) for k, v in pairs(args.param, "--param", "KEY=JSON").items()}
    if args.action == "submit":
        from audiomcq.pipelines.run import submit

        run_id = submit(name, params, args.experiment, args.run_name, service_account=args.service_account)
        print(f"submitted: run {run_id}")
        return 0
    if not args.local:
        raise UsageError("`pipeline run` is local only (--local); use `pipeline submit` for a KFP cluster")
    run_dir = run_local(args.out, args.recipe, args.overrides or None, pipeline=name, **params)
    print(f"pipeline: finished -> {run_dir}")
    return 0


def _json_or_text(value: str) -> Any:
    """A pipeline argument: JSON when it parses (lists, dicts, numbers), else the string itself."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value
