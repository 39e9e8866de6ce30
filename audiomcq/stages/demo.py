"""Step bodies of the demo pipeline (``audiomcq-demo``: the whole loop on tiny models), path-in/path-out, one call per
component.

Layout of the artifacts (each a directory):
- corpus:   ``pretrain/`` (pool for base and filter models) and ``loop/`` (``train.jsonl``, ``eval.jsonl``, audio)
- model:    an HF model directory (model + processor)
- labels:   ``train/`` and ``eval/`` ACF outputs (``labelled.jsonl``, ``weak.jsonl``, ``strong.jsonl``, ``stats.json``)
- run:      one paradigm: ``data/`` (allocation), ``sft/`` and ``grpo/`` (checkpoints, ``final/``), ``summary.json``
- metrics:  one ``audiomcq eval`` output per model (``<name>/``) and ``metrics.json`` mapping each name to its summary

The last stage is the promotion gate on the checkpoint the loop selected (``promote_stage``).

The gate reads the selected checkpoint's ``audiomcq eval`` output as the evaluate step wrote it
(``<results>/<name>/metrics.json``: the held-out split scored as the ``synthetic`` task). The model served is its
``s3://`` copy when the run published to S3 (a cluster serves from there), else its local directory, which only a
dry run accepts. ``settings`` (a pipeline argument, keys in ``SETTINGS``)
says where to serve and how strict to be; without ``apply: true`` the gate runs dry: it decides, renders the
InferenceService and writes both, touching no cluster, which is what the local demo does. Applied, the new
revision's smoke check asks questions of the held-out split the checkpoint was evaluated on (its ACF labels mark
the audio-dependent items) and expects the held-out accuracy; ``smoke_size``, ``smoke_min_size``,
``smoke_min_listening``, ``smoke_tolerance`` and ``smoke_confidence`` tune it (``audiomcq.promote.smoke``).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audiomcq.config import resolved_recipe
from audiomcq.errors import AudioMCQError
from audiomcq.infra.storage import publish_under, run_prefix
from audiomcq.jsonio import load_json, write_json
from audiomcq.timing import timed

if TYPE_CHECKING:
    from audiomcq.promote.render import Serving
    from audiomcq.promote.smoke import SmokeSettings

log = logging.getLogger(__name__)
ONE_CHUNK = 1_000_000  # evaluation chunk size larger than any held-out split
SMOKE = ("size", "min_size", "min_listening", "tolerance", "confidence")  # as smoke_<key> settings
SETTINGS = {
    "apply",
    "name",
    "namespace",
    "service_account",
    "runtime",
    "canary",
    "margin",
    "ac_strong_tolerance",
    "floor",
    "gpus",
    "cpu",
    "memory",
    "node_selector",
    "tolerations",
    "timeout",
    *(f"smoke_{key}" for key in SMOKE),
}


@timed
def synth_stage(
    out_dir: str,
    recipe: str = "demo",
    overrides: list[str] | tuple[str, ...] = (),
    publish: str = "",
    run_id: str = "",
) -> dict[str, Any]:
    """Generate the pre-training pool and the loop's pool with its held-out split; also run dataset generation with
    the template backend over the loop pool's captions (``sdg/``: samples, rejects, summary), so the embedded default
    exercises that stage too (its samples are reported, not trained on: the demo's numbers stay comparable)."""
    from audiomcq.sdg.run import generate_dataset
    from audiomcq.synth import generate

    out = Path(out_dir)
    cfg = resolved_recipe(recipe, overrides, out)["synth"]
    share = cfg["text_share"]
    pre = generate(out / "pretrain", cfg["pretrain_n"], seed=cfg["seed"] + 1000, eval_n=0, text_share=share)
    loop = generate(out / "loop", cfg["n"], seed=cfg["seed"], eval_n=cfg["eval_n"], text_share=share)
    sdg = generate_dataset({"synthetic": out / "loop" / "train.jsonl"}, out / "sdg")
    return {
        "pretrain": pre,
        "loop": loop,
        "sdg": {"samples": sdg["samples"], "rejects": sdg["rejects"]},
        "uri": publish_under(out, run_prefix(publish, run_id), "corpus"),
    }


@timed
def pretrain_stage(
    corpus_dir: str,
    out_dir: str,
    role: str,
    recipe: str = "demo",
    overrides: list[str] | tuple[str, ...] = (),
    publish: str = "",
    run_id: str = "",
) -> dict[str, Any]:
    """Build a tiny model (``role``: ``base`` or a filter index) and pre-train it on the corpus's pre-training pool."""
    from audiomcq.models.tiny import TinySpec, build_tiny, save_tiny, tokenizer_texts
    from audiomcq.train.sft import train_sft

    out, corpus = Path(out_dir), Path(corpus_dir)
    cfg = resolved_recipe(recipe, overrides, out / "work")
    spec = cfg["base"] if role == "base" else cfg["filters"][int(role)]
    texts = tokenizer_texts(
        [corpus / "pretrain" / "train.jsonl", corpus / "loop" / "train.jsonl", corpus / "loop" / "eval.jsonl"]
    )
    size = TinySpec(hidden=spec["hidden"], layers=spec.get("layers", 2), audio_d=spec["audio_d"])
    model, processor = build_tiny("qwen2_5_omni", texts, size, seed=spec["seed"])
    init = save_tiny(model, processor, out / "work" / "init")
    result = train_sft(
        init,
        corpus / "pretrain" / "train.jsonl",
        corpus / "pretrain",
        out / "work" / "sft",
        final_dir=out,
        steps=spec["steps"],
        lr=spec["lr"],
        batch_size=spec.get("batch_size", 16),
        seed=spec["seed"],
    )
    shutil.rmtree(out / "work" / "init")
    write_json(out / "work" / "pretrain.json", {"role": role, **result})
    return {**result, "uri": publish_under(out, run_prefix(publish, run_id), "models", role, exclude=("work",))}


@timed
def filter_stage(
    corpus_dir: str,
    filter_dirs: list[str],
    out_dir: str,
    recipe: str = "demo",
    overrides: list[str] | tuple[str, ...] = (),
    publish: str = "",
    run_id: str = "",
) -> dict[str, Any]:
    """Label the loop's training pool and its held-out split weak/strong with the filter models' probes."""
    from audiomcq.acf import FilterConfig, run_filter

    out, corpus = Path(out_dir), Path(corpus_dir)
    config = FilterConfig.from_dict(resolved_recipe(recipe, overrides, out)["filter"])
    stats = {
        split: run_filter(corpus / "loop" / f"{split}.jsonl", filter_dirs, corpus / "loop", out / split, config)
        for split in ("train", "eval")
    }
    return {**stats, "uri": publish_under(out, run_prefix(publish, run_id), "labels")}


@timed
def post_train_stage(
    base_dir: str,
    corpus_dir: str,
    labels_dir: str,
    paradigm: str,
    out_dir: str,
    recipe: str = "demo",
    overrides: list[str] | tuple[str, ...] = (),
    publish: str = "",
    run_id: str = "",
) -> dict[str, Any]:
    """The demo layout's post-training: the corpus's loop audio and the filter's training labels. With an
    ``s3://`` ``publish`` prefix the run lives in S3 (``<publish>/<run_id>/runs/<paradigm>``: every checkpoint
    uploaded as it completes, so a preempted and retried task resumes from the last one) and is then copied into
    ``out_dir``."""
    from audiomcq.infra import storage
    from audiomcq.stages.train import train_in_pod

    labelled = Path(labels_dir) / "train" / "labelled.jsonl"
    prefix = storage.run_prefix(publish, run_id)
    remote = f"{prefix}/runs/{paradigm}" if prefix else ""
    # in-process on one device, or under torchrun across the pod's GPUs (the recipe's launch.gpus_per_node)
    train_in_pod(
        base_dir,
        str(labelled),
        str(Path(corpus_dir) / "loop"),
        out_dir,
        recipe,
        list(overrides),
        paradigm,
        publish=remote,
    )
    if remote:  # the artifact gets the run without its checkpoints (they stay in S3; evaluation reads the finals)
        storage.fetch_dir(remote, out_dir, skip="checkpoint-*")
    return {**load_json(Path(out_dir) / "summary.json"), "uri": remote}


def run_models(run_dir: str, prefix: str = "") -> dict[str, str]:
    """The evaluable checkpoints of a post-training run, named ``<prefix><stage>``."""
    run = Path(run_dir)
    finals = {stage: run / stage / "final" for stage in ("sft", "grpo")}
    return {f"{prefix}{stage}": str(p) for stage, p in finals.items() if (p / "config.json").is_file()}


def evaluate_stage(
    models: dict[str, str],
    corpus_dir: str,
    labels_dir: str,
    out_dir: str,
    recipe: str = "demo",
    overrides: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Evaluate named models on the labelled held-out split as the harness's ``synthetic`` task, with audio and in
    silence: ``<out>/<name>/`` is each model's ``audiomcq eval`` output, and ``<out>/metrics.json`` maps each name to
    its summary with the checkpoint's ``stage`` and ``step`` (what selection reads)."""
    from audiomcq.evaluation.harness import EvalConfig, run_eval
    from audiomcq.evaluation.select import SELECTION_TASK, checkpoint_of

    out = Path(out_dir)
    cfg = resolved_recipe(recipe, overrides, out)["eval"]
    data = {SELECTION_TASK: Path(labels_dir) / "eval" / "labelled.jsonl"}
    audio_root: dict[str, str | Path | None] = {SELECTION_TASK: Path(corpus_dir) / "loop"}
    # the whole split in one chunk, so one engine call batches it (each silence length shared across the split)
    config = EvalConfig(batch_size=cfg["batch_size"], max_new_tokens=cfg["max_new_tokens"], chunk_size=ONE_CHUNK)
    results = {
        name: {**run_eval(path, data, audio_root, out / name, config), **checkpoint_of(name, path)}
        for name, path in models.items()
    }
    write_json(out / "metrics.json", results)
    return results


@timed
def select_stage(metrics_dirs: list[str], out_dir: str) -> dict[str, Any]:
    """Pick the best evaluated model by the selection rule (``audiomcq.evaluation.select.RULE``); writes
    ``selection.json``."""
    from audiomcq.evaluation.select import select_evaluated

    selection = select_evaluated(metrics_dirs)
    write_json(Path(out_dir) / "selection.json", selection)
    return selection


@timed
def evaluate_named(
    name: str,
    models_path: str,
    corpus_dir: str,
    labels_dir: str,
    out_dir: str,
    recipe: str = "demo",
    overrides: list[str] | tuple[str, ...] = (),
) -> dict[str, float]:
    """Evaluate the base model (``name`` = ``base``) or every checkpoint of a run (``name`` = its paradigm);
    returns the headline accuracies as flat metrics for a KFP UI."""
    models = {"base": models_path} if name == "base" else run_models(models_path, f"{name}/")
    from audiomcq.evaluation.select import SELECTION_TASK

    results = evaluate_stage(models, corpus_dir, labels_dir, out_dir, recipe, overrides)
    flat = {}
    for model, summary in results.items():
        for mode, scored in summary["tasks"][SELECTION_TASK]["modes"].items():
            for group in ("total", "ac_strong"):
                if group in scored:
                    flat[f"{model.replace('/', '-')}-{mode}-{group}"] = scored[group]["accuracy"]
    return flat


def _published_model(name: str, publish: str) -> tuple[str, str | None]:
    """Where the S3 copy of model ``name`` (``base`` or ``<paradigm>/<stage>``) and its run live."""
    prefix = publish.rstrip("/")
    if name == "base":
        return f"{prefix}/models/base", None
    paradigm, _, stage = name.partition("/")
    return f"{prefix}/runs/{paradigm}/{stage}/final", f"{prefix}/runs/{paradigm}"


def _serving(settings: dict[str, Any]) -> Serving:
    """Where and how to serve, from the settings; ``node_selector`` and ``tolerations`` (``KEY[=VALUE]:Effect``)
    let ``gpus > 0`` land on a tainted GPU pool."""
    from audiomcq.promote.render import Serving, parse_toleration

    keys = ("name", "namespace", "service_account", "runtime", "gpus", "cpu", "memory")
    selector, tolerations = settings.get("node_selector") or {}, settings.get("tolerations") or []
    if not isinstance(selector, dict) or not all(isinstance(v, str) for v in selector.values()):
        raise AudioMCQError(f"promotion setting node_selector {selector!r}: expected a mapping of label to string")
    if not isinstance(tolerations, list) or not all(isinstance(t, str) for t in tolerations):
        raise AudioMCQError(f"promotion setting tolerations {tolerations!r}: expected a list of KEY[=VALUE]:EFFECT")
    return Serving(
        **{k: settings[k] for k in keys if k in settings},
        node_selector=dict(selector),
        tolerations=tuple(parse_toleration(t) for t in tolerations),
    )


def _smoke(settings: dict[str, Any]) -> SmokeSettings:
    """The smoke check's settings (``smoke_<key>``); the rest keep ``SmokeSettings``' defaults."""
    from audiomcq.promote.smoke import SmokeSettings

    given = {key: settings[f"smoke_{key}"] for key in SMOKE if settings.get(f"smoke_{key}") is not None}
    for key in ("size", "min_size", "min_listening"):
        if key in given:
            given[key] = int(given[key])
    for key in ("tolerance", "confidence"):
        if key in given:
            given[key] = float(given[key])
    return SmokeSettings(**given)


@timed
def promote_stage(
    selection_dir: str,
    results_dirs: list[str],
    corpus_dir: str,
    labels_dir: str,
    out_dir: str,
    settings: dict[str, Any],
    publish: str = "",
    markdown_path: str = "",
    run_id: str = "",
) -> dict[str, Any]:
    """Run the gate on the selected checkpoint; writes ``decision.json`` and ``inferenceservice.yaml`` to
    ``out_dir`` and the decision as Markdown. Returns ``{action, promote, model}``; a rollback raises (the step
    fails with its reason, after the files are written)."""
    from audiomcq.evaluation.select import SELECTION_TASK
    from audiomcq.evaluation.views import decision_markdown
    from audiomcq.infra import storage
    from audiomcq.promote.decision import Criteria, write_decision
    from audiomcq.promote.gate import GateConfig, RolledBack, run_gate
    from audiomcq.promote.render import to_yaml

    unknown = set(settings) - SETTINGS
    if unknown:
        raise AudioMCQError(f"unknown promotion setting(s) {sorted(unknown)}; known: {sorted(SETTINGS)}")
    out = Path(out_dir)
    selection = load_json(Path(selection_dir) / "selection.json")
    name = selection["selected"]
    candidate = next((m for d in results_dirs if (m := Path(d) / name / "metrics.json").is_file()), None)
    if candidate is None:
        raise AudioMCQError(f"{selection_dir}: the selected model {name!r} has no evaluation among {results_dirs}")
    prefix = storage.run_prefix(publish, run_id)  # where the pipeline run published its models and runs
    model, run = _published_model(name, prefix) if prefix else (selection["model"], None)
    if settings.get("apply", False) and not storage.is_s3(model):
        raise AudioMCQError(
            f"promotion setting apply: true needs the pipeline's publish=s3://… prefix: without"
            f" it the storageUri is {model!r}, a path in this pod that no cluster can serve"
        )
    serving = _serving(settings)
    floor = settings.get("floor")
    criteria = Criteria(
        margin=float(settings.get("margin", 0.0)),
        ac_strong_tolerance=float(settings.get("ac_strong_tolerance", 0.0)),
        floors={SELECTION_TASK: float(floor)} if floor is not None else {},
    )
    cfg = GateConfig(
        serving=serving,
        canary=int(settings.get("canary", 10)),
        timeout=float(settings.get("timeout", 900.0)),
        smoke_data=str(Path(labels_dir) / "eval" / "labelled.jsonl"),
        smoke_audio_root=str(Path(corpus_dir) / "loop"),
        smoke=_smoke(settings),
        dry_run=not settings.get("apply", False),
    )
    failure = None
    try:
        outcome = run_gate(model, [str(candidate)], criteria, cfg, run_uri=run)
    except RolledBack as err:
        outcome, failure = err.outcome, err
    write_decision(outcome.decision, out / "decision.json")
    (out / "inferenceservice.yaml").write_text(to_yaml(outcome.objects) if outcome.objects else "")
    if markdown_path:
        decision_markdown(name, model, outcome, markdown_path)
    log.info("promotion of %s (%s): %s: %s", name, model, outcome.action, outcome.message)
    if failure is not None:
        raise failure
    return {"action": outcome.action, "promote": outcome.decision.promote, "model": model}
