#!/usr/bin/env bash
# NISO camera pose by the official trajectory protocol (issue 15, docs/niso.md "Camera pose by
# trajectory ATE"): for Jaco and Rooms at 32 px, 41 views per scene along a camera trajectory,
# train NISO and a plain autoencoder (same encoder, same pairs) for 3 seeds, write the untrained
# control, then `wm eval niso trajectory` (pose head with the scale-invariant translation loss,
# relative poses chained at skips {1,2,4,6,8,10}, Umeyama-aligned ATE) on held-out scenes.
#
#   bash scripts/niso_pose_study.sh [OUT_ROOT]        (default: runs/niso_pose)
#
# Resumable: finished trainings (a model.safetensors in the run's newest checkpoint) and
# evaluations (their JSON) are skipped; a killed training resumes from its checkpoint.
# Variables: FAMILIES ["jaco rooms"] SEEDS ["0 1 2"] SCENES [300] STEPS [1000] THREADS [1]
#            ARMS ["niso ae"] (run a subset in parallel, e.g. ARMS=ae in a second shell)
set -euo pipefail
cd "$(dirname "$0")/.."
export MUJOCO_GL=${MUJOCO_GL:-egl}
ROOT=${1:-runs/niso_pose}
FAMILIES=${FAMILIES:-"jaco rooms"}
SEEDS=${SEEDS:-"0 1 2"}
SCENES=${SCENES:-300}
STEPS=${STEPS:-1000}
THREADS=${THREADS:-1}
ARMS=${ARMS:-"niso ae"}
export OMP_NUM_THREADS=$THREADS
WM="python -m agents.cli"
mkdir -p "$ROOT"

for family in $FAMILIES; do
  case $family in
    jaco) opts=(-o steps_per_view=2) ;;
    rooms) opts=(--trajectory -o angle_step=0.10472) ;;  # 6 degrees per view on the ring
    *) echo "niso_pose_study.sh: unknown family '$family'; valid: jaco rooms" >&2; exit 2 ;;
  esac
  data="$ROOT/$family/data"
  $WM data collect --source "$family" --scenes "$SCENES" --views 41 --size 32 --seed 0 --workers 1 --quiet \
    "${opts[@]}" --out "$data"
  for seed in $SEEDS; do
    for arm in $ARMS; do
      run="$ROOT/$family/${arm}_s$seed"
      if [[ -f $run/done ]]; then continue; fi
      if ls "$run/checkpoints"/step_* >/dev/null 2>&1; then
        args=(--resume)
      else
        mode=(); [[ $arm == ae ]] && mode=(--mode autoencoder)
        # the last 20% of the scenes (60) are the held-out test sequences, never trained on
        args=(--preset scenes --data "$data" --val-fraction 0.2 --skips 0 9 --lr-anneal-steps "$STEPS"
              --seed "$seed" --init-seed "$seed" "${mode[@]}")
      fi
      $WM train niso "${args[@]}" --out "$run" --steps "$STEPS" --ckpt-every 250 --threads "$THREADS" \
        --no-progress >"$run.summary.json"
      touch "$run/done"
    done
  done
  for seed in $SEEDS; do
    out="$ROOT/$family/eval_s$seed.json"
    if [[ -f $out ]]; then continue; fi
    untrained="$ROOT/$family/untrained_s$seed"
    [[ -f $untrained/model.safetensors ]] || $WM train untrained --like "$ROOT/$family/niso_s$seed" --out "$untrained" --seed "$seed"
    # the same held-out 20% of scenes as training's --val-fraction; the head's pairs come from the rest
    $WM eval niso trajectory "niso=$ROOT/$family/niso_s$seed" "ae=$ROOT/$family/ae_s$seed" "untrained=$untrained" \
      --data "$data" --test-fraction 0.2 --seed "$seed" --out "$out"
  done
done
