#!/usr/bin/env python
"""Figures of a trained GQN run: learning curves, image grids and Bayesian surprise.

Usage::

    python scripts/gqn_figures.py RUN_DIR --data DATASET_DIR --out docs/figures --prefix gqn_sm32

Writes ``PREFIX_curve.png`` (training loss and held-out ELBO from ``metrics.jsonl``),
``PREFIX_samples.png`` (per held-out scene: context views, the query, its posterior
reconstruction and prior samples of the query view, from the newest checkpoint),
``PREFIX_surprise.png`` (mean Bayesian surprise of a query view vs. the number of context
views) and ``PREFIX_summary.json`` with the numbers behind them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _curve(run: Path, out: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from worldmodel.train.logger import read_metrics

    train, evals = read_metrics(run, "train"), read_metrics(run, "eval")
    es = [r["step"] for r in evals]
    fig, ax = plt.subplots(1, 4, figsize=(14, 3.2))
    ax[0].plot(es, [r["loss"] for r in evals], "o-")
    ax[0].set_title("held-out -ELBO (nats/image, sigma_end)", fontsize=9)
    ax[1].plot(es, [r["mse"] for r in evals], "o-", color="C3")
    ax[1].set_title("held-out pixel MSE (posterior mean)", fontsize=9)
    ax[2].plot(es, [r["kl"] for r in evals], "o-", color="C2")
    ax[2].set_title("held-out KL (nats/image)", fontsize=9)
    ax[3].plot([r["step"] for r in train], [r["loss"] for r in train], lw=0.6)
    ax[3].set_yscale("log")
    ax[3].set_title("training -ELBO (annealed sigma)", fontsize=9)
    for a in ax:
        a.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return {"evals": evals, "train_steps": len(train), "train_seconds": sum(r.get("time/step_s", 0.0) for r in train)}


def _samples_and_surprise(
    run: Path, data: Path, out_samples: Path, out_surprise: Path, scenes: int, samples: int, context: int, seed: int
) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch
    from PIL import Image

    from worldmodel.checkpoint import load_model_state
    from worldmodel.data.reader import SceneDataset
    from worldmodel.encoders import viewpoint7_torch
    from worldmodel.models.gqn import GQN, GQNConfig
    from worldmodel.train.config import config_from_dict
    from worldmodel.train.logger import tile_images

    state, meta = load_model_state(run)
    model = GQN(config_from_dict(GQNConfig, meta["model"]))
    model.load_state_dict(state)
    model.eval()
    ds = SceneDataset(data)
    val = meta.get("data", {}).get("val") or {}
    n_val = int(val.get("scenes") or scenes)
    first = len(ds) - n_val if not val.get("path") or val.get("path") == str(data) else 0
    idx = list(range(first, first + scenes))
    frames = torch.from_numpy(np.stack([ds[i]["frames"] for i in idx])).permute(0, 1, 4, 2, 3).float() / 255
    views = viewpoint7_torch(torch.from_numpy(np.stack([ds[i]["cameras"] for i in idx])))
    torch.manual_seed(seed)
    cf, cv, qf, qv = frames[:, :context], views[:, :context], frames[:, -1], views[:, -1]
    recon = model.reconstruct(cf, cv, qf, qv)
    prior = [model.generate(cf, cv, qv) for _ in range(samples)]
    grid = torch.cat([cf, qf[:, None], recon[:, None], *[p[:, None] for p in prior]], dim=1)
    img = (tile_images(grid, pad=2).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    scale = max(1, 128 // frames.shape[-1])
    Image.fromarray(img).resize((img.shape[1] * scale, img.shape[0] * scale), Image.NEAREST).save(out_samples)

    # surprise of the last view vs. number of context views, averaged over many held-out scenes
    m = min(n_val, 64)
    idx = list(range(first, first + m))
    frames = torch.from_numpy(np.stack([ds[i]["frames"] for i in idx])).permute(0, 1, 4, 2, 3).float() / 255
    views = viewpoint7_torch(torch.from_numpy(np.stack([ds[i]["cameras"] for i in idx])))
    from worldmodel.data.loader import default_max_context

    k_max = meta["model"].get("max_context") or default_max_context(ds.info["source"], ds.views)
    curve = model.surprise_curve(frames, views, max_context=min(frames.shape[1] - 1, k_max), samples=4)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.plot(list(curve), list(curve.values()), "o-")
    ax.set_xlabel("context views")
    ax.set_ylabel("Bayesian surprise KL(q || p) (nats)")
    ax.set_title(f"{m} held-out scenes (trained with K <= {k_max})", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_surprise, dpi=120)
    plt.close(fig)
    return {
        "checkpoint": meta["checkpoint_dir"],
        "step": meta.get("step"),
        "scenes_shown": idx[:scenes],
        "surprise_vs_context": curve,
        "surprise_scenes": m,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="run directory of `wm train gqn`")
    p.add_argument("--data", type=Path, required=True, help="the dataset it was trained on (held-out scenes are used)")
    p.add_argument("--out", type=Path, default=Path("docs/figures"))
    p.add_argument("--prefix", default="gqn")
    p.add_argument("--scenes", type=int, default=6, help="scenes in the image grid")
    p.add_argument("--samples", type=int, default=3, help="prior samples per scene")
    p.add_argument("--context", type=int, default=5, help="context views in the image grid")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    summary = {"run": str(a.run), "data": str(a.data)}
    summary["curve"] = _curve(a.run, a.out / f"{a.prefix}_curve.png")
    summary.update(
        _samples_and_surprise(
            a.run,
            a.data,
            a.out / f"{a.prefix}_samples.png",
            a.out / f"{a.prefix}_surprise.png",
            a.scenes,
            a.samples,
            a.context,
            a.seed,
        )
    )
    (a.out / f"{a.prefix}_summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "curve"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
