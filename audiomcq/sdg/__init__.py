"""Dataset generation: AudioMCQ-style MCQs, CoT and quality grades from audio captions with an LLM (or templates)."""
