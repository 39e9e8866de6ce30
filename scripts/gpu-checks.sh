#!/usr/bin/env bash
# The GPU checks, in one short run on a lent GPU machine (see README "GPU checks"): the gpu-marked tests (vLLM
# engine, GRPO with vLLM rollouts carrying audio, torch's varlen attention against padded sdpa), then the SFT
# throughput sweep and SFT MFU plus GRPO rollout tokens/s on a random-initialised Qwen2.5-Omni-3B-shaped thinker.
# Needs a GPU image's packages (torch CUDA, and vllm at the version images/pins.py pins).
#
# The sweep (docs/training.md "Throughput switches") trains SFT alone, SWEEP_STEPS steps per row, for every
# profile x batch x packing x attention x loss combination below on one random 3B model, and prints one table
# (about 20 s a row on an H200 plus the model build; 12 rows by default). Shrink it with the SWEEP_* variables.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu-checks}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/device.txt"
python -m pytest -m gpu -q -p no:cacheprovider 2>&1 | tail -20 | tee "$OUT/pytest-gpu.txt"
# shellcheck disable=SC2086  # the SWEEP_* lists are meant to split into several values
python -m audiomcq.cli --log-level info bench train --size 3b --sft-only --steps "${SWEEP_STEPS:-5}" \
  --work /tmp/bench-3b-sweep --profile ${SWEEP_PROFILES:-audiomcq synthetic} --batch ${SWEEP_BATCHES:-16 32} \
  --packing ${SWEEP_PACKING:-off on} --attention ${SWEEP_ATTENTION:-sdpa varlen} --loss ${SWEEP_LOSS:-fused} \
  2>"$OUT/bench-train-sweep.log" | tee "$OUT/bench-train-sweep.txt"
rm -rf /tmp/bench-3b-sweep
python -m audiomcq.cli --log-level info bench train --size 3b --steps "${STEPS:-12}" --work /tmp/bench-3b \
  2>"$OUT/bench-train-3b.log" | tee "$OUT/bench-train-3b.txt"
