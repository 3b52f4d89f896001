#!/usr/bin/env bash
# The README's test command: set up what is missing, then run the suite.
# pytest's exit code 5 ("no tests collected") is an error here: a suite that runs nothing is not green.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
export MUJOCO_GL=${MUJOCO_GL:-egl}
python3 -m pytest -q "$@"
code=$?
if [ "$code" -eq 5 ]; then
    echo "error: pytest collected no tests" >&2
    exit 1
fi
exit "$code"
