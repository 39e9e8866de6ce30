"""CLI of the promotion gate: ``audiomcq promote``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_promote_commands(sub: Any) -> None:
    """Register ``promote`` on the top-level parser."""
    from audiomcq.promote.smoke import SmokeSettings

    p = sub.add_parser(
        "promote",
        help="promote an evaluated checkpoint to KServe: decide, canary, smoke query, promote or roll back",
        description=(
            "Compare the candidate's `audiomcq eval` metrics with production's (--baseline, else the live "
            "InferenceService's lineage annotation); if it wins, roll it out as a canary and ask the new revision "
            "held-out questions with known answers, with their audio and in silence; if it answers about as well "
            "as its evaluation said and better with the audio than without, give it 100% of the traffic and "
            "record its lineage, else restore the previous model and exit 1. A rejected candidate changes "
            "nothing (exit 0)."
        ),
    )
    p.add_argument("--model", required=True, help="the candidate checkpoint's storage URI (s3://…)")
    p.add_argument("--metrics", required=True, nargs="+", help="its metrics.json file(s) (local or s3://)")
    p.add_argument("--baseline", nargs="+", default=[], help="production's metrics.json (default: from the cluster)")
    p.add_argument("--run", help="the post-training run of the model (default: <run>/<stage>/<checkpoint>)")
    d = p.add_argument_group("decision")
    d.add_argument("--benchmark", action="append", default=[], help="decisive task (repeatable; default: all)")
    d.add_argument("--metric", default="accuracy", help="accuracy | strict | ac_strong | audio_contribution")
    d.add_argument("--margin", type=float, default=0.0, help="points the candidate must gain (default 0: any gain)")
    d.add_argument("--ac-strong-tolerance", type=float, default=0.0, help="points an AC-strong subset may drop")
    d.add_argument("--floor", action="append", default=[], metavar="TASK[:METRIC]=VALUE", help="absolute minimum")
    s = p.add_argument_group("serving")
    s.add_argument("--name", default="audiomcq", help="InferenceService name (also the served model's name)")
    s.add_argument("--namespace", help="default: AUDIOMCQ_KUBE_NAMESPACE, the pod's namespace, else default")
    s.add_argument("--service-account", default="audiomcq-s3", help="its Secret holds the S3 credentials")
    s.add_argument("--runtime", default="audiomcq", help="the ServingRuntime running `audiomcq serve`")
    s.add_argument("--model-format", default="audiomcq")
    s.add_argument("--gpus", type=int, default=0)
    s.add_argument("--cpu", default="4")
    s.add_argument("--memory", default="16Gi")
    s.add_argument("--node-selector", action="append", default=[], metavar="KEY=VALUE")
    s.add_argument("--toleration", action="append", default=[], metavar="KEY[=VALUE]:EFFECT")
    s.add_argument("--min-replicas", type=int, default=1)
    s.add_argument("--max-replicas", type=int, default=1)
    r = p.add_argument_group("rollout")
    r.add_argument("--canary", type=int, default=10, help="traffic share of the new revision while it is tested")
    r.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for each rollout step")
    r.add_argument("--poll", type=float, default=5.0)
    r.add_argument(
        "--smoke-data",
        help="held-out records with audio for the smoke check, of the kind --smoke-task "
        "was evaluated on (default <run>/data/selection.jsonl)",
    )
    r.add_argument("--smoke-audio-root", help="their audio (a folder or s3:// prefix)")
    r.add_argument("--smoke-url", help="send the smoke questions here instead of the revision's URL from the status")
    r.add_argument(
        "--smoke-task",
        help="the evaluated task whose accuracy the smoke check expects (default: the "
        "only scored task, else the only decisive benchmark)",
    )
    r.add_argument("--smoke-size", type=int, default=SmokeSettings.size, help="questions the smoke check scores")
    r.add_argument(
        "--smoke-min-size",
        type=int,
        default=SmokeSettings.min_size,
        help="refuse to roll out when the smoke data has fewer questions with audio",
    )
    r.add_argument(
        "--smoke-min-listening",
        type=int,
        default=SmokeSettings.min_listening,
        help="audio-dependent questions (audio-contribution: strong) asked in silence too, at least",
    )
    r.add_argument(
        "--smoke-tolerance",
        type=float,
        default=SmokeSettings.tolerance,
        help="points the smoke accuracy may fall below the evaluated one (default: the binomial bound "
        "at --smoke-confidence)",
    )
    r.add_argument(
        "--smoke-confidence",
        type=float,
        default=SmokeSettings.confidence,
        help="chance that a model as good as its evaluation passes the derived pass mark",
    )
    r.add_argument("--lineage-uri", help="where the lineage document goes (default <model>/lineage.json)")
    p.add_argument("--out", type=Path, help="write decision.json and inferenceservice.yaml into this folder")
    p.add_argument("--validate-against", help="a CRD file: refuse an InferenceService its schema rejects")
    p.add_argument("--dry-run", action="store_true", help="print the decision and the object; touch no cluster")
    p.set_defaults(func=cmd_promote)


def _floors(values: list[str]) -> dict[str, float]:
    from audiomcq.errors import AudioMCQError

    floors = {}
    for value in values:
        key, sep, number = value.rpartition("=")
        try:
            floors[key] = float(number)
        except ValueError:
            key = ""
        if not sep or not key:
            raise AudioMCQError(f"--floor {value!r}: expected TASK[:METRIC]=NUMBER")
    return floors


def cmd_promote(args: argparse.Namespace) -> int:
    """Run the gate and print what it decided and did."""
    from audiomcq.cli.args import pairs
    from audiomcq.promote.decision import Criteria, write_decision
    from audiomcq.promote.gate import GateConfig, RolledBack, run_gate
    from audiomcq.promote.render import Serving, parse_toleration, to_yaml
    from audiomcq.promote.smoke import SmokeSettings

    namespace = args.namespace
    if namespace is None:
        from audiomcq.infra.k8s import default_namespace

        namespace = default_namespace()
    selector = pairs(args.node_selector, "--node-selector", "KEY=VALUE", empty_ok=True)
    serving = Serving(
        name=args.name,
        namespace=namespace,
        service_account=args.service_account,
        runtime=args.runtime,
        model_format=args.model_format,
        gpus=args.gpus,
        cpu=args.cpu,
        memory=args.memory,
        node_selector=selector,
        tolerations=tuple(parse_toleration(t) for t in args.toleration),
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
    )
    criteria = Criteria(
        benchmarks=tuple(args.benchmark),
        metric=args.metric,
        margin=args.margin,
        ac_strong_tolerance=args.ac_strong_tolerance,
        floors=_floors(args.floor),
    )
    smoke = SmokeSettings(
        size=args.smoke_size,
        min_size=args.smoke_min_size,
        min_listening=args.smoke_min_listening,
        tolerance=args.smoke_tolerance,
        confidence=args.smoke_confidence,
        task=args.smoke_task,
    )
    cfg = GateConfig(
        serving=serving,
        canary=args.canary,
        timeout=args.timeout,
        poll=args.poll,
        smoke_url=args.smoke_url,
        smoke_data=args.smoke_data,
        smoke_audio_root=args.smoke_audio_root,
        smoke=smoke,
        lineage_uri=args.lineage_uri,
        validate_against=args.validate_against,
        dry_run=args.dry_run,
    )
    code = 0
    try:
        outcome = run_gate(args.model, args.metrics, criteria, cfg, args.baseline, args.run)
    except RolledBack as err:
        outcome, code = err.outcome, 1
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        write_decision(outcome.decision, args.out / "decision.json")
        if outcome.objects:
            (args.out / "inferenceservice.yaml").write_text(to_yaml(outcome.objects))
    if args.dry_run:
        print(to_yaml(outcome.objects), end="---\n")
        print(json.dumps(outcome.decision.to_dict(), indent=2))
    verdict = "promote" if outcome.decision.promote else "keep production"
    print(f"decision: {verdict}")
    for reason in outcome.decision.reasons:
        print(f"  {reason}")
    print(f"{outcome.action}: {outcome.message}")
    if outcome.lineage_uri and outcome.action == "promoted":
        print(f"lineage: {outcome.lineage_uri}")
    return code
