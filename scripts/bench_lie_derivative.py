"""Speed of forward-mode Lie derivatives vs the double-VJP baseline, and their agreement with
finite differences (docs/benchmarks.md, "Lie derivative").

Model: the strided digit CNN of worldmodel.diagnostics.aliasing (conv-BN-ReLU, 40x40 grey
inputs), random weights in eval mode, softmax outputs, float32 on the CPU. Per repeat, every
method runs once on the same batch (order alternating between repeats); the table reports
medians over repeats of CPU milliseconds per image and of the ratio baseline / forward mode
within each repeat.

    OMP_NUM_THREADS=1 python scripts/bench_lie_derivative.py --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worldmodel.diagnostics.aliasing import digit_cnn  # noqa: E402
from worldmodel.diagnostics.lie_derivative import (  # noqa: E402
    forward_mode_model,
    lie_derivative,
    local_equivariance_error,
)
from worldmodel.diagnostics.transforms import GEOMETRIC_NAMES, TRANSFORM_NAMES  # noqa: E402


def _cpu_ms(fn) -> tuple[float, float]:
    t0, w0 = time.process_time(), time.perf_counter()
    fn()
    return 1e3 * (time.process_time() - t0), 1e3 * (time.perf_counter() - w0)


def agreement(seed: int = 0) -> dict[str, float]:
    """Relative difference |forward - central FD| / |forward| per transform (float64, h = 1e-6)."""
    torch.manual_seed(seed)
    net = digit_cnn("strided", in_channels=3).double().eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.normal_(1, 0.1)
                m.bias.normal_(0, 0.1)
    x = torch.rand(8, 3, 40, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    out = {}
    for name in TRANSFORM_NAMES:
        fwd = lie_derivative(net, x, name, head="softmax")
        fd = lie_derivative(net, x, name, head="softmax", method="finite_difference")
        out[name] = float((fwd - fd).norm() / fwd.norm())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--variant", default="strided", choices=("strided", "blurpool"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = digit_cnn(args.variant).eval()
    for q in net.parameters():
        q.requires_grad_(False)
    x = torch.rand(args.batch, 1, 40, 40, generator=torch.Generator().manual_seed(1))
    names = [*GEOMETRIC_NAMES, "brightness"]
    folded = forward_mode_model(net)
    methods = {
        # one transform
        "1 transform: forward mode (jvp)": lambda: lie_derivative(net, x, "rotate", head="softmax"),
        "1 transform: double VJP through the sampler": lambda: lie_derivative(
            net, x, "rotate", head="softmax", method="double_vjp"
        ),
        # all transforms of a batch
        f"{len(names)} transforms: forward mode (vmap over transforms)": lambda: local_equivariance_error(
            net, x, names, head="softmax", batch_size=args.batch, progress=False
        ),
        f"{len(names)} transforms: one jvp per transform": lambda: [
            lie_derivative(net, x, n, head="softmax") for n in names
        ],
        f"{len(names)} transforms: double VJP per transform (original)": lambda: [
            lie_derivative(net, x, n, head="softmax", method="double_vjp") for n in names
        ],
        f"{len(names)} transforms: double VJP per transform, BN folded": lambda: [
            lie_derivative(folded, x, n, head="softmax", method="double_vjp") for n in names
        ],
    }
    keys = list(methods)
    for k in keys:  # warm-up (first-call costs: imports, allocator)
        methods[k]()
    cpu: dict[str, list[float]] = {k: [] for k in keys}
    wall: dict[str, list[float]] = {k: [] for k in keys}
    for r in range(args.repeats):
        order = keys if r % 2 == 0 else keys[::-1]
        for k in order:
            c, w = _cpu_ms(methods[k])
            cpu[k].append(c / args.batch)
            wall[k].append(w / args.batch)

    def ratio(base: str, ours: str) -> float:
        return statistics.median(b / o for b, o in zip(cpu[base], cpu[ours], strict=True))

    print(
        f"digit CNN ({args.variant}), batch {args.batch}, float32, {args.threads} thread(s), {args.repeats} repeats; "
        f"{time.strftime('%Y-%m-%d %H:%M')}"
    )
    print("| method | CPU ms / image (median) | wall ms / image (median) |")
    print("|---|---|---|")
    for k in keys:
        print(f"| {k} | {statistics.median(cpu[k]):.3f} | {statistics.median(wall[k]):.3f} |")
    print(f"ratio double VJP / jvp, 1 transform: {ratio(keys[1], keys[0]):.2f}")
    print(f"ratio double VJP (original) / forward mode, {len(names)} transforms: {ratio(keys[4], keys[2]):.2f}")
    print(f"ratio double VJP (BN folded) / forward mode, {len(names)} transforms: {ratio(keys[5], keys[2]):.2f}")
    print(f"ratio one jvp per transform / vmap, {len(names)} transforms: {ratio(keys[3], keys[2]):.2f}")
    agree = agreement()
    print("finite-difference agreement (float64, relative):", ", ".join(f"{k} {v:.1e}" for k, v in agree.items()))
    print(f"max {max(agree.values()):.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
