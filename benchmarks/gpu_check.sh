#!/usr/bin/env bash
# GPU readiness check for spinekit: one markdown table in under 8 minutes on one GPU.
#
#   benchmarks/gpu_check.sh [--dry-run] [--data ../shared/data/aasce] [--recipe-min 3] [--work /tmp/gpu_check]
#
# Rows: bf16-autocast training / inference images/s of maskrcnn_r50_fpn at 256x256 and
# landmarks_r18 at 1024x512, a one-process NCCL all_reduce, a
# `torchrun --nproc-per-node 1 -m spinekit train` run, and the landmark GPU recipe's
# test SMAPE (benchmarks/bench_landmarks.py, training bounded by --recipe-min).
# --dry-run: CPU, tiny sizes, 1-2 steps, gloo; seconds (the CI test runs it).
# PYTHON selects the interpreter (default: python3). See docs/training.md "GPU recipe".
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="$here/../src${PYTHONPATH:+:$PYTHONPATH}"
limit=480
for arg in "$@"; do [[ "$arg" == "--dry-run" ]] && limit=120; done
exec timeout "$limit" "${PYTHON:-python3}" "$here/gpu_check.py" "$@"
