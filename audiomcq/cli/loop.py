"""CLI commands of the post-training loop: synth, train, eval, select, serve, query, pipeline, demo."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from audiomcq.errors import UsageError

log = logging.getLogger("audiomcq")


def add_loop_commands(sub: Any) -> None:
    """Register the loop's commands: synth, export-vllm, train, select, serve, query, pipeline and demo."""
    p = sub.add_parser("synth", help="generate the synthetic audio MCQ corpus (WAVs + AudioMCQ JSONL + ground truth)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--n", type=int, default=2000, help="training items")
    p.add_argument("--eval-n", type=int, help="held-out items (default n/10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--text-share", type=float, default=0.3, help="share answerable from text alone by construction")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("export-vllm", help="write a trained model in the layout vLLM loads (Omni thinker -> full)")
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_export_vllm)

    from audiomcq.cli.args import add_dtype_flag

    p = sub.add_parser("train", help="post-train a model: sft, grpo, or run (a whole paradigm: allocate, SFT, GRPO)")
    p.add_argument("method", choices=["sft", "grpo", "run"], help="run: --data is the ACF-labelled pool")
    p.add_argument("--model", required=True, help="starting model directory or s3:// prefix")
    p.add_argument("--data", required=True, help="records (a file or s3:// object)")
    p.add_argument("--audio-root", required=True, help="audio directory or s3:// prefix")
    p.add_argument("--out", required=True, help="run directory or s3://bucket/prefix (checkpoints mirrored there)")
    p.add_argument("--recipe", default="demo", help="recipe name or YAML file (its sft/grpo section is used)")
    p.add_argument("--variant", help="a named variant of the recipe (e.g. paper)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--selection", help="run: held-out records (file or s3://) for the checkpoint-selection set")
    add_dtype_flag(p)
    scale = p.add_argument_group("scale-out (relaunches under the launcher; DeepSpeed comes from the recipe)")
    scale.add_argument("--nproc-per-node", type=int, default=1, help="processes (GPUs) per node")
    scale.add_argument("--nnodes", type=int, default=1)
    scale.add_argument("--node-rank", type=int, default=0)
    scale.add_argument("--master-addr", default="127.0.0.1")
    scale.add_argument("--master-port", type=int, default=29500)
    scale.add_argument("--launcher", choices=["torchrun", "accelerate"], default="torchrun")
    scale.add_argument(
        "--emit-trainjob",
        type=Path,
        metavar="FILE",
        help="write a Kubeflow TrainJob running this command on --nnodes nodes instead of running",
    )
    scale.add_argument("--image", default="audiomcq-train:dev", help="--emit-trainjob: the train image")
    scale.add_argument("--namespace", default="audiomcq", help="--emit-trainjob: namespace")
    p.set_defaults(func=cmd_train)

    from audiomcq.cli.args import add_fresh_flag

    p = sub.add_parser("select", help="pick the best checkpoint: of a run (--run) or from evaluation outputs")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", help="a post-training run (dir or s3://): evaluate every checkpoint, pick one")
    what.add_argument("--evals", nargs="+", help="directories holding metrics.json (the demo's evaluations)")
    p.add_argument("--data", type=Path, help="--run: selection set (default <run>/data/selection.jsonl)")
    p.add_argument("--audio-root", help="--run: the selection set's audio (a path or s3:// prefix)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--out", required=True, type=Path)
    add_fresh_flag(p)
    p.set_defaults(func=cmd_select)

    from audiomcq.serve import add_arguments as add_serve_arguments

    p = sub.add_parser("serve", help="serve a checkpoint with KServe (V1, V2 and OpenAI-compatible chat routes)")
    p.add_argument("--model-dir", "--model", dest="model_dir", required=True, help="model directory or s3:// prefix")
    p.add_argument("--name", default="audiomcq")
    p.add_argument("--http-port", type=int, default=8080)
    add_serve_arguments(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("query", help="ask a served model one audio question")
    p.add_argument("--url", default="http://127.0.0.1:8080")
    p.add_argument("--name", default="audiomcq")
    p.add_argument("--audio", required=True, type=Path)
    p.add_argument("--question", required=True)
    p.add_argument("--choices", required=True, nargs="+")
    p.set_defaults(func=cmd_query)

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

    p = sub.add_parser("demo", help="run the whole loop locally on the embedded default and query the winner")
    p.add_argument("--out", type=Path, default=Path("out/demo"))
    p.add_argument("--recipe", default="demo")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--verbose", action="store_true", help="stream the pipeline tasks' logs instead of one line each")
    p.set_defaults(func=cmd_demo)


def cmd_synth(args: argparse.Namespace) -> int:
    """Generate a corpus."""
    from audiomcq.synth import generate

    s = generate(args.out, args.n, seed=args.seed, eval_n=args.eval_n, text_share=args.text_share)
    splits = ", ".join(f"{k} {v['count']} ({v['text_answerable']} text-answerable)" for k, v in s["splits"].items())
    print(f"synth: {splits}; speech {'on' if s['speech'] else 'off (espeak-ng missing)'} -> {args.out}")
    return 0


def cmd_export_vllm(args: argparse.Namespace) -> int:
    """Export for vLLM."""
    from audiomcq.models.export import export_for_vllm

    print(f"exported -> {export_for_vllm(args.model, args.out)}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """SFT or GRPO with the recipe's section (relaunched under torchrun/accelerate for more than one process)."""
    from audiomcq.config import load_recipe
    from audiomcq.train import launch

    geometry = launch.Launch(
        args.nproc_per_node, args.nnodes, args.node_rank, args.master_addr, args.master_port, args.launcher
    )
    if args.emit_trainjob:
        return _emit_trainjob(args)
    if not launch.inside_launch():
        _localize_inputs(args)
    if geometry.distributed and not launch.inside_launch():
        return launch.relaunch(geometry, args.argv)
    if args.method == "run":
        from audiomcq.train.paradigm import post_train

        r = post_train(
            args.model,
            args.data,
            args.audio_root,
            args.out,
            args.recipe,
            args.overrides,
            args.variant,
            selection=args.selection,
            dtype=args.dtype,
        )
        if not launch.is_main():
            return 0
        print(
            f"{r['paradigm']}: sft {r['allocation']['sft']['count']} / grpo {r['allocation']['rl']['count']} "
            f"records -> {args.out}"
        )
        return 0
    cfg = {**load_recipe(args.recipe, args.overrides, args.variant)[args.method], "dtype": args.dtype}
    if cfg.pop("init", None) not in (None, "sft@final"):
        log.info("grpo.init chooses a paradigm's SFT checkpoint in `train run`; `train grpo` starts from --model")
    if args.method == "sft":
        from audiomcq.train.sft import train_sft

        r = train_sft(args.model, args.data, args.audio_root, args.out, **cfg)
        values, what = r["losses"], "loss"
    else:
        from audiomcq.train.grpo import train_grpo

        r = train_grpo(args.model, args.data, args.audio_root, args.out, **cfg)
        values, what = r["reward"], "mean reward"
    if launch.is_main():
        trend = f", {what} {values[0]:.3f} -> {values[-1]:.3f}" if values else ""
        print(f"{args.method}: {r['steps']} steps{trend} -> {r['final']}")
        if r["resumed_from"]:
            print(f"  resumed from {r['resumed_from']}")
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    """Select the best checkpoint."""
    if args.run:
        from audiomcq.evaluation.select import select_run

        if args.audio_root is None:
            raise UsageError("--run needs --audio-root (the selection set's audio)")
        r = select_run(
            args.run, args.audio_root, args.out, args.data, max_new_tokens=args.max_new_tokens, fresh=args.fresh
        )
        print(f"select: {r['why']} -> {r['selected']['path']}")
        return 0
    from audiomcq.stages.demo import select_stage

    s = select_stage([str(e) for e in args.evals], str(args.out))
    print(f"select: {s['why']} -> {s['model']}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Block serving a model."""
    from audiomcq.serve import ServeConfig, serve

    serve(args.model_dir, args.name, args.http_port, ServeConfig.from_args(args))
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    """POST one question to a served model and print the answer."""
    import urllib.request

    from audiomcq.serve import request_body

    body = json.dumps(request_body(args.audio.read_bytes(), args.question, args.choices)).encode()
    url = f"{args.url.rstrip('/')}/v1/models/{args.name}:predict"
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        prediction = json.load(resp)["predictions"][0]
    print(f"answer: {prediction['answer']}")
    return 0


def cmd_pipeline(args: argparse.Namespace) -> int:
    """Compile or run locally."""
    if args.images and args.action != "run":
        from components.images import load_build_output

        for name, ref in load_build_output(args.images).items():
            print(f"image {name}: {ref}")
    from pipelines.run import compile_all, run_local

    if args.action == "compile":
        for path in compile_all(args.out, manifests=args.manifests):
            print(f"compiled {path}")
        return 0
    from audiomcq.cli.args import pairs

    name = args.pipeline or args.name
    params = {k: _json_or_text(v) for k, v in pairs(args.param, "--param", "KEY=JSON").items()}
    if args.action == "submit":
        from pipelines.run import submit

        run_id = submit(name, params, args.experiment, args.run_name, service_account=args.service_account)
        print(f"submitted: run {run_id}")
        return 0
    if not args.local:
        raise UsageError("`pipeline run` is local only (--local); use `pipeline submit` for a KFP cluster")
    run_dir = run_local(args.out, args.recipe, args.overrides or None, pipeline=name, **params)
    print(f"pipeline: finished -> {run_dir}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The embedded-default demo."""
    from audiomcq.cli.demo import run_demo
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


def _json_or_text(value: str) -> Any:
    """A pipeline argument: JSON when it parses (lists, dicts, numbers), else the string itself."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _localize_inputs(args: argparse.Namespace) -> None:
    """Fetch ``s3://`` inputs once per node, before any relaunch, and point the command (and the relaunched one)
    at the local copies: the ranks then share one copy instead of racing to download it."""
    from audiomcq.infra import storage

    def file(uri: str) -> Path:
        return storage.fetch(uri, storage.cache_dir(uri))

    swaps = {}
    for attr, local in (
        ("model", storage.local_model),
        ("data", file),
        ("selection", file),
        ("audio_root", storage.local_tree),
    ):
        value = getattr(args, attr, None)
        if value and storage.is_s3(value):
            swaps[value] = str(local(value))
            setattr(args, attr, swaps[value])
    flag_value = [t.split("=", 1) for t in args.argv]
    args.argv = [
        f"{kv[0]}={swaps.get(kv[1], kv[1])}" if len(kv) == 2 and kv[0].startswith("--") else swaps.get(t, t)
        for t, kv in zip(args.argv, flag_value, strict=True)
    ]


LAUNCH_FLAGS = (
    "--nproc-per-node",
    "--nnodes",
    "--node-rank",
    "--master-addr",
    "--master-port",
    "--launcher",
    "--emit-trainjob",
    "--image",
    "--namespace",
)


def _emit_trainjob(args: argparse.Namespace) -> int:
    """Write the TrainJob for this ``train`` command (its own arguments, minus the launch flags)."""
    import yaml

    from audiomcq.infra.k8s.trainjob import Cluster, render

    argv, kept, skip = args.argv[args.argv.index("train") + 1 :], [], False
    for token in argv:
        if skip:
            skip = False
        elif token.split("=", 1)[0] in LAUNCH_FLAGS:
            skip = "=" not in token
        else:
            kept.append(token)
    name = f"audiomcq-{args.method}-{Path(str(args.out)).name}".lower().replace("_", "-")[:63].rstrip("-")
    cluster = Cluster(namespace=args.namespace, image=args.image, nodes=args.nnodes, gpus_per_node=args.nproc_per_node)
    args.emit_trainjob.write_text(yaml.safe_dump(render(name, kept, cluster), sort_keys=False))
    print(f"TrainJob {name}: {args.nnodes} node(s) x {args.nproc_per_node} GPU(s) -> {args.emit_trainjob}")
    return 0
