"""The one image map every component reads: ``AUDIOMCQ_IMAGE_<NAME>`` pins an image (a skaffold-built digest),
else the development tag is used. Locally (kfp.local) the image is ignored."""

import os

DEFAULTS = {
    "tools": "audiomcq-tools:dev",
    "train": "audiomcq-train:dev",
    "infer": "audiomcq-infer:dev",
    "serve": "audiomcq-serve:dev",
}


def image(name: str) -> str:
    """The image reference for ``name``."""
    return os.environ.get(f"AUDIOMCQ_IMAGE_{name.upper()}", DEFAULTS[name])
