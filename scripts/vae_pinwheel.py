"""The paper's pinwheel experiment: how beta and alpha move the aggregate posterior q(z) against the mixture prior.

    python scripts/vae_pinwheel.py --out runs/pinwheel --settings 1,0 4,0 8,0 1,1 1,4 0,1 --seeds 0 1 2

For each ``beta,alpha`` setting and seed, trains ``wm train vae --preset pinwheel`` (MLP, 2-d
latent, 4-component mixture prior with variance 0.03, 500 full-batch steps) on the real engine,
then measures q(z) (``--draws`` posterior draws per training point) against as many prior draws:

* ``ot``: the exact optimal-transport cost (POT ``ot.emd2``, squared Euclidean ground cost, so
  W2^2) between the two point clouds;
* ``modes``: the number of prior components holding >= 10 % of q(z)'s draws (each draw assigned
  to the component of highest posterior responsibility);
* ``kl_pq``: the paper's minibatch estimate of KL(p(z) || q(z));
* ``ot_means``, ``modes_means``: the same two measures on the posterior means (the encodings
  without their noise; q(z) itself includes it).

Writes ``results.json`` and ``results.md`` (mean and spread over seeds) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def measure(run_dir: Path, draws: int, seed: int) -> dict[str, float]:
    """OT cost, occupied modes and minibatch KL(p || q) of a trained pinwheel VAE."""
    import torch

    from worldmodel.data.pinwheel import make_pinwheel
    from worldmodel.models.vae import load_vae
    from worldmodel.models.vae_objective import minibatch_kl_prior_aggregate

    model, config = load_vae(str(run_dir))
    points, _ = make_pinwheel(seed=2 * int(config["train"]["seed"]))  # the training set
    torch.manual_seed(seed)
    with torch.no_grad():
        mu, sigma = model.posterior(torch.from_numpy(points))
        qz = (mu.repeat(draws, 1) + sigma.repeat(draws, 1) * torch.randn(draws * len(mu), mu.shape[1]))
        pz = model.prior.sample(len(qz))
        resp = model.prior.component_log_probs(qz).argmax(-1).numpy()
        kl = float(minibatch_kl_prior_aggregate(model.prior, mu, sigma, num_samples=4000))
        resp_means = model.prior.component_log_probs(mu).argmax(-1).numpy()
    k = model.prior.means.shape[0]
    share = np.bincount(resp, minlength=k) / len(resp)
    share_means = np.bincount(resp_means, minlength=k) / len(resp_means)
    return {"ot": _w2sq(qz.numpy(), pz.numpy()), "modes": int((share >= 0.10).sum()),
            "mode_shares": [round(float(s), 3) for s in share], "kl_pq": kl,
            "ot_means": _w2sq(mu.numpy(), pz[: len(mu)].numpy()), "modes_means": int((share_means >= 0.10).sum())}


def _w2sq(x: np.ndarray, y: np.ndarray) -> float:
    """Exact OT cost with a squared Euclidean ground cost (W2^2) between two equal-weight point clouds."""
    import ot

    a, b = np.full(len(x), 1.0 / len(x)), np.full(len(y), 1.0 / len(y))
    cost = ot.dist(x.astype(np.float64), y.astype(np.float64))  # squared Euclidean
    return float(ot.emd2(a, b, cost, numItermax=1_000_000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/pinwheel")
    parser.add_argument("--settings", nargs="+", default=["1,0", "4,0", "8,0", "1,1", "1,4", "0,1"],
                        help="beta,alpha pairs")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--draws", type=int, default=5, help="posterior draws per training point")
    parser.add_argument("--divergence", default="kl", choices=["kl", "mmd"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from worldmodel.train.engine import Trainer, resolve_configs

    out = Path(args.out)
    results = []
    for setting in args.settings:
        beta, alpha = (float(v) for v in setting.split(","))
        for seed in args.seeds:
            run = out / f"beta{beta:g}_alpha{alpha:g}_seed{seed}"
            if not (run / "checkpoints").is_dir():
                model_cfg, cfg = resolve_configs(
                    "vae", "pinwheel", {"beta": beta, "alpha": alpha, "divergence": args.divergence},
                    {"out": str(run), "steps": args.steps, "seed": seed, "threads": args.threads, "progress": False,
                     "device": "cpu"},
                )
                Trainer("vae", model_cfg, cfg, preset="pinwheel").fit()
            record = {"beta": beta, "alpha": alpha, "seed": seed, **measure(run, args.draws, seed)}
            print(json.dumps(record), flush=True)
            results.append(record)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    lines = ["| beta | alpha | seeds | OT W2^2 (q, p) | modes >= 10 % | KL(p||q) est. | OT W2^2 (means, p) "
             "| modes of means |", "|---|---|---|---|---|---|---|---|"]
    for setting in args.settings:
        beta, alpha = (float(v) for v in setting.split(","))
        rows = [r for r in results if r["beta"] == beta and r["alpha"] == alpha]
        ot_v, modes, kl, ot_m, modes_m = (np.array([r[k] for r in rows], dtype=float)
                                           for k in ("ot", "modes", "kl_pq", "ot_means", "modes_means"))
        lines.append(f"| {beta:g} | {alpha:g} | {len(rows)} | {ot_v.mean():.3f} ± {ot_v.std():.3f} | "
                     f"{modes.mean():.1f} | {kl.mean():.2f} ± {kl.std():.2f} | "
                     f"{ot_m.mean():.3f} ± {ot_m.std():.3f} | {modes_m.mean():.1f} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
