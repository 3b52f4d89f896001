#!/usr/bin/env bash
# Small encoders for the equivariance diagnostics (docs/diagnostics.md, "Latent isometry table"):
# a GQN and a NISO trained on a tiny 32 px jaco dataset, a NISO trained on homography digits,
# then `wm diagnose equivariance` on each (with the untrained control of the same architecture).
# Sized for a few CPU minutes on one thread. Rerunning skips what is already there.
#
#   bash scripts/diagnostics_encoders.sh [OUT_ROOT]     (default: runs/diag)
set -euo pipefail
cd "$(dirname "$0")/.."
export MUJOCO_GL=${MUJOCO_GL:-egl}
export OMP_NUM_THREADS=1
ROOT=${1:-runs/diag}
WM="python -m agents.cli"
mkdir -p "$ROOT"

# Data: training scenes (seed 0) and held-out scenes for the isometry maps (seed 1), 11 views
# along a smooth orbit trajectory each.
$WM data collect --source jaco --scenes 600 --size 32 --seed 0 --workers 1 --quiet --out "$ROOT/jaco32_train"
$WM data collect --source jaco --scenes 600 --size 32 --seed 1 --workers 1 --quiet --out "$ROOT/jaco32_eval"

train_once() {  # RUN_DIR, then the `wm train` arguments
  local run=$1; shift
  if ls "$run"/checkpoints/step_* >/dev/null 2>&1; then echo "skip $run (trained)"; return; fi
  $WM train "$@" --out "$run" --threads 1 --no-progress --image-every 0 --log-every 50
}

train_once "$ROOT/gqn_jaco" gqn --data "$ROOT/jaco32_train" --preset small --steps 1500 \
  --lr-anneal-steps 1500 --sigma-anneal-steps 1000 --eval-every 500 --ckpt-every 500
train_once "$ROOT/niso_jaco" niso --data "$ROOT/jaco32_train" --preset scenes --channels 16 32 64 \
  --latent-dim 8 --rank 16 --skips 0 3 --steps 800 --lr-anneal-steps 800 --eval-every 400 --ckpt-every 400
train_once "$ROOT/niso_digits" niso --data digits --preset small --steps 800 --lr-anneal-steps 800 \
  --eval-every 400 --ckpt-every 400

# The diagnostics (each run also measures the untrained control of its architecture).
$WM diagnose equivariance --encoder "GQN=$ROOT/gqn_jaco" --encoder "NISO=$ROOT/niso_jaco" \
  --data "$ROOT/jaco32_eval" --out "$ROOT/report_jaco" --images 64
$WM diagnose equivariance --encoder "NISO=$ROOT/niso_digits" --data digits --out "$ROOT/report_digits" --images 64
