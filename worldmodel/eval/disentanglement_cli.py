"""``wm eval disentanglement``: disentanglement metrics of a frozen encoder on a ground-truth factor dataset.

::

    wm eval disentanglement --run RUN --data shapes|DIR|FILE.npz --metrics factorvae,betavae,mig,dci,sap \\
        --seed 0 --out results.json

* ``--run``: a trained run or checkpoint directory, loaded with :func:`worldmodel.load_encoder`;
  its codes are the encoder's features (a VAE's posterior means). Single-channel observations are
  repeated to three channels when the encoder wants RGB; encoders that take a viewpoint get a
  fixed zero viewpoint (the factor datasets have no camera).
* ``--data``: ``shapes`` (the procedural dSprites grid, ``worldmodel.data.shapes.ShapesDataset``),
  the official ``dsprites_ndarray_*.npz`` (recognised by its ``latents_classes`` array), or a
  factor file / directory in the format of :mod:`worldmodel.data.factors` (``factors.npz``).
* writes ``--out`` (JSON: scores, full per-metric results, timings, resolved config, versions,
  command) atomically, and a bar plot beside it (same name, ``.png``).

Torch, scikit-learn and matplotlib are imported inside the handler only, so ``wm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

SHAPES = "shapes"


def load_factor_data(spec: str, size: int | None = None) -> Any:
    """The :class:`~worldmodel.data.factors.FactorDataset` named by ``--data``."""
    from worldmodel.data.factors import FACTOR_FILE, FactorDataError, load_factor_npz

    if spec == SHAPES:
        from worldmodel.data.shapes import ShapesDataset

        return ShapesDataset(size=size or 64)
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(
            f"--data {spec}: no such file or directory (expected '{SHAPES}', a directory "
            f"holding {FACTOR_FILE} or a .npz factor file)"
        )
    npz = path / FACTOR_FILE if path.is_dir() else path
    if npz.suffix == ".npz" and npz.is_file():
        import numpy as np

        with np.load(npz, allow_pickle=False) as z:
            dsprites = "latents_classes" in z.files
        if dsprites:
            from worldmodel.data.shapes import DSpritesNpz

            return DSpritesNpz(npz)
    try:
        return load_factor_npz(path)
    except FactorDataError as exc:
        raise FactorDataError(f"--data {spec}: {exc}") from None


def encoder_representation_fn(encoder: Any, batch_size: int = 256) -> Any:
    """``representation_fn(obs float32 [n,C,H,W]) -> float32 [n, D]`` of a :class:`~worldmodel.encoders.FrozenEncoder`.

    Single-channel observations are repeated to RGB if the encoder rejects one channel (decided
    once, on the first batch); encoders with ``uses_viewpoint`` get a zero viewpoint.
    """
    import numpy as np

    state: dict[str, bool] = {}

    def fn(obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float32)
        if x.shape[1] == 1:
            if "rgb" not in state:
                state["rgb"] = not _accepts_one_channel(encoder, x.shape[-1])
            if state["rgb"]:
                x = np.repeat(x, 3, axis=1)
        out = []
        for i in range(0, x.shape[0], batch_size):
            chunk = x[i : i + batch_size]
            views = np.zeros((chunk.shape[0], 7), dtype=np.float32) if encoder.uses_viewpoint else None
            out.append(encoder.encode_numpy(chunk, views))
        return np.concatenate(out, axis=0)

    return fn


def _accepts_one_channel(encoder: Any, size: int) -> bool:
    """Whether the encoder takes ``[B,1,H,W]`` frames (a dSprites VAE) rather than RGB only."""
    import numpy as np

    views = np.zeros((1, 7), dtype=np.float32) if encoder.uses_viewpoint else None
    try:
        encoder.encode_numpy(np.zeros((1, 1, size, size), dtype=np.float32), views)
        return True
    except (ValueError, RuntimeError):
        return False


def plot_scores(path: str | Path, scores: dict[str, float], title: str) -> None:
    """A bar plot of the headline scores (0..1) to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from worldmodel.atomic import atomic_write_bytes

    names = list(scores)
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(names), 3.4))
    bars = ax.bar(names, [scores[n] for n in names], color="#4c72b0")
    for b, n in zip(bars, names, strict=True):
        ax.annotate(
            f"{scores[n]:.2f}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=9
        )
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("score")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def build_config(args: argparse.Namespace) -> Any:
    """The :class:`~worldmodel.eval.disentanglement.EvalConfig` of the command-line options."""
    from worldmodel.eval.disentanglement import preset_config

    config = preset_config(args.preset)
    if args.dci_importance:
        config = replace(config, dci=replace(config.dci, importance=args.dci_importance))
    if args.batch_size:
        config = replace(
            config,
            factorvae=replace(config.factorvae, batch_size=args.batch_size),
            betavae=replace(config.betavae, encode_batch_size=args.batch_size),
            samples=replace(config.samples, batch_size=args.batch_size),
        )
    return config


