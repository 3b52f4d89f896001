"""Report of the sim-to-real study (:mod:`agents.transfer_study`): Markdown + HTML and figures.

Written with the comparison report's blocks (:mod:`agents.report`), so both files say the same:
a table per target domain (every method, every measure, mean [95% CI] over seeds), bar charts
of each measure, paired sim/target frames, and a 2-D projection of the feature clouds before
and after alignment with the exact OT plan's matches drawn between them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

MEASURES: tuple[tuple[str, str, str], ...] = (
    ("paired_error", "paired feature error (0 = aligned)", "lower"),
    ("ot_distance", "OT distance sim-target (normalised)", "lower"),
    ("r2_target", "state-probe R² on target", "higher"),
    ("policy_score", "policy score in target (expert = 1)", "higher"),
    ("gap_closed", "policy gap closed", "higher"),
)


def _fmt(stat: dict[str, Any], digits: int = 2) -> str:
    if not stat or stat.get("n", 0) == 0:
        return "—"
    lo, hi = stat["ci"]
    return f"{stat['mean']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}] (n={stat['n']})"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_measures(summary: dict[str, Any], domain: str, methods: list[str], path: Path) -> Path:
    """One bar chart per measure: every method, mean and 95% CI over seeds."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(MEASURES), figsize=(4 * len(MEASURES), 4.2))
    for ax, (key, title, better) in zip(axes, MEASURES):
        rows = [summary["rows"].get(f"{domain}/{m}", {}).get(key, {}) for m in methods]
        means = [r.get("mean", np.nan) for r in rows]
        err = np.array([[r["mean"] - r["ci"][0], r["ci"][1] - r["mean"]] if r.get("n") else [0, 0] for r in rows]).T
        ax.barh(range(len(methods)), means, xerr=np.clip(err, 0.0, None), color="#0173b2", alpha=0.8)
        ax.set_yticks(range(len(methods)), methods if ax is axes[0] else [""] * len(methods))
        ax.invert_yaxis()
        ax.set_title(f"{title}\n({better} is better)", fontsize=9)
        ax.axvline(0, color="k", lw=0.5)
    fig.suptitle(f"target domain: {domain} (mean, 95% bootstrap CI over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_pairs(sets: dict[str, Any], domains: tuple[str, ...], path: Path, n: int = 6) -> Path:
    """Paired frames: the same states in sim and in each target domain."""
    plt = _plt()
    first = sets[f"{domains[0]}_pairs"]
    idx = np.linspace(0, len(first) - 1, n).astype(int)
    fig, axes = plt.subplots(1 + len(domains), n, figsize=(1.6 * n, 1.7 * (1 + len(domains))))
    rows = [("sim", first.paired)] + [(d, sets[f"{d}_pairs"].frames) for d in domains]
    for r, (name, frames) in enumerate(rows):
        for c, i in enumerate(idx):
            axes[r, c].imshow(frames[i])
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(name)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_clouds(reference: Any, unadapted: Any, adapted: Any, pairs: Any, label: str, path: Path, n: int = 80) -> Path:
    """PCA (fitted on sim features) of sim and target features, before and after alignment,
    with the exact OT plan (``ot.emd``) between the two clouds drawn as lines."""
    import ot
    from sklearn.decomposition import PCA

    from worldmodel.align.fit import features_of
    from worldmodel.align.frames import FrameSet

    plt = _plt()
    pick = np.linspace(0, len(pairs) - 1, n).astype(int)
    sub = FrameSet(
        pairs.frames[pick], pairs.viewpoints[pick], pairs.states[pick], pairs.episodes[pick], pairs.paired[pick]
    )
    sim = features_of(reference, FrameSet(sub.paired, sub.viewpoints, sub.states, sub.episodes)).numpy()
    pca = PCA(2).fit(sim)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), sharex=True, sharey=True)
    for ax, (title, enc) in zip(axes, (("before (unadapted)", unadapted), (f"after ({label})", adapted))):
        tgt = features_of(enc, sub).numpy()
        plan = ot.emd(ot.unif(n), ot.unif(n), ot.dist(sim, tgt))
        ps, pt = pca.transform(sim), pca.transform(tgt)
        for i, j in zip(*np.nonzero(plan > 1e-9)):
            ax.plot([ps[i, 0], pt[j, 0]], [ps[i, 1], pt[j, 1]], color="0.7", lw=0.5, zorder=0)
        ax.scatter(*ps.T, s=10, label="sim", color="#0173b2")
        ax.scatter(*pt.T, s=10, label="target", color="#de8f05")
        ax.set_title(title)
    axes[0].legend()
    fig.suptitle("features, first two principal components of sim; grey: exact OT matches")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_report(out: str | Path, summary: dict[str, Any], sets: dict[str, Any], cfg: Any) -> Path:
    """Write ``report.md``, ``report.html`` and ``figures/*.png`` into ``out``."""
    from agents.report import Block, render_html, render_markdown
    from worldmodel.atomic import atomic_write_text

    out = Path(out)
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    methods = [m for m in cfg.methods]
    blocks = [
        Block("h1", "Sim-to-real alignment study"),
        Block(
            "p",
            f"Encoder `{cfg.encoder}`; agents `{cfg.agents}`; {cfg.seeds} seeds (agent s with alignment "
            f"seed s); {cfg.policy_episodes} evaluation episodes per policy cell, the same for every method; "
            "paired frames of held-out episodes for the encoder measures; no method sees target labels or pairs.",
        ),
    ]
    for d in cfg.domains:
        rows = []
        for m in methods:
            r = summary["rows"].get(f"{d}/{m}", {})
            rows.append([m] + [_fmt(r.get(k, {})) for k, _, _ in MEASURES])
        blocks += [
            Block("h2", f"Target domain `{d}`"),
            Block("table", header=["method"] + [t for _, t, _ in MEASURES], rows=rows),
            Block("image", "measures", path=plot_measures(summary, d, methods, figs / f"measures_{d}.png")),
        ]
    blocks.append(Block("image", "paired frames", path=plot_pairs(sets, tuple(cfg.domains), figs / "pairs.png")))
    for path in sorted(figs.glob("clouds_*.png")):
        blocks.append(Block("image", path.stem, path=path))
    atomic_write_text(out / "report.md", render_markdown(blocks, out))
    atomic_write_text(out / "report.html", render_html(blocks, "Sim-to-real alignment study"))
    return out / "report.md"


__all__ = ["MEASURES", "plot_clouds", "plot_measures", "plot_pairs", "write_report"]
