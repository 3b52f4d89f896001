"""NISO's homNIST ablation study on the digits stand-in: 3 models x N seeds, resumable, with CIs.

Arms (each trained with ``wm train niso --data digits`` for ``--train-steps`` steps, seed = the run's):

* ``niso``: NISO, the ``small`` preset;
* ``ae_aug``: the capacity-matched autoencoder with augmentation (``--mode autoencoder --ae-bottleneck``);
* ``niso_no_lm``: NISO without the multiplicity loss ``L_M`` (``--beta 0``);
* ``untrained`` (control): the NISO architecture with fresh weights of the same seed
  (``wm train untrained``), which separates what training learned from what the architecture and
  the head give on their own.

Each checkpoint goes through ``wm eval niso hmnist`` (the official ``hmnist_pred`` protocol, with
the head schedule shortened to ``--head-steps``, stated in the output), on the same homNIST-style
test set (359 test digits x 32 Metropolis-walk warps, seed 1234). The raw-pixel logistic
regression on the same test images is the fixed external reference; the target is NISO >= pixels
+ 15 points. Every run and evaluation writes its own files, so a killed study resumes where it
stopped (a partial training resumes from its newest checkpoint).

    python scripts/niso_study.py                      # the default study (~80 min on 2 cores)
    python scripts/niso_study.py --report-only        # re-aggregate what exists
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ARMS: dict[str, list[str]] = {
    "niso": [],
    "ae_aug": ["--mode", "autoencoder", "--ae-bottleneck"],
    "niso_no_lm": ["--beta", "0"],
}
CONTROL = "untrained"
LABELS = {
    "niso": "NISO",
    "ae_aug": "AE + aug (rank-k bottleneck)",
    "niso_no_lm": "NISO without L_M",
    CONTROL: "untrained NISO (control)",
}
#: The ``wm`` command of this interpreter's environment.
WM = shutil.which("wm") or str(Path(sys.executable).parent / "wm")
#: One lock per run directory: the control arm trains (or waits for) the NISO run it copies.
_RUN_LOCKS: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)

#: Paper's homNIST accuracies (Mitchel et al. 2024, Table 1), for the picture's legend only.
PAPER = {"niso": 92.5, "ae_aug": 81.0, "niso_no_lm": 45.3}


def _env() -> dict[str, str]:
    # one thread per process: the study runs --jobs processes side by side
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MUJOCO_GL": "egl"}


def _run(cmd: list[str], log: Path) -> None:
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        done = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=_env())
    if done.returncode != 0:
        raise RuntimeError(f"command failed (rc {done.returncode}), see {log}: {' '.join(cmd)}")


def _trained_step(run: Path) -> int | None:
    """Step of the newest complete checkpoint under ``run`` (None when there is none)."""
    from worldmodel.checkpoint import read_checkpoint_config

    try:
        return int(read_checkpoint_config(run)["step"])
    except FileNotFoundError:
        return None


def train(arm: str, seed: int, args: argparse.Namespace) -> Path:
    """Train (or resume, or skip) one arm's run; returns its run directory."""
    run = args.out / f"{arm}_s{seed}"
    with _RUN_LOCKS[str(run)]:
        step = _trained_step(run)
        if step is not None and step >= args.train_steps:
            return run
        if step is None and run.exists():  # killed before its first checkpoint: set aside, never deleted
            run.rename(run.with_name(f"{run.name}.stale-{len(list(args.out.glob(run.name + '.stale-*')))}"))
        cmd = [WM, "train", "niso", "--out", str(run), "--threads", "1", "--no-progress"]
        if step is not None:
            cmd += ["--resume"]
        else:
            steps = str(args.train_steps)
            cmd += ["--data", "digits", "--steps", steps, "--lr-anneal-steps", steps, "--seed", str(seed)]
            cmd += ["--ckpt-every", str(args.ckpt_every), *ARMS[arm]]
        print(f"[study] train {arm} seed {seed}", flush=True)
        _run(cmd, args.out / f"{arm}_s{seed}.log")
    return run


