"""The promotion gate: decide, roll out as a canary, smoke-test the new revision, then promote or roll back.

1. Decide (``decision.decide``) between the candidate's metrics and production's: ``--baseline`` files, else what
   the live InferenceService's ``audiomcq/lineage`` (or ``audiomcq/metrics``) annotation points at. A live
   InferenceService without such a record is not overwritten blindly: the decision fails and says so. No live one:
   the absolute floors decide. A rejected candidate changes nothing.
2. Roll out: an existing InferenceService gets a merge patch of the predictor (the new ``storageUri``, the serving
   settings, ``canaryTrafficPercent``) and the lineage annotations; a new one is created at 100% directly, since a
   canary needs a serving revision to split traffic with.
3. Wait until the InferenceService has observed the change, is Ready, its latest revision is the ready one and
   carries the expected traffic share.
4. Smoke-check (``smoke``) the new revision on its tag URL (tag routing is on), or ``smoke_url``: held-out
   questions with known answers, with their audio and in silence. It fails when the accuracy with audio falls
   below the binomial pass mark under the accuracy the evaluation reported for this checkpoint, or when silence
   answers as well as audio on the audio-dependent items. The set, the reference accuracy and the minimum sizes
   are checked before anything is applied (no rollout without a test that can fail); the result joins the
   decision's reasons (``Decision.smoke``) and, through it, the lineage document.
5. Pass: remove ``canaryTrafficPercent`` (100% to the new revision), wait again, write the lineage document.
   Fail (or not ready in time, or any error once the new revision is applied): restore the previous predictor and
   annotations exactly (a merge patch computed from the saved object), or delete an InferenceService this gate
   created; then raise ``RolledBack`` with the reason.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from audiomcq.errors import AudioMCQError
from audiomcq.promote import lineage
from audiomcq.promote.decision import Criteria, Decision, decide, load_metrics
from audiomcq.promote.render import Serving, render
from audiomcq.promote.smoke import SmokeResult, SmokeSet, SmokeSettings, pick_set, run_smoke

log = logging.getLogger(__name__)
FAILED_REASONS = {"RevisionFailed"}


@dataclass(frozen=True)
class GateConfig:
    """How the rollout runs."""

    serving: Serving = field(default_factory=Serving)
    canary: int = 10
    timeout: float = 900.0  # per wait (canary ready, promoted, rolled back)
    poll: float = 5.0
    smoke_url: str | None = None  # instead of the revision's URL from the status (tests, port-forwards)
    smoke_data: str | None = None  # held-out records with audio; default <run>/data/selection.jsonl
    smoke_audio_root: str | None = None
    smoke_retries: int = 2
    smoke: SmokeSettings = field(default_factory=SmokeSettings)
    lineage_uri: str | None = None  # default <model>/lineage.json
    validate_against: str | None = None  # a CRD file: refuse to apply an object its schema rejects
    dry_run: bool = False


@dataclass
class Outcome:
    """What the gate did: ``promoted``, ``kept`` (rejected: nothing changed), ``dry-run`` or ``rolled-back``."""

    action: str
    decision: Decision
    objects: list[dict[str, Any]]
    message: str
    lineage_uri: str | None = None
    lineage: dict[str, Any] | None = None


class RolledBack(AudioMCQError):
    """The new revision failed; production was restored. ``outcome`` says what happened."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


