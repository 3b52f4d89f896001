"""Finding 3 of issue 13, small: MIG, DCI, SAP per learner on one Jaco scene dataset (docs/disentanglement.md).

Stages (each skipped when its output exists, so a killed run resumes):

1. ``collect``: ``wm data collect --source jaco`` (600 scenes x 10 views at 32 px by default);
2. ``train``: VAE (beta 1), beta-VAE (beta 4), alpha-beta VAE with an anisotropic prior, GQN and
   NISO (``small`` presets), a few hundred steps each, all with ``--val-fraction 0.2`` so the
   last 20% of the scenes are never trained on; plus the untrained twin of the VAE;
3. ``eval``: every view of the held-out scenes encoded (true viewpoints for GQN), the factors
   (camera pose, 6 arm joints, target position; constant fingers dropped) in 10 quantile bins,
   DCI (random forest importances by default) and SAP fitted on the views of 2/3 of the
   held-out scenes and measured on the rest; raw-pixel
   PCA (10 components, fitted on training-scene views) as a baseline;
4. ``table``: ``OUT/table.json``, ``OUT/table.md`` and ``OUT/scores.png``.

Usage::

    OMP_NUM_THREADS=1 MUJOCO_GL=egl python scripts/disentanglement_scenes.py \\
        --work /tmp/dis_scenes --out docs/figures/disentanglement_scenes --steps 400
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

WM = [sys.executable, "-m", "agents.cli"]
COMMON = [
    "--val-fraction",
    "0.2",
    "--threads",
    "1",
    "--device",
    "cpu",
    "--eval-every",
    "0",
    "--image-every",
    "0",
    "--no-progress",
]
#: name -> (learner, extra arguments of ``wm train``).
LEARNERS: dict[str, tuple[str, list[str]]] = {
    "vae": ("vae", ["--preset", "small", "--beta", "1"]),
    "beta_vae": ("vae", ["--preset", "small", "--beta", "4"]),
    "alpha_beta_aniso": (
        "vae",
        [
            "--preset",
            "small",
            "--beta",
            "4",
            "--alpha",
            "1",
            "--prior",
            "anisotropic",
            "--prior-variances",
            "4",
            "2",
            "1",
            "1",
            "1",
            "1",
            "1",
            "1",
            "1",
            "1",
        ],
    ),
    "gqn": ("gqn", ["--preset", "small"]),
    "niso": ("niso", ["--preset", "small"]),
}
LABELS = {
    "vae": "VAE (beta 1)",
    "beta_vae": "beta-VAE (beta 4)",
    "alpha_beta_aniso": "alpha-beta VAE (beta 4, alpha 1, anisotropic prior)",
    "gqn": "GQN (small)",
    "niso": "NISO (small)",
    "vae_untrained": "VAE architecture, untrained",
    "pixel_pca": "raw-pixel PCA (10 components)",
}


def run(cmd: list[str], log: Path) -> None:
    """Run a ``wm`` command, its output to ``log``; raise with the log's tail if it fails."""
    print("+", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if rc != 0:
        raise SystemExit(f"command failed ({rc}): {' '.join(cmd)}\n{log.read_text()[-2000:]}")
    print(f"  done in {time.perf_counter() - t0:.0f} s", flush=True)


def collect(args: argparse.Namespace, data: Path) -> None:
    """Stage 1: the dataset."""
    if (data / "manifest.json").is_file() and json.loads((data / "manifest.json").read_text())["complete"]:
        return
    run(
        [
            *WM,
            "data",
            "collect",
            "--source",
            "jaco",
            "--scenes",
            str(args.scenes),
            "--views",
            str(args.views),
            "--size",
            str(args.size),
            "--seed",
            str(args.seed),
            "--out",
            str(data),
            "--workers",
            "1",
            "--quiet",
        ],
        Path(args.work) / "collect.log",
    )


def train(args: argparse.Namespace, data: Path, runs: Path) -> None:
    """Stage 2: the learners and the untrained twin."""
    for name, (learner, extra) in LEARNERS.items():
        if (runs / name / "checkpoints").is_dir() and any((runs / name / "checkpoints").iterdir()):
            continue
        run(
            [
                *WM,
                "train",
                learner,
                *extra,
                "--data",
                str(data),
                "--out",
                str(runs / name),
                "--steps",
                str(args.steps),
                "--seed",
                str(args.seed),
                *COMMON,
            ],
            runs.parent / f"train_{name}.log",
        )
    if not (runs / "vae_untrained" / "config.json").is_file():
        run(
            [
                *WM,
                "train",
                "untrained",
                "--like",
                str(runs / "vae"),
                "--out",
                str(runs / "vae_untrained"),
                "--seed",
                str(args.seed),
            ],
            runs.parent / "untrained.log",
        )


def final_loss(run_dir: Path) -> dict[str, float]:
    """First and last training loss of a run (from metrics.jsonl)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("kind", "train") == "train" and "loss" in r]
    return {"first_loss": float(rows[0]["loss"]), "last_loss": float(rows[-1]["loss"]), "steps": int(rows[-1]["step"])}


def pca_fn(data: Path, fit_scenes: range, components: int, seed: int) -> Any:
    """Raw-pixel PCA fitted on the views of ``fit_scenes`` (the training scenes)."""
    from sklearn.decomposition import PCA

    from worldmodel.data.reader import SceneDataset

    ds = SceneDataset(data)
    x = np.concatenate([ds[i]["frames"] for i in fit_scenes]).reshape(len(fit_scenes) * ds.views, -1) / 255.0
    pca = PCA(n_components=components, svd_solver="randomized", random_state=seed).fit(x)
    return lambda frames, cameras: pca.transform(frames.reshape(frames.shape[0], -1) / 255.0)


def evaluate(args: argparse.Namespace, data: Path, runs: Path) -> dict[str, Any]:
    """Stage 3: scores of every representation on the held-out scenes."""
    from dataclasses import replace

    from worldmodel import load_encoder
    from worldmodel.data.reader import SceneDataset
    from worldmodel.data.scene_factors import scene_split
    from worldmodel.eval.disentanglement import preset_config
    from worldmodel.eval.disentanglement.scenes import SceneEvalConfig, evaluate_scenes

    fit, held = scene_split(len(SceneDataset(data)), 0.2)
    base = preset_config("paper")
    dci = replace(base.dci, importance=args.dci_importance)
    config = SceneEvalConfig(num_bins=args.bins, mig=base.mig, dci=dci, sap=base.sap)
    results = {}
    for name in [*LEARNERS, "vae_untrained", "pixel_pca"]:
        cache = Path(args.work) / "scores" / f"{name}.json"
        if cache.is_file():
            results[name] = json.loads(cache.read_text())
            continue
        t0 = time.perf_counter()
        if name == "pixel_pca":
            rep, info = pca_fn(data, fit, 10, args.seed), {"feature_dim": 10}
        else:
            enc = load_encoder(str(runs / name), device="cpu")
            rep, info = (
                enc,
                {
                    "feature_dim": enc.feature_dim,
                    "encoder": enc.name,
                    "viewpoint": "recorded" if enc.uses_viewpoint else None,
                },
            )
            if name in LEARNERS:
                info.update(final_loss(runs / name))
        res = evaluate_scenes(data, rep, held, seed=args.seed, config=config)
        res.update(info, seconds=time.perf_counter() - t0)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(res, default=lambda o: np.asarray(o).tolist()))
        print(f"{name:<18} " + "  ".join(f"{k} {v:.3f}" for k, v in res["scores"].items()), flush=True)
        results[name] = res
    return results


def row(name: str, res: dict[str, Any]) -> dict[str, Any]:
    """One table row: the headline numbers of a representation."""
    dci = res["metrics"]["dci"]
    return {
        "name": name,
        "label": LABELS[name],
        "codes": res["feature_dim"],
        "mig": res["scores"]["mig"],
        "dci_d": dci["disentanglement"],
        "dci_c": dci["completeness"],
        "dci_i": dci["informativeness"],
        "sap": res["scores"]["sap"],
        "steps": res.get("steps"),
        "last_loss": res.get("last_loss"),
        "informativeness_per_factor": dict(
            zip(res["factors"]["names"], dci["informativeness_per_factor"], strict=True)
        ),
    }


def write_table(args: argparse.Namespace, results: dict[str, Any], out: Path) -> None:
    """Stage 4: table.json, table.md and the bar plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row(n, r) for n, r in results.items()]
    any_res = next(iter(results.values()))
    table = {
        "date": args.date,
        "machine": args.machine,
        "dataset": {"source": "jaco", "scenes": args.scenes, "views": args.views, "size": args.size, "seed": args.seed},
        "held_out": {
            "scenes": any_res["fit_scenes"] + any_res["test_scenes"],
            "views": any_res["views"],
            "fit_scenes": any_res["fit_scenes"],
            "test_scenes": any_res["test_scenes"],
        },
        "factors": any_res["factors"]["names"],
        "factor_classes": any_res["factors"]["sizes"],
        "dropped_factors": any_res["factors"]["dropped"],
        "bins": args.bins,
        "steps": args.steps,
        "dci_importance": any_res["config"]["dci"]["importance"],
        "rows": rows,
        "learner_commands": {
            n: " ".join(["wm", "train", lr, *ex, "--steps", str(args.steps), "--seed", str(args.seed), *COMMON])
            for n, (lr, ex) in LEARNERS.items()
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.json").write_text(json.dumps(table, indent=1) + "\n")
    lines = ["| representation | codes | MIG | DCI D | DCI C | DCI I | SAP |", "|---|---|---|---|---|---|---|"]
    lines += [
        f"| {r['label']} | {r['codes']} | {r['mig']:.3f} | {r['dci_d']:.3f} | {r['dci_c']:.3f} | "
        f"{r['dci_i']:.3f} | {r['sap']:.3f} |"
        for r in rows
    ]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    keys = [("mig", "MIG"), ("dci_d", "DCI D"), ("dci_c", "DCI C"), ("dci_i", "DCI I"), ("sap", "SAP")]
    fig, ax = plt.subplots(figsize=(10, 3.8))
    width = 0.8 / len(rows)
    for j, r in enumerate(rows):
        ax.bar(
            np.arange(len(keys)) + (j - (len(rows) - 1) / 2) * width, [r[k] for k, _ in keys], width, label=r["label"]
        )
    ax.set_xticks(np.arange(len(keys)), [label for _, label in keys])
    ax.set_ylim(0, 1)
    ax.set_ylabel("score")
    ax.set_title(
        f"Jaco {args.size} px, {table['held_out']['scenes']} held-out scenes, {args.steps}-step runs ({args.date})",
        fontsize=9,
    )
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "scores.png", dpi=110)
    plt.close(fig)
    print("\n".join(lines))


def main() -> None:
    """Run the stages."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="runs/disentanglement_scenes", help="dataset, runs, logs, cached scores")
    p.add_argument("--out", default="docs/figures/disentanglement_scenes", help="table.json, table.md, scores.png")
    p.add_argument("--scenes", type=int, default=600)
    p.add_argument("--views", type=int, default=10)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--steps", type=int, default=400, help="training steps of every learner")
    p.add_argument("--bins", type=int, default=10, help="quantile bins per continuous factor")
    p.add_argument(
        "--dci-importance",
        choices=("random_forest", "gbt"),
        default="random_forest",
        help="DCI importance model (gbt, disentanglement_lib's, takes ~4 min per row here)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--date", default=time.strftime("%Y-%m-%d"))
    p.add_argument("--machine", default="2-core shared CPU, one thread per run")
    p.add_argument("--stages", default="collect,train,eval,table")
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data, runs = work / "jaco", work / "runs"
    stages = args.stages.split(",")
    if "collect" in stages:
        collect(args, data)
    if "train" in stages:
        train(args, data, runs)
    if "eval" in stages or "table" in stages:
        results = evaluate(args, data, runs)
        if "table" in stages:
            write_table(args, results, Path(args.out))


if __name__ == "__main__":
    main()