def untrained(seed: int, like: Path, args: argparse.Namespace) -> Path:
    """The untrained twin of ``like`` with fresh weights of ``seed``."""
    out = args.out / f"{CONTROL}_s{seed}"
    cmd = [WM, "train", "untrained", "--like", str(like), "--out", str(out), "--seed", str(seed)]
    _run(cmd, args.out / f"{CONTROL}_s{seed}.log")
    return out


def evaluate(arm: str, seed: int, ckpt: Path, args: argparse.Namespace) -> Path:
    """The hmnist_pred protocol on one checkpoint (skipped when its result exists)."""
    out = args.out / f"{arm}_s{seed}_hmnist.json"
    if out.exists():
        return out
    print(f"[study] evaluate {arm} seed {seed}", flush=True)
    cmd = [WM, "eval", "niso", "hmnist", f"{arm}={ckpt}", "--steps", str(args.head_steps)]
    cmd += ["--warmup-steps", str(args.head_warmup), "--seed", str(seed), "--no-progress", "--out", str(out)]
    _run(cmd, args.out / f"{arm}_s{seed}.log")
    return out


def arm_chain(arm: str, seed: int, args: argparse.Namespace) -> None:
    """Train then evaluate one (arm, seed); the control waits for the NISO run it copies."""
    if arm == CONTROL:
        like = train("niso", seed, args)
        evaluate(arm, seed, untrained(seed, like, args), args)
    else:
        evaluate(arm, seed, train(arm, seed, args), args)


def pixel_reference(args: argparse.Namespace) -> dict[str, Any]:
    """The raw-pixel logistic regression on the study's test images (cached)."""
    out = args.out / "pixels_hmnist.json"
    if not out.exists():
        from worldmodel.atomic import atomic_write_json
        from worldmodel.eval.homnist_pixels import pixel_baseline

        atomic_write_json(out, pixel_baseline(size=40, sigma_scale=1.0))
    return json.loads(out.read_text())


def equivariance(arm: str, seed: int, args: argparse.Namespace) -> dict[str, Any] | None:
    """Both equivariance-error forms on 512 held-out pairs (cached); None for the autoencoder."""
    out = args.out / f"{arm}_s{seed}_equivariance.json"
    ckpt = args.out / f"{arm}_s{seed}"
    if arm == "ae_aug" or not ckpt.exists():
        return None
    if not out.exists():
        import torch

        from worldmodel.atomic import atomic_write_json
        from worldmodel.eval.niso_protocol import equivariance_protocol
        from worldmodel.models.niso import load_niso

        torch.set_num_threads(1)
        model, _ = load_niso(str(ckpt))
        atomic_write_json(out, equivariance_protocol(model, pairs=512, sampler="homnist"))
    return json.loads(out.read_text())


def _ci(values: list[float]) -> list[float]:
    from worldmodel.eval.intervals import mean_ci

    return list(mean_ci(values))