def run_gate(
    model_uri: str,
    metrics_uris: Sequence[str],
    criteria: Criteria | None = None,
    cfg: GateConfig | None = None,
    baseline_uris: Sequence[str] = (),
    run_uri: str | None = None,
    kube: Any = None,
) -> Outcome:
    """The whole gate for one candidate (see the module docstring); raises ``RolledBack`` after a rollback."""
    cfg = cfg or GateConfig()
    tasks = load_metrics(metrics_uris)
    name, namespace = cfg.serving.name, cfg.serving.namespace
    live, baseline, sources = None, None, {"candidate": [str(u) for u in metrics_uris]}
    if not cfg.dry_run:
        from audiomcq.infra.k8s import INFERENCE_SERVICE, Kube

        kube = kube or Kube()
        live = kube.get(INFERENCE_SERVICE, name, namespace)
    unknown = None
    if baseline_uris:
        baseline, sources["baseline"] = load_metrics(baseline_uris), [str(u) for u in baseline_uris]
    elif live is not None:
        baseline, source = lineage.baseline_tasks(live)
        sources["baseline"] = [source]
        unknown = None if baseline is not None else source
    decision = decide(tasks, baseline, criteria, sources)
    if unknown:
        decision.promote = False
        decision.reasons.append(f"FAIL: {unknown}; pass --baseline with production's metrics")
    if not decision.promote and not cfg.dry_run:  # nothing to roll out: no lineage to hash
        return Outcome("kept", decision, [], f"kept production: {_failures(decision)}")
    doc = lineage.build(model_uri, metrics_uris, tasks, run_uri)
    doc["decision"] = decision.to_dict()
    lineage_uri = cfg.lineage_uri or lineage.default_uri(model_uri)
    canary = cfg.canary if (live is not None or (cfg.dry_run and baseline is not None)) else None
    obj = render(model_uri, cfg.serving, canary, lineage.annotations(doc, lineage_uri))
    if cfg.validate_against:
        from audiomcq.promote.render import validate

        errors = validate(obj, cfg.validate_against)
        if errors:
            raise AudioMCQError(f"the rendered InferenceService fails {cfg.validate_against}: " + "; ".join(errors))
    if cfg.dry_run:
        verdict = "would promote" if decision.promote else f"would keep production: {_failures(decision)}"
        return Outcome("dry-run", decision, [obj], f"nothing applied; {verdict}", lineage_uri, doc)
    plan = _smoke_plan(cfg, doc, decision)
    return _rollout(kube, obj, live, canary, plan, cfg, decision, doc, lineage_uri)


def _failures(decision: Decision) -> str:
    return "; ".join(r[6:] for r in decision.reasons if r.startswith("FAIL: "))


@dataclass(frozen=True)
class _SmokePlan:
    """What the smoke check asks and what it compares with: the evaluated accuracy on ``task``."""

    questions: SmokeSet
    task: str
    reference: float


def _smoke_plan(cfg: GateConfig, doc: dict[str, Any], decision: Decision) -> _SmokePlan:
    """The smoke set and its reference accuracy, settled before anything is applied (no rollout without a test)."""
    task, reference = smoke_reference(decision, cfg.smoke.task)
    data = cfg.smoke_data
    if data is None and doc.get("run"):
        data = f"{doc['run']['uri'].rstrip('/')}/data/selection.jsonl"
    if data is None:
        raise AudioMCQError("no smoke-check data: pass the held-out records (the model is not inside a run)")
    return _SmokePlan(pick_set(data, cfg.smoke_audio_root, cfg.smoke), task, reference)


def smoke_reference(decision: Decision, task: str | None) -> tuple[str, float]:
    """The task whose evaluated accuracy the smoke check compares with, and that accuracy: ``task``, else the
    candidate's only scored task, else the only decisive benchmark; refuses when that is ambiguous or unscored."""
    scored = sorted(t for t, m in decision.candidate.items() if m.get("accuracy") is not None)
    decisive = list(decision.criteria.get("benchmarks") or [])
    if task is None:
        if len(scored) == 1:
            task = scored[0]
        elif len(decisive) == 1:
            task = decisive[0]
        else:
            raise AudioMCQError(
                f"smoke check: the candidate is evaluated on {', '.join(scored) or 'nothing'}; name "
                "the task evaluated on the smoke data's kind of data (smoke task)"
            )
    accuracy = (decision.candidate.get(task) or {}).get("accuracy")
    if accuracy is None:
        raise AudioMCQError(
            f"smoke check: the candidate's metrics have no accuracy on {task!r} to compare the "
            f"served model with (scored: {', '.join(scored) or 'none'})"
        )
    return task, float(accuracy)


def _record_smoke(decision: Decision, doc: dict[str, Any], result: SmokeResult) -> None:
    """The smoke result into the decision (its checks as reasons) and the lineage document's copy of it."""
    decision.smoke = result.to_dict()
    for reason in result.reasons:
        verdict, _, text = reason.partition(": ")
        decision.reasons.append(f"{verdict}: smoke: {text}")
    if not result.ok:
        decision.promote = False
    doc["decision"] = decision.to_dict()


