"""Training-speed benchmark: steps/s, scenes/s and peak memory of the real engine.

Each configuration runs in a fresh subprocess (so the peak RSS on CPU belongs to it alone)
through :class:`~worldmodel.train.engine.Trainer` on in-memory random batches of the data
contract's shapes (no disk reads: this measures the model, optimiser, host-to-device copies and
the engine's own overhead). After ``warmup`` steps, the ``steps`` timed steps are cut into
``repeats`` consecutive runs; the report gives the median over runs (and the spread).

``wm train bench --preset small paper`` (or ``python scripts/bench_train.py ...``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def run_one(
    learner: str,
    preset: str,
    steps: int,
    warmup: int,
    repeats: int,
    device: str = "auto",
    precision: str = "auto",
    compile: bool = False,
    batch_size: int | None = None,
    context: int | None = None,
    image_size: int | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Benchmark one configuration in this process; returns the figures."""
    import torch

    from worldmodel.models.registry import get_learner
    from worldmodel.train.data import RunData
    from worldmodel.train.engine import Trainer, peak_memory_mb, resolve_configs
    from worldmodel.train.logger import read_metrics
    from worldmodel.train.synthetic import InMemoryLoader, random_pair_batch

    spec = get_learner(learner)
    model_over: dict[str, Any] = {}
    size = image_size or spec.make_config(preset).image_size or 64
    model_over["image_size"] = size
    total = warmup + steps
    with tempfile.TemporaryDirectory(prefix="wm-bench-") as tmp:
        train_over = {
            "steps": total,
            "out": tmp,
            "device": device,
            "precision": precision,
            "compile": compile,
            "eval_every": 0,
            "image_every": 0,
            "ckpt_every": 0,
            "progress": False,
            # metrics are read (the host waits for the device) at every chunk boundary, so each
            # repeat's summed step times cover its steps' device work
            "log_every": math.gcd(warmup, max(1, steps // max(1, repeats))),
            "threads": threads or 0,
        }
        if batch_size:
            train_over["batch_size"] = batch_size
        model_cfg, train_cfg = resolve_configs(learner, preset, model_over, train_over)
        b = train_cfg.batch_size
        if spec.loader == "gqn":
            batches, k = _gqn_batches(b, size, context, getattr(model_cfg, "max_context", None))
        else:
            k = None
            batches = [random_pair_batch(b, size, seed=i) for i in range(4)]
        data = RunData(InMemoryLoader(batches, epoch_length=total), None, {"image_size": size})
        trainer = Trainer(learner, model_cfg, train_cfg, run_data=data, preset=preset)
        trainer.fit()
        times = [r["time/step_s"] for r in read_metrics(tmp, "train")][warmup:]
        params = sum(p.numel() for p in trainer.model.parameters())
        device_used = str(trainer.device)
        peak = peak_memory_mb(trainer.device)
    per_run = _chunks(times, repeats)
    rates = [len(c) / sum(c) for c in per_run if c]
    med = statistics.median(rates)
    return {
        "learner": learner,
        "preset": preset,
        "device": device_used,
        "precision": trainer.precision,
        "image_size": size,
        "batch_size": b,
        "context_views": k,
        "parameters": params,
        "model": {k2: v for k2, v in vars(trainer.model_config).items()},
        "warmup_steps": warmup,
        "timed_steps": len(times),
        "runs": len(rates),
        "steps_per_s": med,
        "steps_per_s_min": min(rates),
        "steps_per_s_max": max(rates),
        "scenes_per_s": med * b,
        "peak_memory_mb": peak,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


#: Largest context of the benchmark's K distribution when the model config sets none (the GQN
#: ports' Jaco value; Shepard-Metzler uses 15, rooms 5).
BENCH_MAX_CONTEXT = 7


def _gqn_batches(batch: int, size: int, context: int | None, max_context: int | None) -> tuple[list[Any], Any]:
    """Random GQN batches and a description of their context sizes.

    As in training, each batch draws its K uniformly in 1..max_context (the step cost grows with K),
    unless ``context`` fixes it. 16 batches, cycled, with K from a fixed seed."""
    import numpy as np

    from worldmodel.train.synthetic import random_gqn_batch

    if context:
        return [random_gqn_batch(batch, context, size, seed=i) for i in range(4)], context
    kmax = max_context or BENCH_MAX_CONTEXT
    ks = np.random.default_rng(0).integers(1, kmax + 1, size=16)
    batches = [random_gqn_batch(batch, int(k), size, seed=i) for i, k in enumerate(ks)]
    return batches, f"1..{kmax}"  # uniform; the table's K column


def _chunks(values: list[float], n: int) -> list[list[float]]:
    n = max(1, min(n, len(values)))
    size = len(values) // n
    return [values[i * size : (i + 1) * size] for i in range(n)]


def bench(
    learner: str, presets: list[str], steps: int, warmup: int, repeats: int, **kwargs: Any
) -> list[dict[str, Any]]:
    """Benchmark each preset in its own subprocess; returns one result dict per preset."""
    results = []
    for preset in presets:
        with tempfile.TemporaryDirectory(prefix="wm-bench-out-") as tmp:
            out = Path(tmp) / "result.json"
            cmd = [
                sys.executable,
                "-m",
                "worldmodel.train.bench",
                "--learner",
                learner,
                "--preset",
                preset,
                "--steps",
                str(steps),
                "--warmup",
                str(warmup),
                "--repeats",
                str(repeats),
                "--result",
                str(out),
            ]
            for key, value in kwargs.items():
                if value is None or value is False:
                    continue
                flag = "--" + key.replace("_", "-")
                cmd += [flag] if value is True else [flag, str(value)]
            proc = subprocess.run(cmd, env={**os.environ}, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"benchmark of preset {preset!r} failed:\n{proc.stderr[-4000:]}")
            results.append(json.loads(out.read_text()))
    return results


def format_table(results: list[dict[str, Any]]) -> str:
    """A plain-text table of benchmark results."""
    head = (
        f"{'learner':8} {'preset':7} {'device':7} {'prec':5} {'size':>4} {'batch':>5} {'K':>5} "
        f"{'params':>9} {'steps/s':>9} {'scenes/s':>9} {'peak MiB':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r['learner']:8} {r['preset']:7} {r['device']:7} {r['precision']:5} {r['image_size']:>4} "
            f"{r['batch_size']:>5} {str(r['context_views']):>5} {r['parameters']:>9,} {r['steps_per_s']:>9.3f} "
            f"{r['scenes_per_s']:>9.2f} {r['peak_memory_mb']:>9.0f}"
        )
    return "\n".join(lines)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--learner", default="gqn", help="registered learner to benchmark (default: gqn)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per configuration (default: 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    p.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="the timed steps are cut into this many runs; the median is reported (default: 5)",
    )
    p.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda' or 'cuda:N' (default: auto)")
    p.add_argument(
        "--precision", default="auto", choices=["auto", "fp32", "bf16"], help="(default: auto: bf16 on CUDA)"
    )
    p.add_argument("--compile", action="store_true", help="use torch.compile")
    p.add_argument("--batch-size", type=int, default=None, help="override the preset's batch size")
    p.add_argument(
        "--context",
        type=int,
        default=None,
        help=f"fix the context views per scene (default: K uniform in 1..max_context per batch, as in training; "
        f"max_context {BENCH_MAX_CONTEXT} when the preset sets none)",
    )
    p.add_argument("--image-size", type=int, default=None, help="image size (default: the preset's, else 64)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def add_bench_parser(sub: Any) -> None:
    """Add ``wm train bench``."""
    p = sub.add_parser(
        "bench",
        help="benchmark training speed (steps/s, scenes/s, peak memory)",
        description=__doc__.split("\n\n")[0] + ". Each preset runs in a fresh subprocess.",
    )
    p.add_argument(
        "--preset",
        nargs="+",
        default=None,
        help="presets to benchmark (default: all of the learner's presets on a GPU, its default preset on a CPU)",
    )
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    _add_common(p)
    p.set_defaults(handler=handle_bench)


def handle_bench(args: argparse.Namespace) -> int:
    """Handler of ``wm train bench``."""
    if args.steps < 1 or args.repeats < 1 or args.warmup < 0:
        raise ValueError("--steps and --repeats must be >= 1 and --warmup >= 0")
    presets = args.preset
    if presets is None:
        import torch

        from worldmodel.models.registry import get_learner

        spec = get_learner(args.learner)
        on_gpu = torch.cuda.is_available() and args.device != "cpu"
        presets = list(spec.presets) if on_gpu else [spec.default_preset]
        if not on_gpu and len(spec.presets) > 1:
            print(
                f"note: on a CPU only the default preset {spec.default_preset!r} runs; name others with --preset "
                "(e.g. --preset paper --batch-size 4 --steps 3: GPU presets take minutes per step here)",
                file=sys.stderr,
            )
    results = bench(
        args.learner,
        presets,
        args.steps,
        args.warmup,
        args.repeats,
        device=args.device,
        precision=args.precision,
        compile=args.compile,
        batch_size=args.batch_size,
        context=args.context,
        image_size=args.image_size,
        threads=args.threads,
    )
    print(format_table(results))
    if args.json:
        from worldmodel.atomic import atomic_write_json

        atomic_write_json(args.json, results)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Subprocess entry: benchmark one preset and write its result JSON."""
    p = argparse.ArgumentParser(prog="python -m worldmodel.train.bench")
    p.add_argument("--preset", required=True)
    p.add_argument("--result", required=True)
    _add_common(p)
    a = p.parse_args(argv)
    res = run_one(
        a.learner,
        a.preset,
        a.steps,
        a.warmup,
        a.repeats,
        a.device,
        a.precision,
        a.compile,
        a.batch_size,
        a.context,
        a.image_size,
        a.threads,
    )
    Path(a.result).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
