#!/usr/bin/env bash
# Sets everything up on a fresh machine and runs the main job: installs torch (CUDA build) when
# missing, the build tools, and the harness' optional packages (matplotlib for its plots,
# transformers for its Hugging Face models), builds the kernels and the extension, then runs the
# demo (which only reports the build on a machine without a supported GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if ! $PY -c "import torch, triton" 2>/dev/null; then
  $PY -m pip install "torch==2.14.1"
fi
# setuptools: its bdist_wheel (setup.py); pyyaml and check-jsonschema: the CI workflow's test.
$PY -m pip install ninja numpy pytest "setuptools>=70.1" wheel matplotlib transformers pyyaml check-jsonschema
command -v cmake >/dev/null || $PY -m pip install cmake
# The kernel compile first, where its progress shows (pip hides a build's output); the install
# then finds every kernel in the cache.
$PY -m aot --out "${GEMS_AOT_BUILD_DIR:-build}/aot"
$PY -m pip install --no-build-isolation --no-deps -e .
$PY -m gems_aot demo