def handle_disentanglement(args: argparse.Namespace) -> int:
    """``wm eval disentanglement``."""
    import numpy as np

    from worldmodel import load_encoder
    from worldmodel.atomic import atomic_write_text
    from worldmodel.eval.disentanglement import evaluate, parse_metrics
    from worldmodel.run_metadata import collect_run_metadata, package_versions, to_jsonable

    metrics = parse_metrics(args.metrics)
    out = Path(args.out)
    if out.suffix != ".json":
        raise ValueError(f"--out {args.out}: expected a .json file name")
    if not Path(args.run).is_dir():
        raise FileNotFoundError(f"--run {args.run}: no such run or checkpoint directory")
    config = build_config(args)
    from worldmodel.data.scene_factors import is_scene_dataset

    if is_scene_dataset(args.data):  # a collected scene dataset: sample metrics on its recorded factors
        from worldmodel.eval.disentanglement.scenes import handle_scene_disentanglement

        return handle_scene_disentanglement(args, config)
    dataset = load_factor_data(args.data, args.size)
    encoder = load_encoder(args.run, device=args.device)
    fn = encoder_representation_fn(encoder, batch_size=args.batch_size or 256)
    t0 = time.perf_counter()
    res = evaluate(dataset, fn, metrics, seed=args.seed, config=config, progress=not args.no_progress)
    total = time.perf_counter() - t0
    meta = collect_run_metadata(config, args.seed)
    meta["versions"].update(package_versions(("scikit-learn", "scipy", "matplotlib")))
    result = {
        "format": "wm-disentanglement-v1",
        "run": str(args.run),
        "encoder": {
            "name": encoder.name,
            "feature_dim": encoder.feature_dim,
            "viewpoint": "zeros" if encoder.uses_viewpoint else None,
        },
        "data": args.data,
        "factors": {"names": list(dataset.factor_names), "sizes": [int(s) for s in dataset.factor_sizes]},
        "metrics": list(metrics),
        "preset": args.preset,
        "seed": args.seed,
        "scores": res["scores"],
        "results": res["metrics"],
        "seconds": {
            "total": total,
            "sampling": res["sampling_seconds"],
            **{n: r["seconds"] for n, r in res["metrics"].items()},
        },
        "config": res["config"],
        "versions": meta["versions"],
        "command": meta["command"],
        "created": meta["created"],
        "git": meta["git"],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(to_jsonable(result), indent=2, default=lambda o: np.asarray(o).tolist()) + "\n")
    png = out.with_suffix(".png")
    plot_scores(png, res["scores"], f"{encoder.name} on {Path(args.data).name} (seed {args.seed})")
    for name in metrics:
        print(f"{name:<10} {res['scores'][name]:.3f}   ({res['metrics'][name]['seconds']:.1f} s)", file=sys.stderr)
    print(f"wrote {out} and {png}", file=sys.stderr)
    return 0


def add_disentanglement_parser(sub: Any) -> None:
    """Add ``wm eval disentanglement`` to the ``wm eval`` subparsers."""
    from worldmodel.eval.disentanglement import IMPORTANCE_CHOICES, METRICS, PRESETS

    p = sub.add_parser(
        "disentanglement",
        help="disentanglement metrics (FactorVAE, beta-VAE, MIG, DCI, SAP) of a frozen encoder on factor data",
        description="Score a frozen encoder's codes against ground-truth factors: FactorVAE score (Kim & Mnih 2018), "
        "beta-VAE score (Higgins et al. 2017), MIG (Chen et al. 2018), DCI (Eastwood & Williams 2018) and "
        "SAP (Kumar et al. 2018). Writes --out (JSON) and a bar plot beside it (.png). "
        "See docs/disentanglement.md.",
    )
    p.add_argument("--run", required=True, help="trained run or checkpoint directory (any learner load_encoder knows)")
    p.add_argument(
        "--data",
        default=SHAPES,
        help="'shapes' (procedural dSprites grid), a dsprites_ndarray_*.npz, a factor .npz / directory "
        "holding factors.npz, or a scene dataset directory with recorded factors (jaco, rooms: MIG, "
        "DCI, SAP only) (default: shapes)",
    )
    p.add_argument(
        "--metrics",
        default=",".join(METRICS),
        help=f"comma-separated subset of {','.join(METRICS)} or 'all' (default: all)",
    )
    p.add_argument(
        "--preset",
        choices=PRESETS,
        default="paper",
        help="sample sizes: paper (the papers' protocols; FactorVAE L=100, 800+800 votes), "
        "disentanglement_lib (its study settings), quick (a fast smoke test) (default: paper)",
    )
    p.add_argument(
        "--dci-importance",
        choices=IMPORTANCE_CHOICES,
        default=None,
        help="DCI importance model (default: the preset's; gbt for paper and disentanglement_lib)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every draw (default: 0)")
    p.add_argument("--out", required=True, help="output JSON file (the plot goes beside it as .png)")
    p.add_argument("--size", type=int, default=None, help="image size of --data shapes (default: 64)")
    p.add_argument(
        "--scenes",
        default=None,
        help="scene dataset only: scenes START:STOP to score (e.g. 480:600, or --scenes=-120: for the "
        "last 120; default: all)",
    )
    p.add_argument(
        "--bins", type=int, default=10, help="scene dataset only: quantile bins per continuous factor (default: 10)"
    )
    p.add_argument("--batch-size", type=int, default=None, help="observations per encoder call (default: the preset's)")
    p.add_argument("--device", default="cpu", help="where the encoder runs (default: cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=handle_disentanglement)
