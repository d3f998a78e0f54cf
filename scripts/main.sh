#!/usr/bin/env bash
# The main job end to end: set-up, then examples/end_to_end.py (train once, FxP-QNet at a 1 %
# budget, export, run on the reference, the host C kernels and emulated Cortex-M4, print a table).
# Extra arguments go to the script (e.g. `--model residual_ds_net`, `--out runs/demo`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=2
exec .venv/bin/python examples/end_to_end.py "$@"
