set -e
export MUJOCO_GL=egl OMP_NUM_THREADS=1
for arm in legacy port; do
  if [ $arm = legacy ]; then opts="--std-activation softplus --query-input space_to_depth"; else opts="--std-activation exp --query-input conv"; fi
  [ -f runs/gqn_param/$arm.json ] && continue
  python -m agents.cli train gqn --preset small --data runs/gqn_quality/shepard-metzler/train --val-data runs/gqn_quality/shepard-metzler/held_out --max-context 7 --batch-size 16     --lr-anneal-steps 3000 --sigma-anneal-steps 750 --eval-every 500 --eval-batches 4 --image-every 0 --log-every 50     --out runs/gqn_param/$arm --steps 3000 --ckpt-every 1000 --threads 1 --no-progress --seed 0 $opts > runs/gqn_param/$arm.summary.json
  python -m agents.cli eval gqn --run runs/gqn_param/$arm --data runs/gqn_quality/shepard-metzler/held_out --kmax 5 --scenes 256 --samples 8 --out runs/gqn_param/$arm.json
done