def aggregate(args: argparse.Namespace) -> dict[str, Any]:
    """Per-arm means with bootstrap CIs over seeds, paired differences, the verdicts."""
    pixels = pixel_reference(args)
    arms: dict[str, Any] = {}
    for arm in [*ARMS, CONTROL]:
        per_seed = {}
        for seed in args.seeds:
            f = args.out / f"{arm}_s{seed}_hmnist.json"
            if f.exists():
                row = json.loads(f.read_text())["results"][0]
                per_seed[seed] = {k: 100 * row[k] for k in ("warped_accuracy", "clean_accuracy", "train_accuracy")}
                per_seed[seed] |= {"train_step": row["step"], "head_steps": row["config"]["steps"]}
                per_seed[seed] |= {"warped_images": row["warped_images"]}
        for seed in per_seed:
            eq = equivariance(arm, seed, args)
            if eq is not None:  # ||tau A - B||^2 / ||B||^2 in %, homNIST-walk pairs of test digits
                per_seed[seed] |= {"equivariance_sq": 100 * eq["tau"]["squared_mean"]}
                per_seed[seed] |= {"identity_sq": 100 * eq["identity"]["squared_mean"]}
        if per_seed:
            warped = [v["warped_accuracy"] for v in per_seed.values()]
            clean = [v["clean_accuracy"] for v in per_seed.values()]
            arms[arm] = {
                "label": LABELS[arm],
                "seeds": per_seed,
                "warped_mean": float(np.mean(warped)),
                "warped_ci95": _ci(warped),
                "clean_mean": float(np.mean(clean)),
                "clean_ci95": _ci(clean),
            }
            eq = [v["equivariance_sq"] for v in per_seed.values() if "equivariance_sq" in v]
            if eq:
                arms[arm] |= {"equivariance_sq_mean": float(np.mean(eq)), "equivariance_sq_ci95": _ci(eq)}
    diffs = {}
    for a, b in (("niso", "ae_aug"), ("ae_aug", "niso_no_lm"), ("niso", "niso_no_lm"), ("niso", CONTROL)):
        common = sorted(set(arms.get(a, {}).get("seeds", {})) & set(arms.get(b, {}).get("seeds", {})))
        if common:
            d = [arms[a]["seeds"][s]["warped_accuracy"] - arms[b]["seeds"][s]["warped_accuracy"] for s in common]
            diffs[f"{a} - {b}"] = {"seeds": common, "per_seed": d, "mean": float(np.mean(d)), "ci95": _ci(d)}
    pix = 100 * pixels["warped_accuracy"]
    verdict = {}
    if "niso" in arms:
        verdict["niso_minus_pixels"] = arms["niso"]["warped_mean"] - pix
        verdict["niso_15_points_above_pixels"] = bool(arms["niso"]["warped_ci95"][0] >= pix + 15)
    if {"niso - ae_aug", "ae_aug - niso_no_lm"} <= diffs.keys():
        verdict["ordering_niso_gt_ae_gt_no_lm"] = bool(
            diffs["niso - ae_aug"]["ci95"][0] > 0 and diffs["ae_aug - niso_no_lm"]["ci95"][0] > 0
        )
    rows = [v for a in arms.values() for v in a["seeds"].values()]
    return {
        "protocol": "hmnist_pred (official head, shortened schedule)",
        # as the result files record them (the control's checkpoint is step 0)
        "train_steps": sorted({r["train_step"] for r in rows if r["train_step"]}),
        "head_steps": sorted({r["head_steps"] for r in rows}),
        "seeds": list(args.seeds),
        "pixels": {"warped": pix, "clean": 100 * pixels["clean_accuracy"]},
        "arms": arms,
        "paired_differences": diffs,
        "verdict": verdict,
    }


