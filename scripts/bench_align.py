#!/usr/bin/env python
"""Benchmark: one alignment training step vs one plain training step of the same learner.

    python scripts/bench_align.py [--rounds 5] [--steps 5] [--threads 1] [--json OUT]

Learners: the GQN (small preset, 32 px, batch 16, K = 3 context views) and the supervised
state encoder (batch 128). The plain step is the learner's own loss + backward + Adam; the
alignment step (``wm align fit --mode finetune --source-loss learner``) adds the features of a
target batch of frames as large as the learner's batch (GQN: 16; state encoder: 128) and the
log-domain Sinkhorn loss between the frozen source features (computed once, as ``wm align fit
--mode finetune`` does) and them. Plain and alignment steps alternate in each round
(interleaved, same process); the figure is the median over rounds of the per-step time ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def _gqn():
    from worldmodel.data.transfer import to_device
    from worldmodel.models.gqn import GQN
    from worldmodel.models.gqn_config import GQNConfig
    from worldmodel.train.synthetic import random_gqn_batch

    model = GQN(GQNConfig(image_size=32)).train()
    batch = to_device(random_gqn_batch(16, 3, 32, seed=0), "cpu")
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(32, 3, 32, 32, generator=g)
    views = torch.randn(32, 7, generator=g)

    def plain():
        return model.loss(batch)["loss"]

    with torch.no_grad():  # the frozen source features f0(x_s): computed once, as wm align fit does
        zs0 = model.encode(frames[:16], views[:16]).reshape(16, -1)

    def align_term():
        return zs0, model.encode(frames[16:], views[16:]).reshape(16, -1)

    return model, plain, align_term


def _state_encoder():
    import numpy as np

    from worldmodel.models.state_encoder import StateEncoder, StateEncoderConfig

    model = StateEncoder(StateEncoderConfig()).train()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(128, 3, 32, 32, generator=g)
    v = torch.randn(128, 7, generator=g)
    states = torch.as_tensor(np.random.default_rng(0).normal(size=(128, 12)), dtype=torch.float32)
    xt = torch.rand(128, 3, 32, 32, generator=g)

    def plain():
        return model.source_loss(x, v, states)

    with torch.no_grad():
        zs0 = model.encode(x, v)

    def align_term():
        return zs0, model.encode(xt, v)

    return model, plain, align_term


def _time(model, loss_fn, steps: int) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def bench(name: str, rounds: int, steps: int) -> dict:
    from worldmodel.align.losses import ot_loss

    model, plain, align_term = {"gqn": _gqn, "state-encoder": _state_encoder}[name]()

    def aligned():
        zs, zt = align_term()
        scale = float((zs[:1] - zs[1:2]).norm().clamp_min(1.0))
        return plain() + ot_loss(zs / scale, zt / scale, "sinkhorn", reg=0.05)

    _time(model, plain, 1), _time(model, aligned, 1)  # warm-up
    p, a = [], []
    for _ in range(rounds):
        p.append(_time(model, plain, steps))
        a.append(_time(model, aligned, steps))
    ratios = [y / x for x, y in zip(p, a)]
    return {
        "learner": name,
        "plain_s": statistics.median(p),
        "align_s": statistics.median(a),
        "ratio_median": statistics.median(ratios),
        "ratios": ratios,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = [bench(n, args.rounds, args.steps) for n in ("gqn", "state-encoder")]
    for r in results:
        print(
            f"{r['learner']}: plain {r['plain_s'] * 1e3:.1f} ms, align {r['align_s'] * 1e3:.1f} ms, "
            f"ratio (median of rounds) {r['ratio_median']:.2f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
