#!/usr/bin/env bash
# The tests on the lowest TensorFlow that pyproject.toml allows, in a fresh venv (not run by
# .ci/run: its install and the whole suite take as long again as CI's own run; docs/install.md).
#   bash .ci/lowest_tf.sh [PYTHON] [PYTEST ARGS...]    e.g. bash .ci/lowest_tf.sh python3.10 -x
set -euo pipefail
cd "$(dirname "$0")/.."
python="${1:-python3}"
shift || true
tf="$(sed -n 's/^ *"tensorflow>=\([0-9.]*\)",$/\1/p' pyproject.toml)"
[ -n "$tf" ] || { echo "error: no tensorflow>=X.Y.Z in pyproject.toml" >&2; exit 1; }
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
"$python" -m venv "$scratch/venv"
# shellcheck disable=SC1091
. "$scratch/venv/bin/activate"
python -m pip install -q --upgrade pip
pip install -q -e ".[dev]" "tensorflow==$tf"
python -c "import sys, tensorflow as tf, keras; print('Python', sys.version.split()[0], '| TensorFlow', tf.__version__, '| Keras', keras.__version__)"
python -m pytest -q "$@"
