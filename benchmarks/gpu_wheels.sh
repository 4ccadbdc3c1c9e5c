#!/usr/bin/env bash
# Wheels for benchmarks/gpu_check.sh, which runs where nothing can be fetched: pytest and its
# dependencies, tqdm, mambapy. About 1 MB; benchmarks/wheels/ is ignored by git, carry it.
set -euo pipefail
cd "$(dirname "$0")"
pip download -q --only-binary :all: --python-version 3.11 --platform manylinux2014_x86_64 -d wheels \
    pytest iniconfig pluggy packaging pygments tqdm mambapy --no-deps
ls wheels
