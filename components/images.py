"""The one image map every component reads: ``AUDIOMCQ_IMAGE_<NAME>`` pins an image (a skaffold-built digest),
else the development tag is used. Locally (kfp.local) the image is ignored."""

import json
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

from audiomcq.errors import AudioMCQError

DEFAULTS = {
    "tools": "audiomcq-tools:dev",
    "train": "audiomcq-train:dev",
    "infer": "audiomcq-infer:dev",
    "serve": "audiomcq-serve:dev",
}


def image(name: str) -> str:
    """The image reference for ``name``."""
    return os.environ.get(f"AUDIOMCQ_IMAGE_{name.upper()}", DEFAULTS[name])


def load_build_output(path: str | os.PathLike[str], environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Pin the images of a ``skaffold build --file-output`` file: each build of ``audiomcq-<name>`` (any registry
    prefix) whose name is in ``DEFAULTS`` sets ``AUDIOMCQ_IMAGE_<NAME>`` in ``environ`` to its built reference
    (``registry/audiomcq-train:<tag>@sha256:<digest>`` when skaffold pushed it); other builds (``audiomcq-base``)
    are skipped. Returns ``{name: reference}``.

    Components take their image when they are defined, and importing this module defines them all (the package
    imports them). So when ``environ`` is the process environment, the components defined so far are re-pinned
    as well: compile the pipelines after this call and they carry the built references."""
    try:
        builds = json.loads(Path(path).read_text())["builds"]
        found = {b["imageName"].rsplit("/", 1)[-1]: b["tag"] for b in builds}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise AudioMCQError(
            f"{path}: not a skaffold build output ({{'builds': [{{'imageName', 'tag'}}]}}): {err}"
        ) from err
    pinned = {name: found[f"audiomcq-{name}"] for name in DEFAULTS if found.get(f"audiomcq-{name}")}
    if not pinned:
        raise AudioMCQError(f"{path}: no build of {', '.join(f'audiomcq-{n}' for n in DEFAULTS)}")
    before = {name: image(name) for name in pinned}
    for name, ref in pinned.items():
        environ[f"AUDIOMCQ_IMAGE_{name.upper()}"] = ref
    if environ is os.environ:
        _repin_defined({before[name]: ref for name, ref in pinned.items()})
    return pinned


def _repin_defined(old_to_new: dict[str, str]) -> None:
    """Give the components already defined in this package their new image reference."""
    for module_name, module in list(sys.modules.items()):
        if module_name != __package__ and not module_name.startswith(f"{__package__}."):
            continue
        for obj in vars(module).values():
            spec = getattr(obj, "component_spec", None)
            container = getattr(getattr(spec, "implementation", None), "container", None)
            if container is not None and container.image in old_to_new:
                container.image = old_to_new[container.image]
