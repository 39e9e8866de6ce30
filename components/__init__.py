"""KFP components: thin shims over ``audiomcq.stages`` (one import, one call each)."""

from components.fetch import fetch_benchmark, fetch_dataset, fetch_model, resolve_dataset, resolve_model
from components.scaleout import (
    eval_report,
    eval_task,
    filter_answer,
    filter_cells,
    filter_label,
    generate_merge,
    generate_shard,
    launch_nodes,
    run_prefix,
    select_checkpoint,
    train_on_cluster,
    train_paradigm,
)
from components.stages import acf_filter, evaluate, post_train, pretrain, promote, report, select, synth

__all__ = [
    "acf_filter",
    "eval_report",
    "eval_task",
    "evaluate",
    "fetch_benchmark",
    "fetch_dataset",
    "fetch_model",
    "filter_answer",
    "filter_cells",
    "filter_label",
    "generate_merge",
    "generate_shard",
    "launch_nodes",
    "post_train",
    "pretrain",
    "promote",
    "report",
    "resolve_dataset",
    "resolve_model",
    "run_prefix",
    "select",
    "select_checkpoint",
    "synth",
    "train_on_cluster",
    "train_paradigm",
]
