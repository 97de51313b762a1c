#!/usr/bin/env bash
# Installs ldiff and its dependencies into the current Python environment.
# torch is installed only where none is present: bring your own CUDA build first if you have a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import torch" >/dev/null 2>&1; then
  echo "No torch found: installing the CPU build torch==2.13.0 (install your CUDA build first to use a GPU)."
  "$PYTHON" -m pip install --quiet "torch==2.13.0"
fi
"$PYTHON" -m pip install --quiet -e ".[test]"
