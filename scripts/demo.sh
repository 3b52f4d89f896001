#!/usr/bin/env bash
# The README's main-job command: set up what is missing, then run `wm demo` (arguments pass through).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL=${MUJOCO_GL:-egl}
exec python3 -m agents.cli demo "$@"
