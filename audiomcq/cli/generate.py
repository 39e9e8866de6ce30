"""CLI of dataset generation: ``audiomcq generate``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from audiomcq.cli.args import add_shard_flag


def add_generate_commands(sub: Any) -> None:
    """Register ``generate`` on the top-level parser."""
    p = sub.add_parser("generate", help="AudioMCQ-style MCQs, CoT and grades from source captions with an LLM")
    p.add_argument(
        "--source",
        action="append",
        required=True,
        metavar="NAME=ROOT",
        help="a source and its root (local or s3://): Clotho, AudioCaps, MusicCaps, LP-MusicCaps, "
        "SpeechCraft, TACOS, CompA-R, or synthetic (our corpus)",
    )
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--llm", choices=["template", "openai", "transformers"], default="template")
    p.add_argument("--model", default="", help="served model name (openai) or model directory (transformers)")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://vllm:8000/v1")
    p.add_argument("--api-key-env", help="name of the environment variable holding the endpoint's key")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--rps", type=float, help="at most this many requests per second")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--retries", type=int, default=4, help="HTTP retries (timeouts, 429, 5xx)")
    p.add_argument("--tries", type=int, default=3, help="answers per step before the item is rejected")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--max-tokens", type=int, default=1024)
    p.add_argument("--chunk-size", type=int, default=64, help="items per resumable part")
    add_shard_flag(p)
    p.add_argument(
        "--benchmark",
        action="append",
        default=[],
        metavar="NAME=METADATA",
        help="decontaminate against this benchmark (mmau, mmar, mmsu, dcase2025)",
    )
    p.add_argument("--cache", help="response cache: a directory or s3:// prefix (default <out>/cache)")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="discard finished parts that another LLM or setting made "
        "(a rerun otherwise refuses them, naming what changed)",
    )
    p.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate and print the summary counts."""
    from audiomcq.cli.args import pairs
    from audiomcq.sdg.llm import LLMSpec
    from audiomcq.sdg.run import GenConfig, generate_dataset

    llm = LLMSpec(
        args.llm,
        args.model,
        args.base_url,
        args.api_key_env,
        args.concurrency,
        args.rps,
        args.timeout,
        args.retries,
        args.temperature,
        args.max_tokens,
    )
    config = GenConfig(args.tries, args.chunk_size, args.shard)
    s = generate_dataset(
        pairs(args.source, "--source"),
        args.out,
        llm,
        config,
        pairs(args.benchmark, "--benchmark"),
        args.cache,
        args.fresh,
    )
    print(f"generate: {s['samples']} samples, {s['rejects']} rejects -> {args.out}")
    for reason, n in s["reject_reasons"].items():
        print(f"  rejected {n}: {reason}")
    return 0
