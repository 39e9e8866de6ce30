"""``audiomcq filter``: audio-contribution filtering that streams, shards and resumes.

Work is model-major (one filter model in memory at a time, as 7B LALMs need) and chunked: for each model, each
chunk of the input is answered under every probe and written atomically to ``work/<model>/part-NNNNNN.jsonl``.
A restarted run skips the parts that are still valid (``audiomcq.acf.answer``: same model and settings, same chunk,
every probe), so a SIGKILL costs at most one chunk per model and never duplicates or drops a record; another model
or setting under the same name is refused unless ``fresh``. The merge streams the input and the K part files side
by side into ``labelled.jsonl``, ``weak.jsonl``, ``strong.jsonl`` and ``stats.json`` (all written atomically), so
memory does not grow with the input. ``shard=(i, N)`` keeps the records whose position p has p % N == i, for a
KFP fan-out.

Each model's generation budget comes from the data unless set (``audiomcq.acf.answer``); truncated answers are
counted per model and probe, and records too long for a model's context are left unlabelled, counted as
``over_length`` and listed in ``over_length.jsonl``. Clips no model can hear are counted as ``audio_corrupt`` (the
record is still labelled from the probes that hide the audio, like a record whose audio is missing), and clips
longer than the models' window as ``audio_trimmed``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiomcq.acf.answer import BUDGET_FILE, answer_all, chunks
from audiomcq.acf.probes import Probe
from audiomcq.acf.stats import Rule, Summary, rule_variants
from audiomcq.data.record import MCQRecord
from audiomcq.errors import AudioMCQError
from audiomcq.fingerprint import clean_tmp
from audiomcq.inference import EngineSpec, Sampling
from audiomcq.inference.budget import DEFAULT_MARGIN
from audiomcq.jsonio import atomic_writer, iter_jsonl, json_line, load_json, write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FilterConfig:
    """What a filter run does; defaults reproduce the paper (30 s silence, greedy, weak if >= 2 of 3).

    ``max_new_tokens`` None: each model's budget comes from the data (longest answer + ``budget_margin``);
    ``max_length``: the context of every model whose spec sets none (default: its checkpoint's max positions)."""

    probes: tuple[str, ...] = ("silence:30",)
    min_correct: int = 2
    label_rule: str = "paper"
    samples: int = 1
    temperature: float = 0.0
    max_new_tokens: int | None = None
    chunk_size: int = 256
    batch_size: int = 64
    shard: tuple[int, int] = (0, 1)
    validate: bool = True  # off for benchmark items, which are filtered as published
    budget_margin: int = DEFAULT_MARGIN
    max_length: int | None = None

    def __post_init__(self) -> None:
        checks = (
            ("max_new_tokens", 1),
            ("max_length", 1),
            ("budget_margin", 0),
            ("chunk_size", 1),
            ("batch_size", 1),
            ("samples", 1),
        )
        for key, least in checks:
            value = getattr(self, key)
            if isinstance(value, float) and value.is_integer():  # numbers passed through KFP arrive as doubles
                object.__setattr__(self, key, value := int(value))
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
                raise AudioMCQError(f"filter setting {key} must be a whole number >= {least}, not {value!r}")

    @classmethod
    def from_dict(cls, cfg: dict[str, Any], **override: Any) -> FilterConfig:
        """From a recipe's ``filter`` section (unknown keys are errors)."""
        unknown = set(cfg) - set(cls.__dataclass_fields__)
        if unknown:
            raise AudioMCQError(f"unknown filter setting(s) {sorted(unknown)}")
        from audiomcq.config import whole_numbers

        merged = whole_numbers(cls, {**cfg, **override})
        for key in ("probes", "shard"):
            if key in merged:
                merged[key] = tuple(merged[key])
        return cls(**merged)

    def sampling(self, max_new_tokens: int, stop: tuple[str, ...] = ()) -> Sampling:
        """Generation settings for one model, with its budget and its prompt's stop strings."""
        temperature = self.temperature if self.samples > 1 else 0.0
        return Sampling(max_new_tokens, temperature, n=self.samples, stop=stop)


def _plan(models: Sequence[Any], config: FilterConfig) -> tuple[list[EngineSpec], list[str], list[Probe], list[Rule]]:
    """The engines, their names, the probes and the rule variants of a run (checked, nothing loaded)."""
    specs = [m if isinstance(m, EngineSpec) else EngineSpec.from_dict(_with_batch(m, config)) for m in models]
    names = [s.name or f"filter{i}" for i, s in enumerate(specs)]
    if len(set(names)) != len(names):
        raise AudioMCQError(f"filter model names must be unique, got {names}")
    if not 1 <= config.min_correct <= len(specs):
        raise AudioMCQError(f"min_correct must be in 1..{len(specs)}, got {config.min_correct}")
    try:
        probes = [Probe.parse(p) for p in config.probes]
    except ValueError as err:
        raise AudioMCQError(str(err)) from None
    rules = rule_variants([p.name for p in probes], config.min_correct)
    if config.label_rule not in {r.name for r in rules}:
        raise AudioMCQError(f"label rule {config.label_rule!r} is not one of {[r.name for r in rules]}")
    return specs, names, probes, rules


def run_filter(
    data: str | Path,
    models: Sequence[str | dict[str, Any] | EngineSpec],
    audio_root: str | Path | None,
    out_dir: str | Path,
    config: FilterConfig = FilterConfig(),
    fresh: bool = False,
) -> dict[str, Any]:
    """Label ``data`` weak/strong; returns the statistics also written to ``stats.json``. ``fresh``: discard the
    finished parts another model or setting made under a model's name instead of refusing to run."""
    specs, names, probes, rules = _plan(models, config)
    out = Path(out_dir)
    clean_tmp(out)
    for name, spec in zip(names, specs, strict=True):
        answer_all(data, spec, name, probes, audio_root, out / "work" / name, config, fresh)
    return _merge(data, {n: out / "work" / n for n in names}, out, rules, config)


def _local_inputs(data: str, models: Sequence[Any], audio_root: str | Path | None, scratch: Path) -> tuple:
    """Local copies of ``s3://`` inputs: the record file streamed, models and audio synced to the cache."""
    from audiomcq.infra import storage

    models = [
        storage.local_model(m) if isinstance(m, (str, Path)) else {**m, "path": storage.local_model(m["path"])}
        for m in models
    ]
    audio = storage.local_tree(audio_root) if audio_root is not None else None
    return storage.fetch(data, scratch / "input"), models, audio


def run_filter_uri(
    data: str,
    models: Sequence[Any],
    audio_root: str | Path | None,
    out: str,
    config: FilterConfig,
    work: str | Path | None = None,
    fresh: bool = False,
) -> dict[str, Any]:
    """``run_filter`` for local paths or ``s3://`` URIs: an S3 input is streamed to the work directory, S3 models
    and audio roots are synced to the local cache, and an S3 output is written locally (parts included, so a rerun
    on the same volume resumes) and published at the end. The work directory defaults to one of this output's own
    (under the staging cache, keyed by the output), so two runs into different outputs never share parts."""
    from audiomcq.infra import storage

    key = out if storage.is_s3(out) else str(Path(out).resolve())
    scratch = Path(work) if work else storage.cache_dir(key) / "filter"
    local_out = scratch / "out" if storage.is_s3(out) else Path(out)
    stats = run_filter(*_local_inputs(data, models, audio_root, scratch), local_out, config, fresh)
    if storage.is_s3(out):
        storage.publish(local_out, out, exclude=("work",))
    return stats


def answer_with(
    data: str,
    models: Sequence[Any],
    index: int,
    audio_root: str | Path | None,
    out_dir: str | Path,
    config: FilterConfig,
    fresh: bool = False,
) -> dict[str, Any]:
    """Filter model ``index`` alone on ``config.shard``: one cell of a models x shards fan-out. Its answers go to
    ``out_dir`` (resumable parts + ``answers.json``); ``label_answers`` turns every cell into the labels
    ``run_filter`` would write. Only this cell's model is fetched, and the input's local copy stays out of
    ``out_dir`` (a pipeline artifact)."""
    import tempfile

    out = Path(out_dir)
    specs, names, probes, _ = _plan(models, config)  # names and checks from the entries as given; nothing loaded
    if not 0 <= index < len(specs):
        raise AudioMCQError(f"filter model index {index} is not in 0..{len(specs) - 1}")
    with tempfile.TemporaryDirectory(prefix="audiomcq-cell-") as scratch:
        local_data, (model,), audio = _local_inputs(data, [models[index]], audio_root, Path(scratch))
        spec = model if isinstance(model, EngineSpec) else EngineSpec.from_dict(_with_batch(model, config))
        answer_all(local_data, spec, names[index], probes, audio, out / "parts", config, fresh)
    meta = {"model": names[index], "index": index, "shard": list(config.shard), "probes": list(config.probes)}
    write_json(out / "answers.json", meta)
    return meta


def label_answers(
    data: str,
    models: Sequence[Any],
    answer_dirs: Sequence[str | Path],
    out_dir: str | Path,
    config: FilterConfig,
    shards: int,
) -> dict[str, Any]:
    """Labels from every (model, shard) cell's answers: each shard merged like ``run_filter``, then the shards
    interleaved back into input order. A missing or repeated cell is an error naming it."""
    import tempfile
    from dataclasses import replace

    from audiomcq.infra import storage

    out = Path(out_dir)
    _, names, _, rules = _plan(models, config)
    cells: dict[tuple[int, str], Path] = {}
    for d in map(Path, answer_dirs):
        meta = load_json(d / "answers.json")
        key = (meta["shard"][0], meta["model"])
        if meta["shard"][1] != shards or key in cells or meta["probes"] != list(config.probes):
            raise AudioMCQError(
                f"{d}: answers of {meta['model']} on shard {meta['shard']} with probes {meta['probes']} "
                f"repeat a cell or do not fit {shards} shards and probes {list(config.probes)}"
            )
        cells[key] = d / "parts"
    missing = [f"{n}@{s}" for s in range(shards) for n in names if (s, n) not in cells]
    if missing:
        raise AudioMCQError(f"no answers for model@shard {missing}")
    with tempfile.TemporaryDirectory(prefix="audiomcq-labels-") as scratch:  # kept out of ``out_dir``
        local_data = storage.fetch(data, Path(scratch) / "input")
        parts = []
        for s in range(shards):
            parts.append(Path(scratch) / "shards" / str(s))
            _merge(local_data, {n: cells[(s, n)] for n in names}, parts[-1], rules, replace(config, shard=(s, shards)))
        return merge_shards(parts, out)


def _with_batch(model: str | Path | dict[str, Any], config: FilterConfig) -> dict[str, Any]:
    """A model entry with the run's batch size and max_length where the entry sets none."""
    entry = {"path": str(model)} if isinstance(model, (str, Path)) else dict(model)
    defaults: dict[str, Any] = {"batch_size": config.batch_size}
    if config.max_length is not None:
        defaults["max_length"] = config.max_length
    return {**defaults, **entry}


def _merge(data: str | Path, work: dict[str, Path], out: Path, rules: list[Rule], config: FilterConfig) -> dict:
    """Stream the input and each model's parts (``work``: name -> folder) side by side into the labelled files."""
    label_rule = next(r for r in rules if r.name == config.label_rule)
    names = list(work)
    probe_names = [Probe.parse(p).name for p in config.probes]

    def labelled() -> Iterator[MCQRecord]:
        for i, chunk in enumerate(chunks(data, config)):
            parts = {n: _part_rows(work[n] / f"part-{i:06d}.jsonl", len(chunk)) for n in names}
            for j, record in enumerate(chunk):
                acf = _record_acf(record, {n: parts[n][j] for n in names}, rules, i, probe_names)
                if acf.get("over_length"):
                    record.audio_contribution = None  # not every model could be asked: no label, reported
                else:
                    weak = acf["votes"][label_rule.name] >= config.min_correct
                    record.audio_contribution = "weak" if weak else "strong"
                record.extra["acf"] = acf
                yield record

    budgets = {n: load_json(work[n] / BUDGET_FILE) for n in names if (work[n] / BUDGET_FILE).is_file()}
    meta = {
        "rule": f"weak if >= {config.min_correct} of {len(names)} right ({config.label_rule})",
        "probes": list(config.probes),
        "shard": list(config.shard),
        "budgets": budgets,
    }
    stats = _write_labelled(labelled(), out, Summary(rules, config.label_rule), meta)
    log.info("ACF %s: %d weak / %d strong", data, stats["weak"], stats["strong"])
    return stats


def _write_labelled(records: Iterator[MCQRecord], out: Path, summary: Summary, meta: dict[str, Any]) -> dict:
    """Stream labelled records into the JSONL files and ``stats.json``, each written atomically: every record in
    ``labelled``, the labelled ones in ``weak``/``strong``, and the id and token counts of each record too long
    for some model in ``over_length``."""
    with ExitStack() as stack:
        names = ("labelled", "weak", "strong", "over_length")
        files = {k: stack.enter_context(atomic_writer(out / f"{k}.jsonl")) for k in names}
        for record in records:
            line = json_line(record.to_dict()) + "\n"
            files["labelled"].write(line)
            over = record.extra["acf"].get("over_length")
            if over:
                files["over_length"].write(json_line({"id": record.id, "models": over}) + "\n")
            else:
                files[record.audio_contribution or "strong"].write(line)
            summary.add(record, record.extra["acf"])
    stats = {**meta, **summary.result()}
    write_json(out / "stats.json", stats)
    return stats


def merge_shards(shard_dirs: Sequence[str | Path], out_dir: str | Path) -> dict[str, Any]:
    """One labelled set from the outputs of shards 0..N-1 (given in that order): interleaving their lines restores
    the input order, since shard i holds positions i, i+N, …; the statistics are recomputed over the whole."""
    dirs = [Path(d) for d in shard_dirs]
    metas = [load_json(d / "stats.json") for d in dirs]
    for i, m in enumerate(metas):
        if m["shard"] != [i, len(dirs)]:
            raise AudioMCQError(f"{dirs[i]}: holds shard {m['shard'][0]}/{m['shard'][1]}, expected {i}/{len(dirs)}")
    rules = [Rule(name, tuple(r["probes"]), r["min_correct"]) for name, r in metas[0]["rules"].items()]

    def interleaved() -> Iterator[MCQRecord]:
        streams = [(row for _, row in iter_jsonl(d / "labelled.jsonl")) for d in dirs]
        for group in itertools.zip_longest(*streams):
            yield from (MCQRecord.from_dict(row) for row in group if row is not None)

    meta = {
        "rule": metas[0]["rule"],
        "probes": metas[0]["probes"],
        "shard": [0, 1],
        "budgets": metas[0].get("budgets", {}),  # fixed from the whole input, so the same in every shard
        "merged_from": [str(d) for d in dirs],
    }
    return _write_labelled(interleaved(), Path(out_dir), Summary(rules, metas[0]["labelled_by"]), meta)


def _part_rows(path: Path, expected: int) -> list[dict[str, Any]]:
    """A part's rows, which must be one per record of its chunk."""
    if not path.is_file():
        raise AudioMCQError(f"{path}: missing; answer every model on every chunk before labelling")
    rows = [row for _, row in iter_jsonl(path)]
    if len(rows) != expected:
        raise AudioMCQError(
            f"{path}: {len(rows)} answered records where its chunk has {expected}; the input or "
            "--chunk-size changed since it was answered (rerun `filter run`)"
        )
    return rows


def _record_acf(
    record: MCQRecord, rows: dict[str, dict[str, Any]], rules: list[Rule], chunk: int, probes: list[str]
) -> dict[str, Any]:
    for name, row in rows.items():
        if row["id"] != record.id:  # the input changed under a resumed run: refuse to mix two inputs
            raise AudioMCQError(
                f"{name} part {chunk}: has {row['id']!r} where the input has {record.id!r}; "
                "the input changed since it was answered (rerun `filter run`)"
            )
    over = {name: row["over_length"] for name, row in rows.items() if row.get("over_length")}
    results: dict[str, dict[str, Any]] = {}
    for name, row in rows.items():  # the run's probes only: a probe dropped since is left out of the labels
        lacking = [p for p in probes if p not in row["probes"]]
        if lacking and not over:
            raise AudioMCQError(
                f"{name} part {chunk}: record {record.id!r} has no answers under probe(s) {lacking}; "
                "answer them with `filter run` before labelling"
            )
        results[name] = {p: row["probes"][p] for p in probes if p in row["probes"]}
    flags = {
        key: any(row.get(key, False) for row in rows.values())
        for key in ("audio_missing", "audio_corrupt", "audio_trimmed")
    }
    if over:
        return {"models": results, "over_length": over, **flags}
    primary = rules[0].probes[0]
    samples = [c for res in results.values() for c in res[primary]["correct"]]
    return {
        "models": results,
        "votes": {rule.name: rule.votes(results) for rule in rules},
        "score": sum(samples) / len(samples),  # graded: share of silent answers (all models, all samples) right
        **flags,
    }
