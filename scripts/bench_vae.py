"""Training speed of the VAE learner on the real engine with the procedural shapes (rendered on demand).

    python scripts/bench_vae.py --threads 2 --runs 3 --steps 30 [--device cuda] [--batch-size 64]

Each run is a fresh ``Trainer`` (preset ``small``: the paper's 64 px dSprites network) of
``warmup + steps`` steps; the step times after the warm-up come from ``metrics.jsonl`` (they
include rendering the batch and the update, not evaluation or checkpoints). Prints one JSON
record: median steps/s over runs, the per-run figures, and the machine's load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="small")
    args = parser.parse_args()

    from worldmodel.train.engine import Trainer, resolve_configs
    from worldmodel.train.logger import read_metrics

    per_run = []
    load_before = os.getloadavg()
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="wm-bench-vae-") as tmp:
            model_cfg, cfg = resolve_configs(
                "vae",
                args.preset,
                {},
                {
                    "out": tmp,
                    "steps": args.warmup + args.steps,
                    "batch_size": args.batch_size,
                    "device": args.device,
                    "threads": args.threads,
                    "eval_every": 0,
                    "image_every": 0,
                    "ckpt_every": 0,
                    "log_every": 0,
                    "progress": False,
                    "seed": run,
                },
            )
            t0 = time.perf_counter()
            Trainer("vae", model_cfg, cfg, preset=args.preset).fit()
            wall = time.perf_counter() - t0
            times = [r["time/step_s"] for r in read_metrics(tmp, "train")][args.warmup :]
            per_run.append(
                {"steps_per_s": len(times) / sum(times), "median_step_s": statistics.median(times), "wall_s": wall}
            )
    print(
        json.dumps(
            {
                "preset": args.preset,
                "batch_size": args.batch_size,
                "device": args.device,
                "threads": args.threads,
                "steps_per_s_median": statistics.median(r["steps_per_s"] for r in per_run),
                "runs": per_run,
                "loadavg_before": load_before,
                "loadavg_after": os.getloadavg(),
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