def plot(summary: dict[str, Any], path: Path) -> None:
    """Bars of warped and clean accuracy per arm (95% CIs over seeds, seeds as dots), pixel reference lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(summary["arms"])
    fig, ax = plt.subplots(figsize=(8, 4.2))
    x = np.arange(len(arms))
    for offset, key, colour in ((-0.2, "warped", "tab:blue"), (0.2, "clean", "tab:gray")):
        means = [summary["arms"][a][f"{key}_mean"] for a in arms]
        lo = [m - summary["arms"][a][f"{key}_ci95"][0] for a, m in zip(arms, means, strict=True)]
        hi = [summary["arms"][a][f"{key}_ci95"][1] - m for a, m in zip(arms, means, strict=True)]
        ax.bar(x + offset, means, 0.38, yerr=[lo, hi], color=colour, alpha=0.75, capsize=3, label=f"{key} test")
        for i, a in enumerate(arms):
            vals = [v[f"{key}_accuracy"] for v in summary["arms"][a]["seeds"].values()]
            ax.scatter(np.full(len(vals), x[i] + offset), vals, color="k", s=8, zorder=3)
    pix = summary["pixels"]["warped"]
    ax.axhline(pix, color="tab:red", ls="--", lw=1, label=f"raw pixels, warped ({pix:.1f}%)")
    ax.axhline(pix + 15, color="tab:green", ls=":", lw=1, label=f"target: pixels + 15 ({pix + 15:.1f}%)")
    ax.set_xticks(x, [LABELS[a] for a in arms], fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    seeds = len(summary["seeds"])
    ax.set_title(
        f"homNIST-style warped digits, hmnist_pred head ({'/'.join(map(str, summary['head_steps']))} steps), "
        f"{'/'.join(map(str, summary['train_steps']))} training steps, {seeds} seeds",
        fontsize=9,
    )
    fig.legend(fontsize=7, loc="lower center", ncol=4, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(summary: dict[str, Any]) -> str:
    """The study's tables in Markdown: arms (mean [95% CI] over seeds, per seed), paired differences, verdicts."""
    pix = summary["pixels"]
    lines = [
        "| arm | warped test, mean [95% CI] | per seed | clean test | equivariance error (sq.) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in summary["arms"].values():
        lo, hi = row["warped_ci95"]
        seeds = ", ".join(f"{v['warped_accuracy']:.1f}" for v in row["seeds"].values())
        eq = f"{row['equivariance_sq_mean']:.2f}%" if "equivariance_sq_mean" in row else "n/a"
        warped = f"{row['warped_mean']:.1f}% [{lo:.1f}, {hi:.1f}]"
        lines.append(f"| {row['label']} | {warped} | {seeds} | {row['clean_mean']:.1f}% | {eq} |")
    lines.append(
        f"| raw pixels (logistic regression) | {pix['warped']:.1f}% | (deterministic) | {pix['clean']:.1f}% | n/a |"
    )
    lines += ["", "| paired difference (warped, points) | mean [95% CI] | per seed |", "| --- | --- | --- |"]
    for name, d in summary["paired_differences"].items():
        per = ", ".join(f"{x:+.1f}" for x in d["per_seed"])
        lines.append(f"| {name} | {d['mean']:+.1f} [{d['ci95'][0]:+.1f}, {d['ci95'][1]:+.1f}] | {per} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/niso_study"), help="runs and per-run results")
    p.add_argument("--figures", type=Path, default=Path("docs/figures/niso_study"), help="summary JSON and picture")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--train-steps", type=int, default=3000, help="training steps per run (default 3000)")
    p.add_argument("--ckpt-every", type=int, default=1000, help="checkpoint interval of the training runs")
    p.add_argument("--head-steps", type=int, default=3000, help="hmnist_pred head steps (official: 20000)")
    p.add_argument("--head-warmup", type=int, default=300, help="head warm-up steps (official: 2000)")
    p.add_argument("--jobs", type=int, default=2, help="processes side by side, one thread each")
    p.add_argument("--no-control", action="store_true", help="leave out the untrained control arm")
    p.add_argument("--report-only", action="store_true", help="only aggregate the results that exist")
    args = p.parse_args(argv)
    if args.train_steps < 1 or args.head_steps < 2 or not 0 <= args.head_warmup < args.head_steps:
        p.error("need --train-steps >= 1, --head-steps >= 2 and 0 <= --head-warmup < --head-steps")
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        arms = [*ARMS] + ([] if args.no_control else [CONTROL])
        tasks = [(arm, seed) for seed in args.seeds for arm in arms]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = {pool.submit(arm_chain, arm, seed, args): (arm, seed) for arm, seed in tasks}
            failed = []
            for fut, (arm, seed) in futures.items():
                try:
                    fut.result()
                except RuntimeError as err:  # keep going: one failed run must not lose the others
                    failed.append(f"{arm} seed {seed}: {err}")
        for line in failed:
            print(f"[study] FAILED {line}", file=sys.stderr)
    from worldmodel.atomic import atomic_write_json

    summary = aggregate(args)
    atomic_write_json(args.figures / "study.json", summary)
    if summary["arms"]:
        plot(summary, args.figures / "study.png")
        from worldmodel.atomic import atomic_write_text

        atomic_write_text(args.figures / "study.md", markdown(summary))
    print(json.dumps({k: summary[k] for k in ("pixels", "verdict")}, indent=2))
    for row in summary["arms"].values():
        lo, hi = row["warped_ci95"]
        warped = f"warped {row['warped_mean']:5.1f}% [{lo:5.1f}, {hi:5.1f}]"
        eq = f"  equivariance error {row['equivariance_sq_mean']:.2f}%" if "equivariance_sq_mean" in row else ""
        print(f"{row['label']:<32} {warped}  clean {row['clean_mean']:5.1f}%{eq}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
