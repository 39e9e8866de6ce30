"""KFP components, one module per pipeline (the same names as ``pipelines/`` and ``audiomcq.stages``): thin shims,
one import and one call each."""

import importlib
from typing import Any

MODULES = ("ingest", "filter", "sdg", "evaluate", "train", "demo")


def all_components() -> dict[str, Any]:
    """Every component of every pipeline module, by ``module.name``."""
    from kfp.dsl.base_component import BaseComponent

    found = {}
    for name in MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        found.update({f"{name}.{k}": v for k, v in vars(module).items() if isinstance(v, BaseComponent)})
    return found
