#!/usr/bin/env python
"""Engine overhead: the GQN step through ``Trainer`` against a bare forward + backward + Adam loop.

Issue 14's CPU goals at the paper config (Tower, L = 12, 64 px) at batch 4, K = 5, fp32, 2 threads:
the engine step within 5% of a bare loop over the same model and batches, and >= 1.3x faster than
the engine step of the main the issue was filed against (``--baseline-tree``, a checkout of it).
Every measurement runs in a fresh subprocess; the modes are interleaved round by round and the
report gives each mode's per-round steps/s and their median, and the ratios of medians.

    git worktree add /tmp/wm_before 567ec86
    python scripts/bench_engine_overhead.py --baseline-tree /tmp/wm_before --json docs/figures/bench/engine.json

Modes: ``bare`` (``model.loss`` -> ``backward`` -> ``torch.optim.Adam`` with its default
implementation), ``bare_fused`` (the same with the fused Adam kernel the engine now uses),
``engine`` (``wm train bench``'s code path: the real ``Trainer`` on in-memory batches),
``engine_bf16`` (the same under bf16 autocast, with ``--bf16``; fp32 is the CPU default) and
``baseline`` (the engine of ``--baseline-tree``, fp32).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODES = ("bare", "bare_fused", "engine", "engine_bf16", "baseline")


def bare_loop(args: argparse.Namespace, fused: bool) -> list[float]:
    """Seconds per timed step of a bare loop over the engine's model and benchmark batches."""
    import torch

    from worldmodel.data.transfer import to_device
    from worldmodel.models.registry import get_learner
    from worldmodel.train.bench import _gqn_batches
    from worldmodel.train.engine import resolve_configs

    torch.set_num_threads(args.threads)
    model_cfg, cfg = resolve_configs("gqn", args.preset, {"image_size": args.image_size}, {"batch_size": args.batch})
    torch.manual_seed(0)
    model = get_learner("gqn").build(model_cfg).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=fused or None)
    batches, _ = _gqn_batches(args.batch, args.image_size, args.context, None)
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        out = model.loss(to_device(batches[i % len(batches)], torch.device("cpu")))
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return times[args.warmup :]


def engine_cmd(args: argparse.Namespace, result: Path, precision: str = "fp32") -> list[str]:
    """The subprocess entry of ``wm train bench`` (present in both trees) for one run."""
    return [
        sys.executable,
        "-m",
        "worldmodel.train.bench",
        "--preset",
        args.preset,
        "--result",
        str(result),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--repeats",
        "1",
        "--batch-size",
        str(args.batch),
        "--context",
        str(args.context),
        "--image-size",
        str(args.image_size),
        "--threads",
        str(args.threads),
        "--device",
        "cpu",
        "--precision",
        precision,
    ]


def measure(mode: str, args: argparse.Namespace) -> float:
    """Steps/s of one fresh-process run of ``mode``."""
    with tempfile.TemporaryDirectory(prefix="wm-overhead-") as tmp:
        result = Path(tmp) / "r.json"
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        if mode in ("bare", "bare_fused"):
            cmd = [sys.executable, __file__, "--one", mode, "--result", str(result), *_shared(args)]
            cwd = ROOT
        else:
            cmd, cwd = engine_cmd(args, result, "bf16" if mode == "engine_bf16" else "fp32"), ROOT
            if mode == "baseline":
                cwd = Path(args.baseline_tree)
                env["PYTHONPATH"] = str(cwd)  # its worldmodel shadows this checkout's
        subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
        return float(json.loads(result.read_text())["steps_per_s"])


def _shared(args: argparse.Namespace) -> list[str]:
    out = []
    for name in ("preset", "batch", "context", "image_size", "threads", "steps", "warmup"):
        out += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="paper")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--context", type=int, default=5)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=3, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (each runs every mode once)")
    p.add_argument("--baseline-tree", default=None, help="checkout of the main to compare the engine step against")
    p.add_argument("--json", default=None, help="write the figures here")
    p.add_argument("--bf16", action="store_true", help="also run the engine under bf16 autocast (engine_bf16)")
    p.add_argument("--one", choices=("bare", "bare_fused"), help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        times = bare_loop(args, fused=args.one == "bare_fused")
        Path(args.result).write_text(json.dumps({"steps_per_s": len(times) / sum(times)}))
        return 0
    modes = [m for m in MODES if (m != "baseline" or args.baseline_tree) and (m != "engine_bf16" or args.bf16)]
    rates: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(args.rounds):
        for mode in modes:
            rates[mode].append(measure(mode, args))
            print(f"[round {r + 1}/{args.rounds}] {mode:<10} {rates[mode][-1]:.4f} steps/s", file=sys.stderr)
    med = {m: statistics.median(v) for m, v in rates.items()}
    summary: dict[str, Any] = {
        "config": {k: v for k, v in vars(args).items() if k not in ("one", "result", "json")},
        "steps_per_s": rates,
        "median_steps_per_s": med,
        "engine_overhead_vs_bare": med["bare"] / med["engine"] - 1.0,
        "engine_overhead_vs_bare_fused": med["bare_fused"] / med["engine"] - 1.0,
    }
    if "baseline" in med:
        summary["engine_speedup_vs_baseline"] = med["engine"] / med["baseline"]
        if "engine_bf16" in med:
            summary["engine_bf16_speedup_vs_baseline"] = med["engine_bf16"] / med["baseline"]
    print(json.dumps(summary, indent=2))
    if args.json:
        from worldmodel.atomic import atomic_write_json

        atomic_write_json(args.json, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
