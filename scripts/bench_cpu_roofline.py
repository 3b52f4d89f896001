#!/usr/bin/env python
"""How close the GQN training step runs to this CPU's convolution throughput (issue 14's speed goal).

Issue 14 asks the engine step at the paper config (batch 4, K = 5, 64 px, fp32, 2 threads) to run
>= 1.3x faster than the engine of the main it was filed against, with the canvas input added. A
step that already runs near the machine's convolution throughput cannot get 1.3x faster without
doing less arithmetic, so this script measures the three numbers that decide it:

1. the floating-point work of one training step (forward + backward), counted by
   ``torch.utils.flop_counter.FlopCounterMode`` on the real model and batch, with the share of
   each kind of layer (the Conv-LSTM gate convolutions dominate);
2. the throughput of the step's dominant convolution shape alone (same shapes, forward + both backward
   passes), fp32 and bf16 autocast: the practical ceiling a step made of such convolutions can reach;
3. the step itself (``model.loss`` -> backward -> fused Adam), fp32 and bf16 autocast.

Each timing is the median of ``--repeats`` repeats of ``--steps`` timed steps after a warm-up, in
this process. The report gives GFLOP/s and the step's fraction of the conv ceiling::

    PYTHONPATH=. python scripts/bench_cpu_roofline.py --json docs/figures/bench/cpu_roofline.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections import Counter
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from worldmodel.data.transfer import to_device
from worldmodel.models.registry import get_learner
from worldmodel.train.bench import _gqn_batches
from worldmodel.train.engine import resolve_configs


def _autocast(dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    return torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _median_seconds(fn: Any, steps: int, warmup: int, repeats: int) -> float:
    """Median over repeats of the mean seconds per call of ``fn``."""
    for _ in range(warmup):
        fn()
    per_call = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        per_call.append((time.perf_counter() - t0) / steps)
    return statistics.median(per_call)


def step_flops(model: nn.Module, batch: Any) -> tuple[int, dict[str, int]]:
    """FLOPs of one forward + backward of ``model.loss`` and the total per aten op."""
    counter = FlopCounterMode(display=False)
    with counter:
        model.loss(batch)["loss"].backward()
    model.zero_grad(set_to_none=True)
    per_op = {str(op): int(n) for op, n in counter.get_flop_counts()["Global"].items()}
    return int(counter.get_total_flops()), per_op


def largest_conv(model: nn.Module, batch: Any) -> dict[str, Any]:
    """The convolution shape that carries the most forward FLOPs, summed over the modules that share it.

    The unshared cores of the paper config are 12 modules each with one gate conv of the same shape,
    so grouping by shape (channels, kernel, stride, padding, input size) finds the gate convs, which
    no single module would."""
    flops: Counter[tuple[Any, ...]] = Counter()
    example: dict[tuple[Any, ...], tuple[str, nn.Conv2d, tuple[int, ...]]] = {}
    modules = {id(m): (name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        name, conv = modules[id(module)]
        shape = tuple(inputs[0].shape)
        key = (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.groups, shape)
        k = conv.kernel_size[0] * conv.kernel_size[1]
        flops[key] += 2 * output.numel() * (conv.in_channels // conv.groups) * k
        example.setdefault(key, (name, conv, shape))

    handles = [m.register_forward_hook(hook) for _, m in modules.values()]
    with torch.no_grad():
        model.loss(batch)
    for h in handles:
        h.remove()
    key, forward_flops = flops.most_common(1)[0]
    name, conv, shape = example[key]
    share = forward_flops / sum(flops.values())
    return {"name": name, "module": conv, "input_shape": shape, "forward_flop_share_of_convs": share}


def conv_throughput(conv: nn.Conv2d, shape: tuple[int, ...], dtype: torch.dtype | None, **timing: int) -> float:
    """GFLOP/s of forward + input-gradient + weight-gradient of ``conv`` on inputs of ``shape``."""
    x = torch.randn(shape, requires_grad=True)
    layer = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None
    )

    def once() -> None:
        with _autocast(dtype):
            y = layer(x)
        y.float().sum().backward()

    seconds = _median_seconds(once, **timing)
    with torch.no_grad():
        out_numel = layer(x).numel()
    forward = 2 * out_numel * conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
    return 3 * forward / seconds / 1e9


def step_seconds(model: nn.Module, batches: list[Any], dtype: torch.dtype | None, **timing: int) -> float:
    """Seconds per training step (loss, backward, fused Adam) under ``dtype`` autocast."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
    state = {"i": 0}

    def once() -> None:
        batch = batches[state["i"] % len(batches)]
        state["i"] += 1
        with _autocast(dtype):
            loss = model.loss(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return _median_seconds(once, **timing)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="paper")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--context", type=int, default=5)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=2, help="timed steps per repeat")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=None, help="write the figures here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    timing = {"steps": args.steps, "warmup": args.warmup, "repeats": args.repeats}
    model_cfg, _ = resolve_configs("gqn", args.preset, {"image_size": args.image_size}, {"batch_size": args.batch})
    torch.manual_seed(0)
    model = get_learner("gqn").build(model_cfg).train()
    batches = [
        to_device(b, torch.device("cpu")) for b in _gqn_batches(args.batch, args.image_size, args.context, None)[0]
    ]

    flops, per_op = step_flops(model, batches[0])
    conv_ops = sum(n for op, n in per_op.items() if "convolution" in op)
    big = largest_conv(model, batches[0])
    report: dict[str, Any] = {
        "config": vars(args) | {"torch": torch.__version__},
        "step_gflop": flops / 1e9,
        "conv_share_of_step_flops": conv_ops / flops,
        "flops_per_op": per_op,
        "largest_conv": {k: v for k, v in big.items() if k != "module"}
        | {"layer": repr(big["module"]), "input_shape": list(big["input_shape"])},
    }
    for label, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        ceiling = conv_throughput(big["module"], big["input_shape"], dtype, steps=5, warmup=2, repeats=args.repeats)
        seconds = step_seconds(model, batches, dtype, **timing)
        report[label] = {
            "conv_ceiling_gflops": ceiling,
            "step_s": seconds,
            "step_gflops": flops / seconds / 1e9,
            "fraction_of_ceiling": flops / seconds / 1e9 / ceiling,
        }
        print(
            f"{label}: step {seconds:.3f} s = {flops / seconds / 1e9:.1f} GFLOP/s; largest conv alone "
            f"{ceiling:.1f} GFLOP/s; step at {report[label]['fraction_of_ceiling']:.0%} of it",
            file=sys.stderr,
        )
    report["bf16_step_speedup"] = report["fp32"]["step_s"] / report["bf16"]["step_s"]
    print(json.dumps({k: v for k, v in report.items() if k != "flops_per_op"}, indent=2))
    if args.json:
        from worldmodel.atomic import atomic_write_json

        atomic_write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
