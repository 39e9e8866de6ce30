"""KFP components: thin shims over ``audiomcq.stages`` (one import, one call each)."""

from components.stages import acf_filter, evaluate, post_train, pretrain, report, select, synth

__all__ = ["acf_filter", "evaluate", "post_train", "pretrain", "report", "select", "synth"]
