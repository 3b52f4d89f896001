"""Benchmark: GQN / pair loader throughput (samples/s) from a dataset on disk, 0/1/2 workers.

    python scripts/bench_loader.py                       # synthetic rooms-like data (10 views, 64 px)
    python scripts/bench_loader.py --data DIR --batch-size 36 --batches 40 --repeats 5

Each configuration is timed ``--repeats`` times (a fresh loader each time; the first batch,
which includes worker start-up, is excluded and reported separately); the median samples/s is
printed. Reads go through the page cache (dropping it would disturb other users of the machine),
so the figures are for a warm cache unless the dataset is larger than RAM.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from envs.scenes import SceneRecord
from worldmodel.data.loader import make_gqn_loader, make_pair_loader
from worldmodel.data.reader import SceneDataset
from worldmodel.data.writer import write_scenes


def synthetic_dataset(root: Path, scenes: int, views: int, size: int) -> Path:
    """Random frames (incompressible) and cameras on a ring, written with the real writer."""
    rng = np.random.default_rng(0)

    def records():
        for _ in range(scenes):
            yaw = np.sort(rng.uniform(-np.pi, np.pi, views))
            cams = np.stack([2 * np.cos(yaw), 2 * np.sin(yaw), np.full(views, 1.0), yaw, np.full(views, -0.3)], 1)
            yield SceneRecord(rng.integers(0, 256, (views, size, size, 3), dtype=np.uint8), cams.astype(np.float32))

    return write_scenes(root, records(), shard_size=256, scenes=scenes, source="synthetic-rooms")


def time_loader(make, batches: int, repeats: int) -> dict[str, float]:
    """Median samples/s over ``repeats`` passes of ``batches`` batches (first batch excluded)."""
    rates, startups = [], []
    for r in range(repeats):
        loader = make(r)
        t0 = time.perf_counter()
        it = iter(loader)
        first = next(it)
        startups.append(time.perf_counter() - t0)
        bs = next(iter(first.values())).shape[0]
        n, t1 = 0, time.perf_counter()
        for _ in range(batches):
            try:
                next(it)
            except StopIteration:
                break
            n += bs
        rates.append(n / (time.perf_counter() - t1))
        del it, loader
    return {
        "samples_per_s": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "startup_s": statistics.median(startups),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="dataset directory (default: make a synthetic one)")
    parser.add_argument("--scenes", type=int, default=1000, help="synthetic scenes")
    parser.add_argument("--views", type=int, default=10, help="synthetic views per scene")
    parser.add_argument("--size", type=int, default=64, help="synthetic image size")
    parser.add_argument("--batch-size", type=int, default=36, help="GQN paper batch size")
    parser.add_argument("--max-context", type=int, default=5, help="GQN context views (rooms: 5)")
    parser.add_argument("--batches", type=int, default=40, help="timed batches per pass")
    parser.add_argument("--repeats", type=int, default=5, help="passes per configuration (median)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="num_workers values")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data) if args.data else synthetic_dataset(Path(tmp) / "ds", args.scenes, args.views, args.size)
        ds = SceneDataset(root)
        info = ds.info
        print(
            f"dataset {root}: {info['scenes']} scenes, {info['views']} views, {info['size']} px, "
            f"{info['bytes'] / 2**20:.0f} MiB; batch {args.batch_size}; {args.batches} batches x {args.repeats} runs"
        )
        results = []
        for kind in ("gqn", "pairs"):
            for w in args.workers:
                if kind == "gqn":

                    def make(r, w=w):
                        return make_gqn_loader(ds, args.batch_size, max_context=args.max_context, seed=r, num_workers=w)
                else:

                    def make(r, w=w):
                        return make_pair_loader(ds, args.batch_size, skips=(1, 3), seed=r, num_workers=w)

                res = {"loader": kind, "num_workers": w, **time_loader(make, args.batches, args.repeats)}
                results.append(res)
                print(
                    f"{kind:>5}  workers={w}  {res['samples_per_s']:9.0f} samples/s  "
                    f"(min {res['min']:.0f}, max {res['max']:.0f}; first batch {res['startup_s'] * 1000:.0f} ms)"
                )
        if args.json:
            meta = {
                "machine": platform.machine(),
                "python": platform.python_version(),
                "torch": torch.__version__,
                "dataset": info,
                "batch_size": args.batch_size,
                "max_context": args.max_context,
            }
            Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=1))


if __name__ == "__main__":
    main()
