"""The Lie-derivative paper's aliasing finding, reproduced small (docs/diagnostics.md).

Trains the strided and the blur-pooled digit CNN (worldmodel.diagnostics.aliasing) with 3 seeds
each, the same way, on clean homography-stand-in digits (40x40), then measures on the test digits

* the LEE of the softmax outputs for every geometric transform and brightness;
* the layer-wise attribution of the translation-x LEE (Hutchinson probes, plus the exact
  estimator as a check);

and writes ``OUT/results.json`` (atomically) and a figure. About 3-5 CPU minutes on one thread.

    OMP_NUM_THREADS=1 python scripts/lee_aliasing.py --out runs/diag/aliasing --figure docs/figures/lee_aliasing.png
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worldmodel.atomic import atomic_write_json  # noqa: E402
from worldmodel.diagnostics.aliasing import VARIANTS, DigitTrainConfig, train_digit_cnn  # noqa: E402
from worldmodel.diagnostics.layerwise import layerwise_lee  # noqa: E402
from worldmodel.diagnostics.lie_derivative import local_equivariance_error  # noqa: E402
from worldmodel.diagnostics.transforms import GEOMETRIC_NAMES  # noqa: E402

T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}


def seed_stats(values: list[float]) -> dict[str, float]:
    """Mean over seeds with a 95% t-interval."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"mean": mean, "ci_low": float("nan"), "ci_high": float("nan")}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = T_975.get(n - 1, 1.96) * sd / math.sqrt(n)
    return {"mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--out", default="runs/diag/aliasing", help="directory for results.json (default: runs/diag/aliasing)"
    )
    p.add_argument("--figure", default="docs/figures/lee_aliasing.png", help="PNG to write")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=400, help="training steps per run (default: 400)")
    p.add_argument("--layer-images", type=int, default=128, help="test digits for the layer-wise attribution")
    p.add_argument("--probes", type=int, default=32, help="Hutchinson probes per image")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--replot", action="store_true", help="only redraw the figure from OUT/results.json")
    args = p.parse_args(argv)
    if args.replot:
        import json

        plot(json.loads((Path(args.out) / "results.json").read_text()), args.figure)
        return 0
    torch.set_num_threads(args.threads)
    from tqdm.auto import tqdm

    from worldmodel.data.homography import load_digit_images

    cfg = DigitTrainConfig(steps=args.steps)
    test_x, _ = load_digit_images(cfg.source, "test", cfg.size)
    test_x = test_x.float() / 255.0
    transforms = [*GEOMETRIC_NAMES, "brightness"]
    runs = []
    t_start = time.perf_counter()
    for variant in VARIANTS:
        for seed in tqdm(args.seeds, desc=f"{variant} seeds"):
            model, metrics = train_digit_cnn(variant, seed, cfg)
            # Zero padding: the digits' canvas is black, so zeros is what lies outside it.
            lee = local_equivariance_error(model, test_x, transforms, head="softmax", batch_size=120, padding="zeros")
            layer_x = test_x[: args.layer_images]
            hutch = layerwise_lee(
                model, layer_x, "translate_x", head="softmax", probes=args.probes, seed=seed, padding="zeros"
            )
            exact = layerwise_lee(model, layer_x, "translate_x", head="softmax", estimator="exact", padding="zeros")
            runs.append(
                {
                    **metrics,
                    "lee": {k: v.summary() for k, v in lee.items()},
                    "layerwise_translate_x": hutch.summary(),
                    "layerwise_translate_x_exact": exact.summary(),
                }
            )
            print(
                f"{variant} seed {seed}: acc {metrics['test_accuracy']:.3f}, LEE translate_x "
                f"{lee['translate_x'].mean:.4g} (rotate {lee['rotate'].mean:.4g})",
                file=sys.stderr,
            )
    summary: dict[str, dict] = {}
    for tname in transforms:
        per = {v: [r["lee"][tname]["lee"] for r in runs if r["variant"] == v] for v in VARIANTS}
        summary[tname] = {v: {"per_seed": per[v], **seed_stats(per[v])} for v in VARIANTS}
        s, b = summary[tname]["strided"]["mean"], summary[tname]["blurpool"]["mean"]
        summary[tname]["ratio_strided_over_blurpool"] = s / b if b > 0 else float("nan")
        summary[tname]["blurpool_lower_every_seed_pair"] = bool(max(per["blurpool"]) < min(per["strided"]))
    acc = {v: seed_stats([r["test_accuracy"] for r in runs if r["variant"] == v]) for v in VARIANTS}
    result = {
        "command": " ".join(["python", "scripts/lee_aliasing.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": platform.platform(),
        "torch": torch.__version__,
        "threads": args.threads,
        "seconds": time.perf_counter() - t_start,
        "train": vars(cfg) | {"widths": list(cfg.widths)},
        "test_digits": int(test_x.shape[0]),
        "accuracy": acc,
        "summary": summary,
        "runs": runs,
    }
    out = Path(args.out)
    atomic_write_json(out / "results.json", result)
    plot(result, args.figure)
    print(f"wrote {out / 'results.json'} and {args.figure}", file=sys.stderr)
    return 0


def plot(result: dict, path: str) -> None:
    """Per-transform LEE (seed dots, mean bars) and the translation-x layer-wise shares."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, runs = result["summary"], result["runs"]
    names = list(summary)
    colours = {"strided": "#d95f02", "blurpool": "#1b9e77"}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 4.8), gridspec_kw={"width_ratios": [1.1, 1.4]})
    width = 0.38
    for k, v in enumerate(VARIANTS):
        xs = [i + (k - 0.5) * width for i in range(len(names))]
        means = [summary[n][v]["mean"] for n in names]
        ax1.bar(xs, means, width, color=colours[v], alpha=0.6, label=v)
        for x, n in zip(xs, names, strict=True):
            ax1.scatter([x] * len(summary[n][v]["per_seed"]), summary[n][v]["per_seed"], s=10, color="k", zorder=3)
    ax1.set_yscale("log")
    ax1.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax1.set_ylabel("LEE of softmax outputs (per unit$^2$)")
    ax1.set_title("LEE per transform (bars: mean of 3 seeds, dots: seeds)")
    ax1.legend()
    # layer-wise: mean contribution per layer over seeds (exact estimator agrees, see results.json)
    ticks, tick_labels = [], []
    for k, v in enumerate(VARIANTS):
        vr = [r for r in runs if r["variant"] == v]
        layers = vr[0]["layerwise_translate_x"]["layers"]
        shares = [
            sum(r["layerwise_translate_x"]["layers"][i]["share"] for r in vr) / len(vr) for i in range(len(layers))
        ]
        offset = 0 if k == 0 else len(runs[0]["layerwise_translate_x"]["layers"]) + 1
        xs = [offset + i for i in range(len(layers))]
        ax2.bar(xs, shares, color=colours[v], alpha=0.8, label=v)
        ticks += xs
        tick_labels += [f"{lay['name']} {lay['module']}" for lay in layers]
    ax2.axhline(0, color="k", lw=0.6)
    ax2.set_xticks(ticks, tick_labels, rotation=90, fontsize=7)
    ax2.set_ylabel("contribution to translate_x LEE\n(mean over seeds)")
    ax2.set_title("layer-wise attribution of translate_x (Hutchinson, 32 probes)")
    ax2.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