def _rollout(
    kube: Any,
    obj: dict[str, Any],
    live: dict[str, Any] | None,
    canary: int | None,
    plan: _SmokePlan,
    cfg: GateConfig,
    decision: Decision,
    doc: dict[str, Any],
    lineage_uri: str,
) -> Outcome:
    from audiomcq.infra.k8s import INFERENCE_SERVICE

    name, namespace = cfg.serving.name, cfg.serving.namespace
    previous = None
    if live is None:
        log.info(
            "no InferenceService %s/%s: creating it at 100%% (a canary needs a serving revision)", namespace, name
        )
        kube.create(INFERENCE_SERVICE, obj)
    else:
        if not ((live.get("spec") or {}).get("predictor") or {}).get("model"):
            raise AudioMCQError(
                f"InferenceService {namespace}/{name} has no spec.predictor.model: not one this gate "
                "manages; refusing to change it"
            )
        previous = {
            "annotations": copy.deepcopy(live["metadata"].get("annotations") or {}),
            "predictor": copy.deepcopy(live["spec"]["predictor"]),
        }
        # resourceVersion: a precondition; if anyone changed the service since it was read, the API answers 409
        patch = {
            "metadata": {
                "annotations": obj["metadata"]["annotations"],
                "resourceVersion": live["metadata"]["resourceVersion"],
            },
            "spec": {"predictor": obj["spec"]["predictor"]},
        }
        kube.patch(INFERENCE_SERVICE, name, patch, namespace)
        model = obj["spec"]["predictor"]["model"]["storageUri"]
        log.info("InferenceService %s/%s: %s%% of the traffic to %s", namespace, name, canary, model)

    def fail(reason: str) -> AudioMCQError:
        try:
            restored = _roll_back(kube, cfg, previous)
        except Exception as err:  # production may still route traffic to the new revision: say so, loudly
            log.exception("rolling back InferenceService %s/%s failed", namespace, name)
            return AudioMCQError(
                f"{reason}; rolling back failed too ({_why(err)}): check InferenceService {namespace}/{name} by hand"
            )
        message = f"rolled back: {reason}; {restored}"
        return RolledBack(Outcome("rolled-back", decision, [obj], message, lineage=doc))

    # from here on the new revision is applied: whatever goes wrong, production is restored before raising
    try:
        ready, result = _verify(kube, cfg, canary, plan, decision, doc)
        prior = None
        if previous is not None:
            prior = {
                "storageUri": previous["predictor"]["model"].get("storageUri"),
                "lineage": previous["annotations"].get(f"{lineage.PREFIX}lineage"),
            }
        lineage.write_json_uri(lineage.finish(doc, ready, prior), lineage_uri)
    except _StepFailed as err:
        raise fail(str(err)) from None
    except Exception as err:
        raise fail(_why(err)) from err
    revision = doc["inference_service"]["revision"]
    message = (
        f"promoted {obj['spec']['predictor']['model']['storageUri']} to 100% (revision {revision}); {result.detail}"
    )
    return Outcome("promoted", decision, [obj], message, lineage_uri, doc)


class _StepFailed(Exception):
    """A rollout step failed in an expected way; the message is the reason."""


def _why(err: Exception) -> str:
    return str(err) if isinstance(err, AudioMCQError) else f"{type(err).__name__}: {err}"


def _share(canary: int | None) -> int:
    """The traffic share the new revision gets: ``canary`` (0 included), 100 without one."""
    return 100 if canary is None else canary


def _verify(
    kube: Any, cfg: GateConfig, canary: int | None, plan: _SmokePlan, decision: Decision, doc: dict[str, Any]
) -> tuple[dict[str, Any], SmokeResult]:
    """Wait for the new revision, smoke-check it, then move all traffic to it; raises ``_StepFailed`` (or
    anything unexpected) when it must be rolled back."""
    from audiomcq.infra.k8s import INFERENCE_SERVICE, KubeError

    name, namespace = cfg.serving.name, cfg.serving.namespace
    try:
        ready = _wait(kube, cfg, _share(canary))
    except KubeError as err:
        raise _StepFailed(f"the new revision did not become ready ({err})") from None
    url = cfg.smoke_url or _revision_url(ready, canary)
    result = run_smoke(url, name, plan.questions, plan.reference, plan.task, cfg.smoke, retries=cfg.smoke_retries)
    log.info("%s", result.detail)
    _record_smoke(decision, doc, result)
    if not result.ok:
        raise _StepFailed(result.detail)
    if canary is not None:
        try:
            kube.patch(INFERENCE_SERVICE, name, {"spec": {"predictor": {"canaryTrafficPercent": None}}}, namespace)
            ready = _wait(kube, cfg, 100)
        except KubeError as err:
            raise _StepFailed(f"promoting the canary to 100% did not finish ({err})") from None
    return ready, result


