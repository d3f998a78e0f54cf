#!/usr/bin/env bash
# The whole test suite: installs what it needs (scripts/setup.sh), then runs pytest on 2 workers.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k numerics`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=2
exec .venv/bin/python -m pytest -n 2 -q -p no:cacheprovider "$@"
