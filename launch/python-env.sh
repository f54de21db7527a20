#!/usr/bin/env bash
# Creates (once) the Python environment the tests that compare against PyTorch need, in a venv under the
# build folder: PyTorch (CPU use of the PyPI wheel), torchvision's model and transform code (--no-deps: no
# weights are ever downloaded), safetensors, NumPy, Pillow, TensorBoard and scikit-learn. Prints the venv's python.
#   bash launch/python-env.sh            # -> .build/venv/bin/python
#   DAFT_VENV=/some/dir bash launch/python-env.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${DAFT_VENV:-$PWD/.build/venv}
stamp="$venv/.daft-python-env-v2"
if [ ! -f "$stamp" ]; then
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip setuptools >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check torch numpy safetensors pillow tensorboard scikit-learn >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps torchvision >&2
  "$venv/bin/python" -c "import torch, torchvision, safetensors, PIL, tensorboard, sklearn" >&2
  touch "$stamp"
fi
echo "$venv/bin/python"