def _roll_back(kube: Any, cfg: GateConfig, previous: dict[str, Any] | None) -> str:
    """Restore production (or delete what this gate created); returns what was done."""
    from audiomcq.infra.k8s import INFERENCE_SERVICE, KubeError

    name, namespace = cfg.serving.name, cfg.serving.namespace
    if previous is None:
        kube.delete(INFERENCE_SERVICE, name, namespace)
        return f"deleted the new InferenceService {namespace}/{name} (there was no previous model to restore)"
    now = kube.get(INFERENCE_SERVICE, name, namespace) or {"metadata": {}, "spec": {}}
    patch = {
        "metadata": {"annotations": restore_patch(now["metadata"].get("annotations") or {}, previous["annotations"])},
        "spec": {"predictor": restore_patch((now.get("spec") or {}).get("predictor") or {}, previous["predictor"])},
    }
    kube.patch(INFERENCE_SERVICE, name, patch, namespace)
    uri = previous["predictor"]["model"].get("storageUri")
    try:
        _wait(kube, cfg, _share(previous["predictor"].get("canaryTrafficPercent")))
    except KubeError as err:
        return f"restored {uri} in the spec, but it is not ready yet ({err})"
    return f"restored the previous model {uri}"


def restore_patch(current: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch that turns ``current`` back into ``previous`` (keys added since are removed)."""
    patch: dict[str, Any] = {key: None for key in current if key not in previous}
    for key, value in previous.items():
        now = current.get(key)
        if isinstance(value, dict) and isinstance(now, dict):
            sub = restore_patch(now, value)
            if sub:
                patch[key] = sub
        elif now != value:
            patch[key] = copy.deepcopy(value)
    return patch


def rollout_done(obj: dict[str, Any] | None, want: int) -> bool:
    """The InferenceService has observed its spec, is Ready, and its latest revision is ready with ``want``% of
    the traffic. Raises on a failed revision (no point waiting)."""
    from audiomcq.infra.k8s import KubeError

    if obj is None:
        raise KubeError("the InferenceService was deleted while waiting for it")
    status = obj.get("status") or {}
    generation, observed = obj["metadata"].get("generation"), status.get("observedGeneration")
    if generation is not None and observed is not None and observed < generation:
        return False
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    for kind in ("Ready", "PredictorReady"):
        cond = conditions.get(kind) or {}
        if cond.get("status") == "False" and cond.get("reason") in FAILED_REASONS:
            raise KubeError(f"{kind}=False ({cond.get('reason')}: {cond.get('message', '')})")
    if (conditions.get("Ready") or {}).get("status") != "True":
        return False
    predictor = (status.get("components") or {}).get("predictor") or {}
    if predictor.get("latestCreatedRevision") != predictor.get("latestReadyRevision"):
        return False
    share = sum(int(t.get("percent") or 0) for t in predictor.get("traffic") or [] if t.get("latestRevision"))
    return share == want


def _wait(kube: Any, cfg: GateConfig, want: int) -> dict[str, Any]:
    from audiomcq.infra.k8s import INFERENCE_SERVICE

    name, namespace = cfg.serving.name, cfg.serving.namespace
    obj = kube.wait_for(INFERENCE_SERVICE, name, lambda o: rollout_done(o, want), namespace, cfg.timeout, cfg.poll)
    assert obj is not None  # rollout_done raises on None
    return obj


def _revision_url(obj: dict[str, Any], canary: int | None) -> str:
    """The URL that reaches the latest revision alone (its tag URL), else the service's own."""
    status = obj.get("status") or {}
    predictor = (status.get("components") or {}).get("predictor") or {}
    for target in predictor.get("traffic") or []:
        if target.get("latestRevision") and target.get("url"):
            return str(target["url"])
    url = (status.get("address") or {}).get("url") or status.get("url")
    if not url:
        raise AudioMCQError("the InferenceService is Ready but its status has no URL; pass a smoke URL")
    if canary is not None:
        log.warning("no tag URL for the new revision: the smoke query goes to %s, where it gets %d%%", url, canary)
    return str(url)
