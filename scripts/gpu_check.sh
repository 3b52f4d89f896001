#!/usr/bin/env bash
# GPU check for issue 14: on a machine with one NVIDIA GPU and nothing preinstalled but the
# driver, install what is needed, then measure and write every figure into one folder:
#   1. the paper-config GQN bench at batch 36, bf16, compile off and on (wm train bench);
#   2. a torchrun launch with the NCCL backend, world size 1 (a short real training run);
#   3. a few minutes of training on a generated Shepard-Metzler dataset (steps/s, loss curve).
# Fits in ~10 minutes of GPU time. Without CUDA it stops with a clear message (exit 3).
#
#   bash scripts/gpu_check.sh [OUT]        (default OUT: wm_out/gpu_check)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-wm_out/gpu_check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
log() { echo "[gpu_check] $*" | tee -a "$OUT/log.txt"; }

source scripts/gpu_setup.sh  # GPU present (else exit 3), torch (CUDA) + toolkit installed

# 1. Paper-config bench (Tower, L = 12 unshared, 64 px), batch 36, bf16; compile off then on.
log "bench: paper config, batch 36, bf16, eager"
timeout 240 "$PY" -m agents.cli train bench --preset paper --device cuda --precision bf16 --batch-size 36 \
    --steps 30 --warmup 5 --repeats 3 --json "$OUT/bench_eager.json" 2>&1 | tee -a "$OUT/log.txt"
log "bench: paper config, batch 36, bf16, torch.compile"
timeout 300 "$PY" -m agents.cli train bench --preset paper --device cuda --precision bf16 --batch-size 36 \
    --steps 30 --warmup 10 --repeats 3 --compile --json "$OUT/bench_compile.json" 2>&1 | tee -a "$OUT/log.txt"

# 2 and 3. Generated data, then a torchrun (NCCL, world size 1) training run of a few minutes.
DATA="$OUT/data_sm"
if [ ! -f "$DATA/manifest.json" ]; then
    log "collecting 2000 Shepard-Metzler scenes at 64 px"
    MUJOCO_GL=egl timeout 300 "$PY" -m agents.cli data collect --source shepard-metzler --scenes 2000 --views 15 \
        --size 64 --out "$DATA" 2>&1 | tail -3 | tee -a "$OUT/log.txt" \
        || log "data collection failed (no EGL?): using the synthetic dataset"
fi
if [ ! -f "$DATA/manifest.json" ]; then
    "$PY" -c "from worldmodel.train.synthetic import write_synthetic_dataset as w; w('$DATA', scenes=2000, views=15, size=64, seed=1)"
fi
log "torchrun, NCCL, world size 1: paper-config training (bf16), up to 3000 steps or 4 minutes"
timeout 240 "$PY" -m torch.distributed.run --standalone --nproc_per_node 1 -m agents.cli train gqn \
    --data "$DATA" --out "$OUT/run_torchrun" --preset paper --precision bf16 --device cuda \
    --steps 3000 --log-every 20 --ckpt-every 2000 --no-progress 2>&1 | tail -5 | tee -a "$OUT/log.txt"
"$PY" - "$OUT" <<'PYEOF' | tee -a "$OUT/log.txt"
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
summary = {}
for name in ("bench_eager", "bench_compile"):
    p = out / f"{name}.json"
    if p.is_file():
        summary[name] = json.loads(p.read_text())
m = out / "run_torchrun" / "metrics.jsonl"
if m.is_file():
    recs = [json.loads(l) for l in m.read_text().splitlines() if l.strip().startswith("{")]
    train = [r for r in recs if r.get("kind") == "train"]
    if train:
        # metrics are read every --log-every steps (the device runs ahead in between): the rate is
        # steps over their summed time/step_s, which includes each read's wait for the device
        timed = train[10:] or train
        rate = len(timed) / sum(r["time/step_s"] for r in timed)
        summary["torchrun"] = {"steps": train[-1]["step"], "steps_per_s": rate,
                               "first_loss": train[0]["loss"], "last_loss": train[-1]["loss"]}
(out / "summary.json").write_text(json.dumps(summary, indent=2))
print(json.dumps(summary.get("torchrun", {}), indent=2))
PYEOF
log "done: figures in $OUT (summary.json, bench_*.json, log.txt)"
