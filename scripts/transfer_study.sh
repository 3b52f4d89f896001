#!/usr/bin/env bash
# The sim-to-real alignment study of docs/transfer.md, end to end, resumable (rerun to continue).
#   bash scripts/transfer_study.sh [OUT]      (default wm_out/transfer; ~75 min on a 2-core CPU)
# 1. perception modules: the supervised state encoder trained on sim rollouts, and the same on
#    randomised-domain rollouts (domain randomisation);
# 2. five DAgger agents per encoder, trained in sim on the frozen encoder;
# 3. the study: every method on `real` and `real-hard` (encoder measures, policy transfer), report.
set -euo pipefail
cd "$(dirname "$0")/.."
export MUJOCO_GL=${MUJOCO_GL:-egl}
OUT=${1:-wm_out/transfer}
SEEDS=${SEEDS:-5}
for d in sim randomised; do
    [ -f "$OUT/perception_$d/checkpoint/config.json" ] || wm align perception --domain "$d" --out "$OUT/perception_$d"
done
for d in sim randomised; do
    for s in $(seq 0 $((SEEDS - 1))); do
        wm transfer dagger --encoder "$OUT/perception_$d/checkpoint" --out "$OUT/agents_$d/s$s" --seed "$s"
    done
done
wm transfer study --out "$OUT/study" --encoder "$OUT/perception_sim/checkpoint" --agents "$OUT/agents_sim" \
    --encoder-randomised "$OUT/perception_randomised/checkpoint" --agents-randomised "$OUT/agents_randomised" \
    --seeds "$SEEDS"
