"""Wall-clock time of each disentanglement metric (docs/disentanglement.md, "Speed").

Two settings:

* ``synthetic``: the 4-factor synthetic dataset (3, 4, 5, 6 classes; 4x4 observations) with the
  true factors as the representation: the metrics' own cost (classifiers, votes), nearly no encoding;
* ``shapes64``: the procedural dSprites grid at 64x64 (``worldmodel.data.shapes.ShapesDataset``)
  through a small randomly initialised conv encoder (4 stride-2 4x4 convs 32-32-64-64, a linear
  layer to 10 codes: the shape of the paper's dSprites encoder), so rendering and encoding count.

Usage::

    OMP_NUM_THREADS=1 python scripts/bench_disentanglement.py --preset quick --setting synthetic shapes64
    OMP_NUM_THREADS=1 python scripts/bench_disentanglement.py --preset quick --known-answers
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from worldmodel.eval.disentanglement import METRICS, PRESETS, evaluate, preset_config
from worldmodel.eval.disentanglement.synthetic import SyntheticFactorDataset, identity_representation


def conv_representation(seed: int = 0, codes: int = 10):
    """A random conv encoder for 1x64x64 inputs as a numpy representation function."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    chans = (1, 32, 32, 64, 64)
    layers: list[nn.Module] = []
    for a, b in zip(chans[:-1], chans[1:], strict=True):
        layers += [nn.Conv2d(a, b, 4, stride=2, padding=1), nn.ReLU()]
    net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(64 * 4 * 4, codes)).eval()

    @torch.inference_mode()
    def fn(obs: np.ndarray) -> np.ndarray:
        return net(torch.from_numpy(np.ascontiguousarray(obs, dtype=np.float32))).numpy()

    return fn


def known_answers(config, seed: int) -> None:
    """Print the scores of the synthetic known-answer representations (docs' validation table)."""
    from worldmodel.eval.disentanglement.synthetic import (
        constant_representation,
        mixing_rotation,
        random_rotation,
        rotated_representation,
    )

    ds = SyntheticFactorDataset((3, 4, 5, 6))
    reps = {
        "identity": identity_representation(ds),
        "mixed": rotated_representation(ds, mixing_rotation(4)),
        "haar": rotated_representation(ds, random_rotation(4, np.random.default_rng(1))),
        "constant": constant_representation(4),
    }
    for name, fn in reps.items():
        res = evaluate(ds, fn, seed=seed, config=config, progress=False)
        print(json.dumps({"representation": name, "scores": {n: round(v, 3) for n, v in res["scores"].items()}}))


def main() -> None:
    """Run the benchmark and print one JSON line per setting."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=PRESETS, default="quick")
    p.add_argument("--setting", nargs="+", choices=("synthetic", "shapes64"), default=["synthetic", "shapes64"])
    p.add_argument("--metrics", default=",".join(METRICS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--known-answers", action="store_true", help="print the synthetic known-answer table instead")
    args = p.parse_args()
    config = preset_config(args.preset)
    if args.known_answers:
        known_answers(config, args.seed)
        return
    for setting in args.setting:
        if setting == "synthetic":
            ds = SyntheticFactorDataset((3, 4, 5, 6))
            fn = identity_representation(ds)
        else:
            import torch

            from worldmodel.data.shapes import ShapesDataset

            torch.set_num_threads(1)
            ds = ShapesDataset(64)
            fn = conv_representation()
            rng = np.random.default_rng(0)
            obs = ds.sample_observations_from_factors(ds.sample_factors(1024, rng), rng)
            fn(obs[:64])  # warm-up
            t0 = time.perf_counter()
            ds.sample_observations_from_factors(ds.sample_factors(1024, rng), rng)
            render = 1024 / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            fn(obs)
            encode = 1024 / (time.perf_counter() - t0)
            print(
                json.dumps({"setting": setting, "render_obs_per_s": round(render), "encode_obs_per_s": round(encode)})
            )
        t0 = time.perf_counter()
        res = evaluate(ds, fn, args.metrics, seed=args.seed, config=config, progress=False)
        row = {
            "setting": setting,
            "preset": args.preset,
            "total_s": round(time.perf_counter() - t0, 2),
            "sampling_s": None if res["sampling_seconds"] is None else round(res["sampling_seconds"], 2),
            "seconds": {n: round(r["seconds"], 2) for n, r in res["metrics"].items()},
            "scores": {n: round(v, 3) for n, v in res["scores"].items()},
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
