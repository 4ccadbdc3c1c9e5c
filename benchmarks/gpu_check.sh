#!/usr/bin/env bash
# The prepared GPU check of issue 22: one command, under 8 minutes on one GPU, nothing fetched.
#   bash benchmarks/gpu_check.sh [OUT_DIR]
# The GPU machine has PyTorch, Triton and NumPy. Anything else comes from benchmarks/wheels/ when
# that folder is there (make it here with benchmarks/gpu_wheels.sh and carry it along): pytest for
# the CUDA tests, tqdm, mambapy (a baseline). Writes OUT_DIR/tests.log, gpu_check.json, gpu_check.md.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu-check}}"
mkdir -p "$out"
if [ -d benchmarks/wheels ]; then
    pip install -q --no-index --find-links benchmarks/wheels pytest tqdm mambapy 2>&1 | tail -2
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/device.txt"
python -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)" \
    | tee -a "$out/device.txt"
# 1. the CUDA tests: the Triton kernels compiled on the GPU against the references
if python -c "import pytest" 2>/dev/null; then
    timeout 110 python -m pytest -q -p no:cacheprovider tests/test_triton.py tests/test_operators.py 2>&1 \
        | tee "$out/tests.log"
    # 1b. mamba_ssm's scan suite restated (tests/test_mamba_conformance.py), both backends on CUDA,
    # with a time cap: what it reached is in the log whatever happens
    timeout 90 python -m pytest -q -p no:cacheprovider tests/test_mamba_conformance.py 2>&1 \
        | tee "$out/conformance.log"
else
    echo "pytest is not installed here (run benchmarks/gpu_wheels.sh and carry benchmarks/wheels)" | tee "$out/tests.log"
fi
# 2. timings: scan and LIF against their baselines, copy bandwidth, the published-size train step
timeout 270 python benchmarks/gpu_check.py --out "$out"
