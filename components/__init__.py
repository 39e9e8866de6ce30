"""KFP components: thin shims over ``audiomcq.stages`` (one import, one call each)."""

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
    "run_prefix",
    "select",
    "select_checkpoint",
    "synth",
    "train_on_cluster",
    "train_paradigm",
]
