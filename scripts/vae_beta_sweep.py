"""The paper's independence experiment, small: FactorVAE score against beta, isotropic vs anisotropic prior.

    PYTHONPATH=. OMP_NUM_THREADS=1 python scripts/vae_beta_sweep.py --out /tmp/wm/exp13/sweep \\
        --settings iso:1 iso:16 aniso:1 --seeds 0 1 2 --steps 350

Each ``prior:beta`` setting (``prior`` is ``iso`` or ``aniso``; alpha is 0, so these are beta-VAEs)
and seed trains ``wm train vae --preset small`` (the paper's 64 px conv network, latent 10,
Bernoulli likelihood, batch 64, Adam 5e-4, ``--data shapes``) on the real engine, then scores it
with ``wm eval disentanglement --metrics factorvae,mig --preset quick`` (run as a subprocess, the
JSON kept in the run directory).

The anisotropic prior's relative variances follow the official ``--prior-variance pca``: the
squared singular values of the (uncentred) image matrix, here of ``--pca-images`` images drawn
with seed 0, the 10 largest (the official code takes the first 10 of ``svds(k=20)``, whose order
scipy does not guarantee), normalised to sum to D (the paper's softmax parametrisation).

Resumable: a run whose final checkpoint exists is not retrained, a run with an earlier checkpoint
is resumed (``Trainer(resume=True)``), an existing ``eval.json`` is not recomputed. Runs go seed
by seed (all settings of seed 0 first), so an interrupted sweep leaves whole seed sets.
``--summarise`` only gathers what is there: ``results.json``, ``results.csv``, ``results.md``
(mean and 95 % percentile-bootstrap CI over seeds) and ``beta_sweep.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PRIORS = ("iso", "aniso")


def parse_setting(text: str) -> tuple[str, float]:
    """``"iso:8"`` -> ``("iso", 8.0)``; raises naming the allowed priors."""
    prior, _, beta = text.partition(":")
    if prior not in PRIORS or not beta:
        raise ValueError(f"setting {text!r}: expected PRIOR:BETA with PRIOR in {PRIORS}, e.g. iso:8")
    return prior, float(beta)


def pca_variances(latent_dim: int, images: int, seed: int = 0, image_size: int = 64) -> list[float]:
    """Relative prior variances from the shapes' top squared singular values, normalised to sum to ``latent_dim``."""
    from scipy.sparse.linalg import svds

    from worldmodel.data.shapes import ShapesDataset

    ds = ShapesDataset(image_size)
    idx = np.random.default_rng(seed).choice(len(ds), images, replace=False)
    x = ds.images(np.sort(idx)).reshape(images, -1).astype(np.float32)
    s = svds(x, k=2 * latent_dim, random_state=seed, return_singular_vectors=False)
    top = np.sort(s.astype(np.float64) ** 2)[::-1][:latent_dim]
    return [round(float(v), 4) for v in latent_dim * top / top.sum()]


def run_name(prior: str, beta: float, seed: int) -> str:
    """Directory name of one run."""
    return f"{prior}_beta{beta:g}_seed{seed}"


def train(
    run: Path,
    prior: str,
    beta: float,
    seed: int,
    steps: int,
    variances: list[float],
    threads: int,
    image_size: int = 64,
) -> float:
    """Train (or finish) one run on the engine; returns the wall seconds spent here."""
    from worldmodel.train.engine import Trainer, resolve_configs

    final = run / "checkpoints" / f"step_{steps:08d}"
    if final.is_dir():
        return 0.0
    model = {"beta": beta, "alpha": 0.0, "prior": "isotropic", "image_size": image_size}
    if prior == "aniso":
        model.update(prior="anisotropic", prior_variances=tuple(variances))
    train_cfg = {
        "out": str(run),
        "steps": steps,
        "seed": seed,
        "threads": threads,
        "progress": False,
        "device": "cpu",
        "ckpt_every": 50,
        "eval_every": 10**9,
        "image_every": 10**9,
    }
    model_cfg, cfg = resolve_configs("vae", "small", model, train_cfg)
    resume = (run / "checkpoints").is_dir() and any((run / "checkpoints").iterdir())
    t0 = time.perf_counter()
    Trainer("vae", model_cfg, cfg, preset="small", resume=resume).fit()
    return time.perf_counter() - t0


def evaluate(run: Path, preset: str, metrics: str, seed: int, image_size: int = 64) -> dict:
    """``wm eval disentanglement`` on the run (cached in ``eval.json``)."""
    out = run / "eval.json"
    if not out.is_file():
        cmd = [
            sys.executable,
            "-m",
            "agents.cli",
            "eval",
            "disentanglement",
            "--run",
            str(run),
            "--data",
            "shapes",
            "--metrics",
            metrics,
            "--preset",
            preset,
            "--seed",
            str(seed),
            "--out",
            str(out),
            "--no-progress",
            "--size",
            str(image_size),
        ]
        subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    return json.loads(out.read_text())


def final_train_terms(run: Path, last: int = 50) -> dict[str, float]:
    """Mean loss, recon and KL (nats per image) over the last ``last`` logged training steps."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("kind") == "train"]
    tail = rows[-last:]
    return {k: float(np.mean([r[k] for r in tail])) for k in ("loss", "recon", "kl")} | {"step": rows[-1]["step"]}


def bootstrap_ci(values: list[float], seed: int = 0) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the mean over seeds (10,000 resamples)."""
    from worldmodel.eval.intervals import mean_ci

    return mean_ci(values, seed=seed)


