#!/usr/bin/env bash
# The GPU checks, in one short run on a lent GPU machine (see README "GPU checks"): the gpu-marked tests (vLLM
# engine, GRPO with vLLM rollouts carrying audio), then SFT MFU and GRPO rollout tokens/s on a random-initialised
# Qwen2.5-Omni-3B-shaped thinker. Needs a GPU image's packages (torch CUDA, vllm per docs/ml-stack pins).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu-checks}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/device.txt"
python -m pytest -m gpu -q -p no:cacheprovider 2>&1 | tail -20 | tee "$OUT/pytest-gpu.txt"
python -m audiomcq.cli --log-level info bench train --size 3b --steps "${STEPS:-12}" --work /tmp/bench-3b \
  2>"$OUT/bench-train-3b.log" | tee "$OUT/bench-train-3b.txt"
