#!/usr/bin/env bash
# The GQN quality benchmark's CPU runs (issue 14, docs/gqn.md "Quality benchmark"): for
# Shepard-Metzler and Rooms at 32 px, collect a training and a held-out dataset (other seed), train
# a GQN with the engine, then `wm eval gqn` on the held-out scenes (PSNR vs K against the
# nearest-context-view and mean-context baselines, surprise curve, sample grid).
#
#   bash scripts/gqn_quality_run.sh [OUT_ROOT]        (default: runs/gqn_quality)
#
# Resumable: rerunning the same command finishes a dataset whose collection was killed, resumes
# training from the newest checkpoint (exactly, see docs/training.md), and skips an evaluation
# whose JSON already evaluates the newest checkpoint (FORCE_EVAL=1 redoes it). Sized by environment
# variables; the defaults are the full runs (budget: <= 90 min of CPU each on 2 cores), e.g. a
# smoke test of a few minutes:
#
#   SCENES=64 HELD=16 STEPS=30 EVAL_SCENES=8 SAMPLES=2 bash scripts/gqn_quality_run.sh /tmp/gqn_q_tiny
#
# Variables (defaults in brackets):
#   FAMILIES ["shepard-metzler rooms"]   scene families to run
#   SCENES [4000] HELD [256]             training / held-out scenes (seeds 0 / 1)
#   STEPS_SM [8000] STEPS_ROOMS [12000]  optimiser steps per family (the learning rate anneals over all of
#                                        them); STEPS sets both. Sized from the measured ~106 (SM, K <= 7)
#                                        and ~163 (rooms, K <= 5) steps/min on one thread (docs/gqn.md)
#   SIGMA_STEPS [steps/4]                steps of the sigma annealing 2.0 -> 0.7
#   BATCH [16]                           scenes per step
#   MODEL_ARGS [""]                      extra `wm train gqn` options (e.g. "--hidden-channels 64")
#   MAX_CONTEXT_SM [7] MAX_CONTEXT_ROOMS [5]   largest training K per family
#   KMAX [5] EVAL_SCENES [256] SAMPLES [8]     `wm eval gqn` settings
#   THREADS [1]                          torch threads (on a shared 2-core VM one is faster, docs/gqn.md)
#   CKPT_EVERY [1000] EVAL_EVERY [steps/10]   checkpoint interval (what a kill can lose), held-out ELBO interval
set -euo pipefail
cd "$(dirname "$0")/.."
export MUJOCO_GL=${MUJOCO_GL:-egl}
ROOT=${1:-runs/gqn_quality}
FAMILIES=${FAMILIES:-"shepard-metzler rooms"}
SCENES=${SCENES:-4000}
HELD=${HELD:-256}
BATCH=${BATCH:-16}
MODEL_ARGS=${MODEL_ARGS:-}
KMAX=${KMAX:-5}
EVAL_SCENES=${EVAL_SCENES:-256}
SAMPLES=${SAMPLES:-8}
THREADS=${THREADS:-1}
CKPT_EVERY=${CKPT_EVERY:-1000}
export OMP_NUM_THREADS=$THREADS
WM="python -m agents.cli"
mkdir -p "$ROOT"

stamp() { date +%s; }

for family in $FAMILIES; do
  case $family in
    shepard-metzler) kmax_train=${MAX_CONTEXT_SM:-7}; STEPS_F=${STEPS:-${STEPS_SM:-8000}} ;;
    rooms) kmax_train=${MAX_CONTEXT_ROOMS:-5}; STEPS_F=${STEPS:-${STEPS_ROOMS:-12000}} ;;
    *) echo "gqn_quality_run.sh: unknown family '$family'; valid: shepard-metzler rooms" >&2; exit 2 ;;
  esac
  SIGMA_F=${SIGMA_STEPS:-$(( STEPS_F / 4 > 0 ? STEPS_F / 4 : 1 ))}
  EVAL_F=${EVAL_EVERY:-$(( STEPS_F / 10 > 0 ? STEPS_F / 10 : 1 ))}
  dir="$ROOT/$family"
  mkdir -p "$dir"
  log="$dir/timings.txt"

  t0=$(stamp)
  $WM data collect --source "$family" --scenes "$SCENES" --size 32 --seed 0 --workers 1 --quiet --out "$dir/train"
  $WM data collect --source "$family" --scenes "$HELD" --size 32 --seed 1 --workers 1 --quiet --out "$dir/held_out"
  t1=$(stamp)
  echo "$family data: $(( t1 - t0 )) s ($SCENES + $HELD scenes)" | tee -a "$log"

  if ls "$dir/run/checkpoints"/step_* >/dev/null 2>&1; then
    resume=(--resume)
  else
    resume=(--preset small --data "$dir/train" --val-data "$dir/held_out" --max-context "$kmax_train"
            --batch-size "$BATCH" --lr-anneal-steps "$STEPS_F" --sigma-anneal-steps "$SIGMA_F"
            --eval-every "$EVAL_F" --eval-batches 4 --image-every 0 --log-every 50)
  fi
  # shellcheck disable=SC2086  # MODEL_ARGS is a list of options
  $WM train gqn "${resume[@]}" --out "$dir/run" --steps "$STEPS_F" --ckpt-every "$CKPT_EVERY" \
    --threads "$THREADS" --no-progress $MODEL_ARGS >"$dir/train_summary.json"
  t2=$(stamp)
  python - "$dir/run" "$(( t2 - t1 ))" <<'EOF' | tee -a "$log"
import json, statistics, sys
from pathlib import Path
run, wall = Path(sys.argv[1]), int(sys.argv[2])
steps = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if '"kind": "train"' in l]
times = [r["time/step_s"] for r in steps if "time/step_s" in r][5:] or [float("nan")]
med = statistics.median(times)
print(f"{run.parent.name} train: {len(steps)} steps, this call {wall} s wall; median step {med:.4f} s "
      f"= {60 / med:.0f} steps/min (step time only, without eval/checkpoints)")
EOF

  out="$dir/eval_gqn.json"
  fresh=$(python - "$out" "$dir/run" <<'EOF'
import json, sys
from pathlib import Path
from worldmodel.checkpoint import read_checkpoint_config
out = Path(sys.argv[1])
step = read_checkpoint_config(sys.argv[2]).get("step")
print(int(out.is_file() and json.loads(out.read_text())["run"]["step"] == step))
EOF
)
  if [[ $fresh == 1 && -z ${FORCE_EVAL:-} ]]; then
    echo "skip $out (already evaluates the newest checkpoint; FORCE_EVAL=1 redoes it)"
  else
    $WM eval gqn --run "$dir/run" --data "$dir/held_out" --kmax "$KMAX" --scenes "$EVAL_SCENES" \
      --samples "$SAMPLES" --seed 0 --threads "$THREADS" --no-progress --out "$out"
  fi
  t3=$(stamp)
  echo "$family eval: $(( t3 - t2 )) s; total this call $(( t3 - t0 )) s" | tee -a "$log"
done
