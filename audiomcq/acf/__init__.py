"""Audio-contribution filtering (ACF): which questions can be answered without listening.

K filter models answer every question with the audio hidden (30 s of silence in the paper); a question that at
least m of them still get right is *weak* (answerable from text and priors), else *strong*. Beyond the paper,
extra probes (mismatched clips, rotated options, noise) break the shared-constant-guess correlation that gives the
silence-only rule a chance-level false-weak rate; the paper's rule stays the default label.
"""

from audiomcq.acf.probes import Probe
from audiomcq.acf.run import FilterConfig, run_filter
from audiomcq.acf.stats import PAPER, Rule, rule_variants

__all__ = ["PAPER", "FilterConfig", "Probe", "Rule", "rule_variants", "run_filter"]
