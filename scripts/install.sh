#!/usr/bin/env bash
# Installs ldiff and its dependencies into the current Python environment.
# torch is installed only where none is present, as torch==2.13.0 from whatever pip is configured to
# use: on this project's machines (and CI) a local CPU wheel; from the public index on Linux that is the
# default CUDA build (several GB). For a CPU-only build elsewhere install it first:
#   pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
# and for a GPU, the CUDA build that matches your driver (https://pytorch.org/get-started/locally/).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import torch" >/dev/null 2>&1; then
  echo "No torch found: installing torch==2.13.0 with pip's configuration (see the comment at the top of $0)."
  "$PYTHON" -m pip install --quiet "torch==2.13.0"
fi
# LDIFF_EXTRAS picks the optional extras (default: test; CI adds thickness, i.e. antspyx for
# ldiff_evaluate_thickness, whose wheel pins numpy < 2.4 and scipy < 1.16).
"$PYTHON" -m pip install --quiet -e ".[${LDIFF_EXTRAS:-test}]"
# The tests check synthetic datasets with nnU-Net's own verification. nnunetv2's declared dependencies
# would replace torch (they pull torchvision and a CUDA build), so it and the few packages its
# verification imports are installed without dependencies, for the tests only.
if [[ ",${LDIFF_EXTRAS:-test}," == *",test,"* ]]; then
  "$PYTHON" -m pip install --quiet --no-deps nnunetv2==2.8.1 acvl-utils==0.2.6 blosc2==3.3.4 msgpack==1.2.4 \
    ndindex==1.10.1 numexpr==2.14.2 platformdirs==4.14.9
fi
