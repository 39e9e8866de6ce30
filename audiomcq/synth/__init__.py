"""Synthetic audio MCQ corpus with ground truth of which questions need the audio."""

from audiomcq.synth.corpus import generate

__all__ = ["generate"]
