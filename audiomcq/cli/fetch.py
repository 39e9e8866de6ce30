"""CLI of the fetchers: ``audiomcq fetch model|dataset|benchmark|sources``; results go to stdout, one line each."""

from __future__ import annotations

import argparse
import sys
from typing import Any

HUB_HELP = "hub endpoint URL (default: $HF_ENDPOINT, else https://huggingface.co)"
TOKEN_HELP = "NAME of the environment variable holding the hub token (its value is never printed)"
SITE_HELP = "download site override NAME=URL (zenodo, openslr, github, mirg), e.g. a mirror"


def add_fetch_commands(sub: Any) -> None:
    """Register ``fetch`` and its subcommands on the top-level parser."""
    p = sub.add_parser(
        "fetch",
        help="bring models, the AudioMCQ dataset and benchmarks into the store (resumable, checksum-verified)",
        description="Download from the official publishers into a directory or s3:// prefix. A rerun resumes: "
        "files already there with the published checksum are kept; the _COMPLETE marker is written last.",
    )
    kinds = p.add_subparsers(title="kinds", metavar="<kind>")

    m = kinds.add_parser("model", help="a hub model at a pinned revision: weights, configs, tokenizer, templates")
    m.add_argument("repo", metavar="REPO_ID[@REVISION]", help="e.g. Qwen/Qwen2.5-Omni-7B@main")
    m.add_argument("--include", action="append", default=[], metavar="PATTERN", help="extra files to fetch")
    _common(m)
    m.set_defaults(func=cmd_model)

    d = kinds.add_parser("dataset", help="the AudioMCQ release (validated) and its source datasets' audio")
    d.add_argument("name", choices=["audiomcq"])
    d.add_argument("--revision", help="dataset repo revision (default: main, resolved to its commit)")
    d.add_argument("--sources", default="auto", help="whose audio: auto (all automatable), none, or Clotho,TACOS,…")
    d.add_argument("--site", action="append", default=[], metavar="NAME=URL", help=SITE_HELP)
    _common(d)
    d.set_defaults(func=cmd_dataset)

    b = kinds.add_parser("benchmark", help="a benchmark's metadata and audio, laid out for `audiomcq eval`")
    b.add_argument("name", choices=["mmau-test-mini", "mmau-test", "mmar", "mmsu", "dcase2025"])
    b.add_argument("--split", default="dev", help="dcase2025: the question split (default dev)")
    b.add_argument("--metadata-revision", help="GitHub metadata at this commit instead of the pinned one")
    b.add_argument("--site", action="append", default=[], metavar="NAME=URL", help=SITE_HELP)
    _common(b)
    b.set_defaults(func=cmd_benchmark)

    s = kinds.add_parser("sources", help="list AudioMCQ's source datasets: where their audio comes from")
    s.set_defaults(func=cmd_sources)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--to", required=True, help="destination directory or s3://bucket/prefix")
    p.add_argument("--token-env", default="HF_TOKEN", help=TOKEN_HELP)
    p.add_argument("--endpoint", help=HUB_HELP)


def _sites(values: list[str]) -> dict[str, str]:
    from audiomcq.cli.args import pairs

    return pairs(values, "--site", "NAME=URL")


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def cmd_model(args: argparse.Namespace) -> int:
    from audiomcq.fetch import fetch_model, split_ref

    repo_id, revision = split_ref(args.repo)
    manifest = fetch_model(
        repo_id,
        args.to,
        revision=revision,
        token_env=args.token_env,
        endpoint=args.endpoint,
        include=tuple(args.include),
    )
    fetched = sum(f["fetched"] for f in manifest["files"])
    licence = manifest["license"].get("license_name") or manifest["license"].get("license") or "not stated"
    _out(
        f"{repo_id}@{manifest['commit']}: {len(manifest['files'])} files, {manifest['total_bytes']} bytes "
        f"({fetched} downloaded), licence {licence} -> {args.to}"
    )
    return 0


def cmd_dataset(args: argparse.Namespace) -> int:
    from audiomcq.fetch import fetch_dataset

    manifest = fetch_dataset(
        args.name,
        args.to,
        revision=args.revision,
        token_env=args.token_env,
        endpoint=args.endpoint,
        sources=args.sources,
        endpoints=_sites(args.site),
    )
    for v in manifest["validation"]:
        _out(f"{v['source']}: {v['read']} records, {v['kept']} valid, {v['quarantined']} quarantined")
    report = manifest["audio_report"]
    for source, row in report["by_source"].items():
        hint = f"; provide {row['provide']}" if row.get("missing") and row.get("provide") else ""
        _out(f"{source}: audio {row['present']}/{row['records']} present{hint}")
    _out(
        f"{manifest['repo']}@{manifest['commit']}: {report['records']} valid records, audio for {report['present']}"
        f" -> {args.to}"
    )
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from audiomcq.fetch import fetch_benchmark

    manifest = fetch_benchmark(
        args.name,
        args.to,
        token_env=args.token_env,
        endpoint=args.endpoint,
        endpoints=_sites(args.site),
        metadata_revision=args.metadata_revision,
        split=args.split,
    )
    lay = manifest["layout"]
    _out(
        f"{args.name}: {lay['items']} items, audio {lay['audio_present']} present, {lay['audio_missing']} missing "
        f"-> {args.to} (eval: --tasks {args.name} --audio-root {args.to})"
    )
    for example in lay["missing_examples"]:
        _out(f"  missing: {example}")
    return 0


def cmd_sources(args: argparse.Namespace) -> int:
    from audiomcq.fetch import SOURCES

    for source in SOURCES.values():
        how = "fetched automatically" if source.automatic else f"provide {source.provide}"
        _out(f"{source.name}: {source.published}; {how}")
    return 0
