"""The post-training loop's last stage: the promotion gate on the checkpoint the loop selected.

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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audiomcq.errors import AudioMCQError
from audiomcq.jsonio import load_json
from audiomcq.timing import timed

if TYPE_CHECKING:
    from audiomcq.promote.render import Serving
    from audiomcq.promote.smoke import SmokeSettings

log = logging.getLogger(__name__)
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
    from audiomcq import storage
    from audiomcq.evaluation.select import SELECTION_TASK
    from audiomcq.promote.decision import Criteria, write_decision
    from audiomcq.promote.gate import GateConfig, RolledBack, run_gate
    from audiomcq.promote.render import to_yaml
    from audiomcq.views import decision_markdown

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
