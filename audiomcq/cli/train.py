"""``audiomcq train``: SFT, GRPO or a whole paradigm, on one process, under a launcher, or as a TrainJob."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from audiomcq.cli.args import add_dtype_flag

log = logging.getLogger("audiomcq")


def add_train_commands(sub: Any) -> None:
    """Register ``train``."""
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
