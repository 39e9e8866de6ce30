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
    p.add_argument("pipeline", nargs="?", help="run/submit: which pipeline (default audiomcq-demo; or --name)")
    p.add_argument("--name", help="run/submit: which pipeline, the same as the positional name")
    p.add_argument("--param", action="append", default=[], metavar="KEY=JSON", help="run/submit: a pipeline argument")
    p.add_argument("--experiment", default="audiomcq", help="submit: KFP experiment")
    p.add_argument("--run-name", help="submit: run name")
    p.add_argument("--service-account", help="submit: the runs' pods' account (default $KFP_SERVICE_ACCOUNT)")
    p.add_argument("--out", type=Path, default=Path("dist"), help="compile: output folder; run: pipeline root")
    p.add_argument("--local", action="store_true", help="run: execute with kfp.local (the only runner here)")
    p.add_argument("--manifests", action="store_true", help="compile: also the Pipeline/PipelineVersion CRs")
    p.add_argument("--images", type=Path, help="compile/submit: pin images from `skaffold build --file-output` JSON")
    p.add_argument("--recipe", help="run/submit: the recipe parameter (audiomcq-demo: default demo)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="run/submit: a recipe override",
    )
    p.set_defaults(func=cmd_pipeline)


def cmd_pipeline(args: argparse.Namespace) -> int:
    """Compile, run locally or submit; a flag the action would not use is refused."""
    unused = {
        "run": {"--images": args.images, "--manifests": args.manifests, "--service-account": args.service_account},
        "submit": {"--local": args.local, "--manifests": args.manifests},
    }.get(args.action, {})
    given = [flag for flag, value in unused.items() if value]
    if given:
        raise UsageError(f"`pipeline {args.action}` takes no {', '.join(given)}")
    if args.images and args.action != "run":
        from audiomcq.components.images import load_build_output

        for name, ref in load_build_output(args.images).items():
            print(f"image {name}: {ref}")
    from audiomcq.pipelines.run import compile_all, run_local

    if args.action == "compile":
        given = [flag for flag, value in _run_only(args).items() if value]
        if given:
            raise UsageError(
                f"`pipeline compile` compiles every pipeline and takes no {', '.join(given)} (run/submit do)"
            )
        for path in compile_all(args.out, manifests=args.manifests):
            print(f"compiled {path}")
        return 0
    name = _pipeline_name(args)
    params = _params(name, args.param, recipe=args.recipe, overrides=args.overrides)
    if args.action == "submit":
        from audiomcq.pipelines.run import submit

        params |= {k: v for k, v in (("recipe", args.recipe), ("overrides", args.overrides)) if v}

        run_id = submit(name, params, args.experiment, args.run_name, service_account=args.service_account)
        print(f"submitted: run {run_id}")
        return 0
    if not args.local:
        raise UsageError("`pipeline run` is local only (--local); use `pipeline submit` for a KFP cluster")
    run_dir = run_local(args.out, args.recipe, args.overrides or None, pipeline=name, **params)
    print(f"pipeline: finished -> {run_dir}")
    return 0


def _run_only(args: argparse.Namespace) -> dict[str, Any]:
    """The options that only run/submit use, by flag."""
    return {
        "a pipeline name": args.pipeline or args.name,
        "--param": args.param,
        "--recipe": args.recipe,
        "--set": args.overrides,
        "--local": args.local,
        "--run-name": args.run_name,
    }


def _pipeline_name(args: argparse.Namespace) -> str:
    """The pipeline run/submit acts on: the positional name or --name (not two different ones), known here."""
    from audiomcq.pipelines.run import PIPELINES

    if args.pipeline and args.name and args.pipeline != args.name:
        raise UsageError(f"two pipelines named: {args.pipeline!r} and --name {args.name!r}")
    name = args.pipeline or args.name or "audiomcq-demo"
    if name not in PIPELINES:
        raise UsageError(f"unknown pipeline {name!r}; the pipelines are {', '.join(PIPELINES)}")
    return name


def _params(name: str, given: list[str], **flags: Any) -> dict[str, Any]:
    """``--param KEY=JSON`` flags as the pipeline's arguments; a key the pipeline does not take is refused, as is
    a flag given for a parameter it lacks (``--recipe``, ``--set``)."""
    from audiomcq.cli.args import pairs
    from audiomcq.pipelines.run import PIPELINES

    params = {k: _json_or_text(v) for k, v in pairs(given, "--param", "KEY=JSON").items()}
    accepted = PIPELINES[name].component_spec.inputs or {}
    unknown = sorted((set(params) | {k for k, v in flags.items() if v}) - set(accepted))
    if unknown:
        raise UsageError(f"{name} takes no parameter(s) {unknown}; it takes {', '.join(sorted(accepted))}")
    return params


def _json_or_text(value: str) -> Any:
    """A pipeline argument: JSON when it parses (lists, dicts, numbers), else the string itself."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value
