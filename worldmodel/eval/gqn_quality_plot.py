"""The figure of ``wm eval gqn``: PSNR and surprise curves with confidence bands, and a sample grid.

Top row: PSNR vs K for every method of :data:`worldmodel.eval.gqn_quality.METHODS` (mean and
confidence band over scenes), the gain of the model predictions over the nearest-view baseline,
and the Bayesian surprise vs K. Bottom: per grid scene, the K context views, the true query view,
the prior-mean prediction, the best prior sample and the nearest context view.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from worldmodel.eval.gqn_quality import METHODS, MODEL_METHODS

_STYLE = {
    "prior_mean": dict(color="C0", marker="o"),
    "best_of_n": dict(color="C2", marker="^"),
    "prior_sample": dict(color="C0", marker=".", ls=":"),
    "nearest_context": dict(color="C3", marker="s", ls="--"),
    "mean_context": dict(color="C7", marker="D", ls="--"),
}


def _curve(ax: Any, table: dict[str, Any], key: str | None, label: str, style: dict[str, Any]) -> None:
    ks = sorted(int(k) for k in table)
    rows = [table[str(k)] if str(k) in table else table[k] for k in ks]
    rows = [r[key] if key else r for r in rows]
    mean = np.array([r["mean"] for r in rows])
    lo, hi = np.array([r["ci"][0] for r in rows]), np.array([r["ci"][1] for r in rows])
    ax.plot(ks, mean, label=label, **style)
    ax.fill_between(ks, lo, hi, color=style.get("color"), alpha=0.18, lw=0)
    ax.set_xticks(ks)


def _to_hwc(img: Any) -> np.ndarray:
    a = np.asarray(img, dtype=np.float32)
    return np.clip(a.transpose(1, 2, 0), 0.0, 1.0)


def plot_quality(result: dict[str, Any], grid: dict[str, Any] | None, path: str) -> None:
    """Write the figure of ``result`` (the JSON dict of ``wm eval gqn``) and ``grid`` (images) to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = grid or {}
    g = int(len(grid.get("truth", [])))
    k = int(grid.get("k", 0))
    cols = k + 4
    fig = plt.figure(figsize=(max(13.0, 1.1 * cols), 3.6 + 1.15 * g))
    outer = fig.add_gridspec(2 if g else 1, 1, height_ratios=[3.4, 1.15 * g] if g else [1], hspace=0.35)
    top = outer[0].subgridspec(1, 3, wspace=0.3)
    ax = [fig.add_subplot(top[0, i]) for i in range(3)]
    conf = int(round(100 * result["settings"]["confidence"]))
    n_samples = result["settings"]["samples"]
    for m in METHODS:
        label = f"{m} (N={n_samples})" if m in ("prior_mean", "best_of_n") else m
        _curve(ax[0], result["psnr"], m, label, _STYLE[m])
    ax[0].set_title(f"held-out query PSNR (dB), mean and {conf}% CI", fontsize=9)
    ax[0].set_xlabel("context views K")
    ax[0].legend(fontsize=7)
    for m in MODEL_METHODS:
        _curve(ax[1], result["gain_over_nearest"], m, m, _STYLE[m])
    ax[1].axhline(0.0, color="C3", lw=0.8, ls="--")
    ax[1].set_title("PSNR gain over the nearest context view (dB)", fontsize=9)
    ax[1].set_xlabel("context views K")
    ax[1].legend(fontsize=7)
    _curve(ax[2], result["surprise"], None, "KL(q || p)", dict(color="C1", marker="o"))
    ax[2].set_title("Bayesian surprise of the query view (nats)", fontsize=9)
    ax[2].set_xlabel("context views K")
    run = result["run"]
    fig.suptitle(
        f"GQN quality: {run.get('checkpoint_dir')} (step {run.get('step')}), "
        f"{result['data']['scenes_used']} held-out scenes of {result['data']['path']}",
        fontsize=9,
    )
    if g:
        cells = outer[1].subgridspec(g, cols, wspace=0.05, hspace=0.08)
        titles = [f"context {i + 1}" for i in range(k)] + ["truth", "prior mean", "best sample", "nearest ctx"]
        for row in range(g):
            images = [grid["context"][row][i] for i in range(k)] + [
                grid["truth"][row],
                grid["prior_mean"][row],
                grid["best_sample"][row],
                grid["nearest_context"][row],
            ]
            for col, img in enumerate(images):
                a = fig.add_subplot(cells[row, col])
                a.imshow(_to_hwc(img), interpolation="nearest")
                a.set_xticks([])
                a.set_yticks([])
                if row == 0:
                    a.set_title(titles[col], fontsize=7)
                if col == 0:
                    a.set_ylabel(f"scene {grid['scene_indices'][row]}", fontsize=7)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