def summarise(out: Path, records: list[dict], settings: list[tuple[str, float]]) -> list[dict]:
    """Per-setting mean and CI; writes results.json/.csv/.md and the figure."""
    rows = []
    for prior, beta in settings:
        rs = [r for r in records if r["prior"] == prior and r["beta"] == beta]
        if not rs:
            continue
        row = {"prior": prior, "beta": beta, "seeds": [r["seed"] for r in rs]}
        for key in ("factorvae", "mig", "recon", "kl"):
            vals = [r[key] for r in rs]
            row[key] = {"mean": float(np.mean(vals)), "ci95": bootstrap_ci(vals), "values": vals}
        rows.append(row)
    (out / "results.json").write_text(json.dumps({"runs": records, "settings": rows}, indent=2) + "\n")
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(records[0]))
        w.writeheader()
        w.writerows(records)
    fmt = "{mean:.3f} [{lo:.3f}, {hi:.3f}]"
    lines = [
        "| prior | beta | seeds | FactorVAE score | MIG | recon (nats) | KL (nats) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [fmt.format(mean=r[k]["mean"], lo=r[k]["ci95"][0], hi=r[k]["ci95"][1]) for k in ("factorvae", "mig")]
        cells += [f"{r[k]['mean']:.1f} [{r[k]['ci95'][0]:.1f}, {r[k]['ci95'][1]:.1f}]" for k in ("recon", "kl")]
        lines.append(f"| {r['prior']} | {r['beta']:g} | {len(r['seeds'])} | " + " | ".join(cells) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(out / "beta_sweep.png", rows, records)
    return rows


def plot(path: Path, rows: list[dict], records: list[dict]) -> None:
    """FactorVAE score and MIG vs beta, iso vs aniso: per-seed points, mean and 95 % CI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    colours = {"iso": "tab:blue", "aniso": "tab:orange"}
    for ax, key, label in zip(axes, ("factorvae", "mig", "recon"), ("FactorVAE score", "MIG", "reconstruction (nats)")):
        for prior in PRIORS:
            rs = sorted((r for r in rows if r["prior"] == prior), key=lambda r: r["beta"])
            if not rs:
                continue
            x = np.array([r["beta"] for r in rs]) * (1.06 if prior == "aniso" else 1.0)
            m = np.array([r[key]["mean"] for r in rs])
            lo = m - np.array([r[key]["ci95"][0] for r in rs])
            hi = np.array([r[key]["ci95"][1] for r in rs]) - m
            ax.errorbar(
                x,
                m,
                yerr=[lo, hi],
                fmt="o-",
                capsize=4,
                color=colours[prior],
                label=f"{prior}tropic prior" if prior == "iso" else "anisotropic prior",
            )
            pts = [(r["beta"] * (1.06 if prior == "aniso" else 1.0), r[key]) for r in records if r["prior"] == prior]
            ax.scatter(*zip(*pts), s=12, color=colours[prior], alpha=0.5)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("beta")
        ax.set_title(label)
    axes[0].legend(fontsize=8)
    fig.suptitle("beta-VAE on the shapes grid: mean and 95 % bootstrap CI over seeds (dots: seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/beta_sweep")
    parser.add_argument("--settings", nargs="+", default=["iso:1", "iso:16", "aniso:1"], help="PRIOR:BETA pairs")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=350)
    parser.add_argument("--preset", default="quick", help="wm eval disentanglement preset (default: quick)")
    parser.add_argument("--metrics", default="factorvae,mig")
    parser.add_argument("--pca-images", type=int, default=5000, help="images for the anisotropic prior's spectrum")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--image-size",
        type=int,
        default=64,
        help="side of the rendered shapes (64: dSprites; 32: the same grid, 4x cheaper)",
    )
    parser.add_argument("--summarise", action="store_true", help="only gather finished runs")
    args = parser.parse_args()

    settings = [parse_setting(s) for s in args.settings]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    var_file = out / "prior_variances.json"
    if not var_file.is_file():
        var_file.write_text(json.dumps(pca_variances(10, args.pca_images, image_size=args.image_size)) + "\n")
    variances = json.loads(var_file.read_text())
    print("anisotropic prior variances", variances, flush=True)
    timing_file = out / "wall_seconds.json"
    timing = json.loads(timing_file.read_text()) if timing_file.is_file() else {}
    records = []
    for seed in args.seeds:
        for prior, beta in settings:
            run = out / run_name(prior, beta, seed)
            if args.summarise:
                if not (run / "eval.json").is_file():
                    continue
            else:
                spent = train(run, prior, beta, seed, args.steps, variances, args.threads, args.image_size)
                t0 = time.perf_counter()
                done_before = (run / "eval.json").is_file()
                ev = evaluate(run, args.preset, args.metrics, seed, args.image_size)
                entry = timing.setdefault(run.name, {"train_s": 0.0, "eval_s": 0.0})
                entry["train_s"] += spent
                if not done_before:
                    entry["eval_s"] += time.perf_counter() - t0
                timing_file.write_text(json.dumps(timing, indent=2) + "\n")
            ev = json.loads((run / "eval.json").read_text())
            terms = final_train_terms(run)
            rec = {
                "prior": prior,
                "beta": beta,
                "seed": seed,
                "steps": terms["step"],
                "factorvae": float(ev["scores"]["factorvae"]),
                "mig": float(ev["scores"].get("mig", np.nan)),
                "recon": terms["recon"],
                "kl": terms["kl"],
                "loss": terms["loss"],
                "eval_preset": ev["preset"],
                **{k: round(v, 1) for k, v in timing.get(run.name, {}).items()},
            }
            print(json.dumps(rec), flush=True)
            records.append(rec)
    if records:
        summarise(out, records, settings)


if __name__ == "__main__":
    main()
