"""``audiomcq bench``: speed and memory targets measured side by side, each ratio the median of repeats."""
