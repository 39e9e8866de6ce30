"""Audio LMs by family: load a real checkpoint or build a tiny random one; batch audio prompts for them."""

from audiomcq.models.loading import LoadedModel, detect_family, load_model

__all__ = ["LoadedModel", "detect_family", "load_model"]
