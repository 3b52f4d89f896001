"""Benchmark NISO training: steps/s and the share of time spent in the SVD (CPU or CUDA).

What is measured:

1. Training step time (forward + backward + Adam) of :class:`worldmodel.models.niso.Niso` on
   real homography-digit pairs (or random 64x64 RGB pairs for the ``scenes`` architecture),
   median over ``--repeats`` runs of ``--steps`` steps after ``--warmup`` steps.
2. The share of step time spent in the SVDs (``torch.linalg.svd`` forward: the closed-form
   ``tau`` over the batch and the eigenbasis projection) and in the hand-written backward of the
   SO(k) projection, from ``torch.profiler`` over ``--profile-steps`` steps.
3. Batched SVD versus a Python loop over the samples, for the ``[B, k, k]`` polar projection
   alone (forward + backward).

Usage::

    python scripts/bench_niso.py --arch small --threads 1
    python scripts/bench_niso.py --arch paper --device cuda

Prints a table and one JSON object (``--json FILE`` writes it).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _batches(model, batch_size: int, n: int, device):
    """``n`` training batches on ``device`` (digits for grey models, random RGB for colour ones)."""
    import torch

    from worldmodel.data.homography import HomographyPairConfig, HomographyPairLoader

    cfg = model.config
    if cfg.in_channels == 1:
        loader = HomographyPairLoader(HomographyPairConfig(size=cfg.image_size, batch_size=batch_size))
        it = iter(loader)
        out = [next(it) for _ in range(n)]
    else:
        gen = torch.Generator().manual_seed(0)
        shape = (batch_size, cfg.image_size, cfg.image_size, 3)
        out = [
            {
                "frame_a": torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8),
                "frame_b": torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8),
            }
            for _ in range(n)
        ]
    return [{k: v.to(device) for k, v in b.items()} for b in out]


def bench_training(
    arch: str, batch_size: int, steps: int, warmup: int, repeats: int, profile_steps: int, device
) -> dict[str, Any]:
    """Step times and SVD share of one architecture."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from worldmodel.models.niso import build_niso

    torch.manual_seed(0)
    model = build_niso(arch).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = _batches(model, batch_size, 4, device)

    def step(i: int) -> None:
        out = model.loss(batches[i % len(batches)])
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()

    for i in range(warmup):
        step(i)
    runs = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        for i in range(steps):
            step(i)
        _sync(device)
        runs.append((time.perf_counter() - t0) / steps)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for i in range(profile_steps):
            step(i)
        _sync(device)
    events = prof.key_averages()
    use_cuda = device.type == "cuda"

    def self_time(e) -> float:  # microseconds
        return float(getattr(e, "self_device_time_total" if use_cuda else "self_cpu_time_total", 0.0) or 0.0)

    total = sum(self_time(e) for e in events) or 1.0
    svd = sum(self_time(e) for e in events if "svd" in e.key.lower())
    polar_bwd_events = [e for e in events if e.key == "_PolarProjectionBackward"]
    polar_bwd = sum(float(e.cpu_time_total) for e in polar_bwd_events)  # inclusive CPU time of the custom backward
    cpu_total = sum(float(e.self_cpu_time_total) for e in events) or 1.0
    median = statistics.median(runs)
    return {
        "arch": arch,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in model.config.__dict__.items()},
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch_size": batch_size,
        "step_s_median": median,
        "step_s_runs": runs,
        "steps_per_s": 1.0 / median,
        "svd_forward_share": svd / total,
        "polar_backward_share": polar_bwd / cpu_total,
        "timer": "device" if use_cuda else "cpu",
    }


def bench_batched_svd(batch_size: int, k: int, repeats: int, device) -> dict[str, Any]:
    """Polar projection of ``[B, k, k]`` (forward + backward): one batched call vs a loop over samples."""
    import torch

    from worldmodel.models.isometry import polar_project

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, k, k, generator=gen).to(device)
    w = torch.randn(k, k, generator=gen).to(device)

    def batched() -> None:
        y = x.clone().requires_grad_()
        (polar_project(y, special=True) * w).sum().backward()

    def looped() -> None:
        y = x.clone().requires_grad_()
        sum((polar_project(y[i : i + 1], special=True) * w).sum() for i in range(batch_size)).backward()

    out = {}
    for name, fn in (("batched", batched), ("loop", looped)):
        fn()
        times = []
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t0)
        out[f"{name}_ms"] = 1000 * statistics.median(times)
    out["speedup"] = out["loop_ms"] / out["batched_ms"]
    out.update(batch_size=batch_size, k=k)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    from worldmodel.models.niso import ARCHITECTURES

    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--arch",
        nargs="+",
        default=["small"],
        choices=list(ARCHITECTURES),
        help="architectures to benchmark (default: small)",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per step (paper: 16)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per repeat")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (the median is reported)")
    parser.add_argument("--profile-steps", type=int, default=5, help="steps under torch.profiler for the SVD share")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        },
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "training": [],
    }
    print(f"{'arch':<8} {'params':>9} {'batch':>5} {'step ms':>9} {'steps/s':>8} {'SVD fwd':>8} {'polar bwd':>9}")
    for arch in args.arch:
        r = bench_training(arch, args.batch_size, args.steps, args.warmup, args.repeats, args.profile_steps, device)
        results["training"].append(r)
        print(
            f"{arch:<8} {r['parameters']:>9} {r['batch_size']:>5} {1000 * r['step_s_median']:>9.1f} "
            f"{r['steps_per_s']:>8.2f} {100 * r['svd_forward_share']:>7.2f}% {100 * r['polar_backward_share']:>8.2f}%"
        )
    k = max(ARCHITECTURES[a]["rank"] for a in args.arch)
    s = bench_batched_svd(args.batch_size, k, max(5, args.repeats), device)
    results["polar_projection"] = s
    print(
        f"polar projection [B={s['batch_size']}, k={s['k']}] fwd+bwd: batched {s['batched_ms']:.2f} ms, "
        f"loop over samples {s['loop_ms']:.2f} ms ({s['speedup']:.1f}x)"
    )
    text = json.dumps(results, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
