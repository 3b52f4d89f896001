"""The paper's pinwheel experiment: how beta and alpha move the aggregate posterior q(z) against the mixture prior.

    PYTHONPATH=. OMP_NUM_THREADS=1 python scripts/vae_pinwheel.py --out /tmp/wm/exp13/pinwheel \\
        --settings 1,0 4,0 8,0 1,1 1,4 0,1 --seeds 0 1 2 3 4 --steps 1500

For each ``beta,alpha`` setting and seed, trains ``wm train vae --preset pinwheel`` (MLP, 2-d
latent, 4-component mixture prior with variance 0.03, full batches of the 400 points, lr 1e-3;
the official ``clustering.sh`` runs 500 epochs = 500 steps with D = KL(p || q)) for ``--steps``
steps on the real engine, then measures q(z) (``--draws`` posterior draws per training point)
against as many prior draws:

* ``ot``: the exact optimal-transport cost (POT ``ot.emd2``, squared Euclidean ground cost, so
  W2^2) between the two point clouds;
* ``modes``: the number of prior components holding >= 10 % of q(z)'s draws (each draw assigned
  to the component of highest posterior responsibility); ``mode_shares`` the four shares;
* ``kl_pq``: the paper's minibatch estimate of KL(p(z) || q(z));
* ``on_mode``: the share of q(z)'s draws within the 95 % ellipse of their nearest component
  (Mahalanobis radius sqrt(chi2_2(0.95)) = 2.448 component standard deviations; 0.95 for draws of
  p itself). Added after the first grid: a q(z) spread over all four components as one broad blob
  (posterior collapse) still puts >= 10 % in each, so ``modes`` alone does not see it;
* ``ot_means``, ``modes_means``: the same two measures on the posterior means (the encodings
  without their noise; q(z) itself includes it);
* ``loss_drop_last``: how much the mean training loss of the last 10 % of the steps is below that
  of the 10 % before (a convergence check: near 0 once the loss is flat).

A run whose final checkpoint exists is not retrained. Writes ``results.json``, ``results.csv``,
``results.md`` (mean and 95 % percentile-bootstrap CI over seeds), ``pinwheel.png`` (q(z) of
the first seed per setting over the prior's contours; the measures against beta at alpha 0
and against alpha at beta 1) and ``curves.png`` (training loss of every run) under ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

#: 95 % quantile of the chi-square distribution with 2 degrees of freedom (-2 ln 0.05).
CHI2_2_95 = 5.991464547107979


def posterior_draws(run_dir: Path, draws: int, seed: int):
    """``(model, q(z) draws [draws * N, 2], posterior means [N, 2], posterior stds [N, 2])`` of a trained run."""
    import torch

    from worldmodel.data.pinwheel import make_pinwheel
    from worldmodel.models.vae import load_vae

    model, config = load_vae(str(run_dir))
    points, _ = make_pinwheel(seed=2 * int(config["train"]["seed"]))  # the training set
    torch.manual_seed(seed)
    with torch.no_grad():
        mu, sigma = model.posterior(torch.from_numpy(points))
        qz = mu.repeat(draws, 1) + sigma.repeat(draws, 1) * torch.randn(draws * len(mu), mu.shape[1])
    return model, qz, mu, sigma


def measure(run_dir: Path, draws: int, seed: int) -> dict[str, float]:
    """OT cost, occupied modes and minibatch KL(p || q) of a trained pinwheel VAE."""
    import torch

    from worldmodel.models.vae_objective import minibatch_kl_prior_aggregate

    model, qz, mu, sigma = posterior_draws(run_dir, draws, seed)
    with torch.no_grad():
        pz = model.prior.sample(len(qz))
        resp = model.prior.component_log_probs(qz).argmax(-1).numpy()
        kl = float(minibatch_kl_prior_aggregate(model.prior, mu, sigma, num_samples=4000))
        resp_means = model.prior.component_log_probs(mu).argmax(-1).numpy()
    maha = ((qz.unsqueeze(1) - model.prior.means) / model.prior.stds).square().sum(-1).min(1).values.sqrt()
    k = model.prior.means.shape[0]
    share = np.bincount(resp, minlength=k) / len(resp)
    share_means = np.bincount(resp_means, minlength=k) / len(resp_means)
    return {
        "ot": _w2sq(qz.numpy(), pz.numpy()),
        "modes": int((share >= 0.10).sum()),
        "mode_shares": [round(float(s), 3) for s in share],
        "kl_pq": kl,
        "on_mode": float((maha <= CHI2_2_95**0.5).float().mean()),
        "ot_means": _w2sq(mu.numpy(), pz[: len(mu)].numpy()),
        "modes_means": int((share_means >= 0.10).sum()),
        "posterior_std": float(sigma.mean()),
    }


def _w2sq(x: np.ndarray, y: np.ndarray) -> float:
    """Exact OT cost with a squared Euclidean ground cost (W2^2) between two equal-weight point clouds."""
    import ot

    a, b = np.full(len(x), 1.0 / len(x)), np.full(len(y), 1.0 / len(y))
    cost = ot.dist(x.astype(np.float64), y.astype(np.float64))  # squared Euclidean
    return float(ot.emd2(a, b, cost, numItermax=1_000_000))


def training_curve(run_dir: Path) -> dict[str, float]:
    """Final loss terms and the loss drop over the last 10 % of training (from metrics.jsonl)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    loss = np.array([r["loss"] for r in rows if r.get("kind") == "train"])
    tail = max(1, len(loss) // 10)
    last = rows[-1] if rows[-1].get("kind") == "train" else [r for r in rows if r.get("kind") == "train"][-1]
    return {
        "loss_final": float(loss[-tail:].mean()),
        "loss_drop_last": float(loss[-2 * tail : -tail].mean() - loss[-tail:].mean()),
        "recon_final": float(last["recon"]),
        "kl_final": float(last["kl"]),
        "steps": int(last["step"]),
    }


def bootstrap_ci(values: list[float], seed: int = 0) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the mean over seeds (10,000 resamples)."""
    from worldmodel.eval.intervals import mean_ci

    return mean_ci(values, seed=seed)


def summarise(results: list[dict], settings: list[tuple[float, float]]) -> list[dict]:
    """Mean and CI per setting of every measure."""
    rows = []
    for beta, alpha in settings:
        rs = [r for r in results if r["beta"] == beta and r["alpha"] == alpha]
        if not rs:
            continue
        row = {"beta": beta, "alpha": alpha, "seeds": len(rs)}
        for key in ("ot", "modes", "on_mode", "kl_pq", "ot_means", "modes_means", "loss_final", "loss_drop_last"):
            vals = [float(r[key]) for r in rs]
            row[key] = {"mean": float(np.mean(vals)), "ci95": bootstrap_ci(vals), "values": vals}
        rows.append(row)
    return rows


def plot(path: Path, out: Path, rows: list[dict], settings: list[tuple[float, float]], seed: int, draws: int) -> None:
    """q(z) scatter per setting (first seed) over the prior's contours, and the measures vs beta and vs alpha."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    n = len(settings)
    fig = plt.figure(figsize=(2.6 * max(n, 6), 6.2))
    grid = fig.add_gridspec(2, max(n, 6))
    lin = np.linspace(-1.8, 1.8, 200)
    gx, gy = np.meshgrid(lin, lin)
    for i, (beta, alpha) in enumerate(settings):
        ax = fig.add_subplot(grid[0, i])
        model, qz, _, _ = posterior_draws(out / f"beta{beta:g}_alpha{alpha:g}_seed{seed}", draws, seed)
        with torch.no_grad():
            dens = model.prior.log_prob(torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)))
        ax.contour(gx, gy, np.exp(dens.numpy()).reshape(gx.shape), levels=5, colors="k", linewidths=0.6)
        ax.scatter(qz[:, 0], qz[:, 1], s=1, alpha=0.25, color="tab:red")
        ax.set_xlim(-1.8, 1.8)
        ax.set_ylim(-1.8, 1.8)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"beta {beta:g}, alpha {alpha:g}", fontsize=9)
    sweeps = [
        ("beta", [r for r in rows if r["alpha"] == 0], "alpha = 0"),
        ("alpha", [r for r in rows if r["beta"] == 1], "beta = 1"),
    ]
    col = 0
    for var, rs, fixed in sweeps:
        rs = sorted(rs, key=lambda r: r[var])
        for key, label in (
            ("ot", "W2² (q(z), p(z))"),
            ("modes", "modes with ≥ 10 % of q(z)"),
            ("on_mode", "share of q(z) on a mode"),
        ):
            ax = fig.add_subplot(grid[1, col])
            col += 1
            x = np.array([r[var] for r in rs])
            m = np.array([r[key]["mean"] for r in rs])
            err = [m - np.array([r[key]["ci95"][0] for r in rs]), np.array([r[key]["ci95"][1] for r in rs]) - m]
            ax.errorbar(x, m, yerr=err, fmt="o-", capsize=4)
            for r in rs:
                ax.scatter([r[var]] * len(r[key]["values"]), r[key]["values"], s=8, alpha=0.4, color="grey")
            ax.set_xlabel(f"{var} ({fixed})")
            ax.set_title(label, fontsize=9)
            if key == "modes":
                ax.set_ylim(0.5, 4.5)
            if key == "on_mode":
                ax.set_ylim(0, 1)
    fig.suptitle(
        f"pinwheel, 4-component mixture prior: q(z) draws of seed {seed} (top); mean and 95 % bootstrap CI "
        "over seeds, dots are seeds (bottom)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(path: Path, out: Path, settings: list[tuple[float, float]], seeds: list[int]) -> None:
    """Training loss per step of every run (50-step running mean), one panel per setting: the convergence check."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(settings), figsize=(2.8 * len(settings), 2.6), squeeze=False)
    for ax, (beta, alpha) in zip(axes[0], settings):
        for seed in seeds:
            rows = (out / f"beta{beta:g}_alpha{alpha:g}_seed{seed}" / "metrics.jsonl").read_text().splitlines()
            loss = np.array([json.loads(r)["loss"] for r in rows if '"kind": "train"' in r])
            smooth = np.convolve(loss, np.ones(50) / 50, mode="valid")
            ax.plot(np.arange(50, len(loss) + 1), smooth, lw=0.8, label=f"seed {seed}")
        ax.set_title(f"beta {beta:g}, alpha {alpha:g}", fontsize=9)
        ax.set_xlabel("step")
    axes[0][0].set_ylabel("training loss (50-step mean)")
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/pinwheel")
    parser.add_argument(
        "--settings", nargs="+", default=["1,0", "4,0", "8,0", "1,1", "1,4", "0,1"], help="beta,alpha pairs"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--draws", type=int, default=5, help="posterior draws per training point")
    parser.add_argument("--divergence", default="kl", choices=["kl", "mmd"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from worldmodel.train.engine import Trainer, resolve_configs

    out = Path(args.out)
    settings = [tuple(float(v) for v in s.split(",")) for s in args.settings]
    results = []
    t_start = time.perf_counter()
    for beta, alpha in settings:
        for seed in args.seeds:
            run = out / f"beta{beta:g}_alpha{alpha:g}_seed{seed}"
            if not (run / "checkpoints" / f"step_{args.steps:08d}").is_dir():
                model_cfg, cfg = resolve_configs(
                    "vae",
                    "pinwheel",
                    {"beta": beta, "alpha": alpha, "divergence": args.divergence},
                    {
                        "out": str(run),
                        "steps": args.steps,
                        "seed": seed,
                        "threads": args.threads,
                        "progress": False,
                        "device": "cpu",
                        "image_every": 10**9,
                        "eval_every": 10**9,
                        "ckpt_every": args.steps,
                    },
                )
                Trainer("vae", model_cfg, cfg, preset="pinwheel").fit()
            record = {
                "beta": beta,
                "alpha": alpha,
                "seed": seed,
                **measure(run, args.draws, seed),
                **training_curve(run),
            }
            print(json.dumps(record), flush=True)
            results.append(record)
    wall = time.perf_counter() - t_start
    out.mkdir(parents=True, exist_ok=True)
    rows = summarise(results, settings)
    (out / "results.json").write_text(
        json.dumps(
            {"runs": results, "settings": rows, "wall_s": wall, "steps": args.steps, "draws": args.draws}, indent=2
        )
        + "\n"
    )
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[k for k in results[0] if k != "mode_shares"], extrasaction="ignore")
        w.writeheader()
        w.writerows(results)
    ci = "{0:.3f} [{1:.3f}, {2:.3f}]"
    lines = [
        "| beta | alpha | seeds | W2² (q(z), p) | modes ≥ 10 % of q(z) | q(z) on a mode | KL(p‖q) est. "
        "| W2² (means, p) | modes of the means | final loss | loss drop, last 10 % |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            ci.format(r[k]["mean"], *r[k]["ci95"])
            for k in ("ot", "modes", "on_mode", "kl_pq", "ot_means", "modes_means", "loss_final", "loss_drop_last")
        ]
        lines.append(f"| {r['beta']:g} | {r['alpha']:g} | {r['seeds']} | " + " | ".join(cells) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wall {wall:.0f} s")
    plot(out / "pinwheel.png", out, rows, settings, args.seeds[0], args.draws)
    plot_curves(out / "curves.png", out, settings, args.seeds)


if __name__ == "__main__":
    main()
