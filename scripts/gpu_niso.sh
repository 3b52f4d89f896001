#!/usr/bin/env bash
# GPU run for issue 15: on a machine with one NVIDIA GPU and only its driver, train NISO's paper
# preset on the digits stand-in for the paper's 50k steps or as many as fit in TRAIN_S seconds
# (default 420), then run the official hmnist_pred classification (20k head steps, the raw-pixel
# reference beside it) on the newest checkpoint; every figure goes into one folder
# (summary.json: steps reached, steps/s, warped and clean accuracy). ~10 minutes of GPU time.
# Without CUDA it stops with a clear message (exit 3).
#
#   bash scripts/gpu_niso.sh [OUT]        (default OUT: wm_out/gpu_niso)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-wm_out/gpu_niso}
PY=${PYTHON:-python3}
TRAIN_S=${TRAIN_S:-420}
mkdir -p "$OUT"
log() { echo "[gpu_niso] $*" | tee -a "$OUT/log.txt"; }

source scripts/gpu_setup.sh  # GPU present (else exit 3), torch (CUDA) + toolkit installed

log "training NISO (paper preset, digits) for up to 50000 steps or ${TRAIN_S} s"
timeout "$TRAIN_S" "$PY" -m agents.cli train niso --preset paper --data digits --device cuda \
    --out "$OUT/niso_paper" --ckpt-every 1000 --log-every 100 --no-progress 2>&1 | tail -3 | tee -a "$OUT/log.txt"
log "hmnist_pred protocol (official: 20k head steps) on the newest checkpoint, with the raw-pixel reference"
timeout 240 "$PY" -m agents.cli eval niso hmnist "niso=$OUT/niso_paper" --device cuda --pixels --no-progress \
    --out "$OUT/hmnist.json" 2>&1 | tail -4 | tee -a "$OUT/log.txt"
"$PY" - "$OUT" <<'PYEOF' | tee -a "$OUT/log.txt"
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
summary = {}
m = out / "niso_paper" / "metrics.jsonl"
if m.is_file():
    train = [json.loads(l) for l in m.read_text().splitlines() if '"kind": "train"' in l]
    timed = train[100:] or train
    if timed:  # steps over their summed time (reads every --log-every steps include the device wait)
        summary["train"] = {"steps": train[-1]["step"], "steps_per_s": len(timed) / sum(r["time/step_s"] for r in timed),
                            "first_loss": train[0]["loss"], "last_loss": train[-1]["loss"]}
h = out / "hmnist.json"
if h.is_file():
    summary["hmnist_pred"] = [{k: r.get(k) for k in ("name", "step", "warped_accuracy", "clean_accuracy", "warped_images")}
                              for r in json.loads(h.read_text())["results"]]
(out / "summary.json").write_text(json.dumps(summary, indent=2))
print(json.dumps(summary, indent=2))
PYEOF
log "done: figures in $OUT (summary.json, hmnist.json, niso_paper/, log.txt)"
