"""audiomcq: audio-contribution-aware post-training of audio LLMs, from data to a served model."""

__version__ = "0.1.0"
