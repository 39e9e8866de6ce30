"""Recipes: YAML files holding every hyperparameter, with ``--set section.key=value`` overrides.

Precedence: recipe < overrides. An override must name a key the recipe has (typos are errors, not silently new
keys). The resolved recipe is written next to each stage's outputs.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from audiomcq.errors import AudioMCQError, UsageError


def recipe_names() -> list[str]:
    """Recipes shipped in the package."""
    return sorted(p.name[:-5] for p in resources.files("audiomcq.recipes").iterdir() if p.name.endswith(".yaml"))


def load_recipe(
    name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = (), variant: str | None = None
) -> dict[str, Any]:
    """A packaged recipe by name (``demo``) or a YAML file, then its named ``variant``, then the overrides.

    A recipe may name a recipe it ``extends`` (deep merge; the recipe's own keys win)."""
    recipe = _read(name_or_path)
    if variant is not None:
        variants = recipe.get("variants") or {}
        if variant not in variants:
            raise AudioMCQError(f"recipe {name_or_path!r} has no variant {variant!r}; it has: {sorted(variants)}")
        recipe = apply_overrides(
            recipe, [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}" for k, v in variants[variant].items()]
        )
    return apply_overrides(recipe, overrides)


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _read(name_or_path: str | Path, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    if str(name_or_path) in seen:
        raise AudioMCQError(f"recipe 'extends' loop: {' -> '.join((*seen, str(name_or_path)))}")
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise AudioMCQError(f"{path}: no such recipe file")
        text = path.read_text()
    else:
        if str(name_or_path) not in recipe_names():
            raise AudioMCQError(f"unknown recipe {name_or_path!r}; packaged: {', '.join(recipe_names())}")
        text = resources.files("audiomcq.recipes").joinpath(f"{name_or_path}.yaml").read_text()
    recipe = yaml.safe_load(text) or {}
    parent = recipe.pop("extends", None)
    return _merge(_read(parent, (*seen, str(name_or_path))), recipe) if parent else recipe


def apply_overrides(recipe: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``a.b=value`` (value parsed as YAML; list items by index, ``filters.0.steps=10``) on a copy of ``recipe``.

    Keys must exist, except inside a ``trainer_args`` mapping (checked against the trainer config instead)."""
    out = copy.deepcopy(recipe)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise UsageError(f"override {item!r} must look like section.key=value")
        node: Any = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = _child(node, part, key)
        last = parts[-1]
        if isinstance(node, list):
            _child(node, last, key)
            node[int(last)] = yaml.safe_load(raw)
        elif isinstance(node, dict) and (last in node or parts[-2:-1] == ["trainer_args"]):
            # trainer_args take any field of the trainer's config; make_config rejects unknown names.
            node[last] = yaml.safe_load(raw)
        else:
            raise AudioMCQError(f"unknown recipe key {key!r}")
    return out


def _child(node: Any, part: str, key: str) -> Any:
    if isinstance(node, dict) and part in node:
        return node[part]
    if isinstance(node, list) and part.isdigit() and int(part) < len(node):
        return node[int(part)]
    raise AudioMCQError(f"unknown recipe key {key!r}")


def whole_numbers(cls: type, values: dict) -> dict:
    """``values`` with integral floats turned back into ints for a dataclass's int fields: JSON structs passed
    through KFP (protobuf ``Struct``) carry every number as a double, so ``chunk_size: 4`` arrives as ``4.0``."""
    import dataclasses

    ints = {f.name for f in dataclasses.fields(cls) if f.type in (int, "int")}
    return {k: int(v) if k in ints and isinstance(v, float) and v.is_integer() else v for k, v in values.items()}


def resolved_recipe(
    recipe: str, overrides: list[str] | tuple[str, ...], out: Path, variant: str | None = None
) -> dict[str, Any]:
    """The resolved recipe, also written next to the stage's outputs (by rank 0 of a multi-process run)."""
    from audiomcq.jsonio import write_json
    from audiomcq.train.launch import is_main

    resolved = load_recipe(recipe, list(overrides), variant)
    if is_main():
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "recipe.resolved.json", resolved)
    return resolved
