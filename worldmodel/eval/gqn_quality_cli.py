"""``wm eval gqn``: how well a trained GQN predicts held-out views, against two baselines.

::

    wm eval gqn --run RUN [--data DIR] [--scenes N] [--kmax K] [--samples N] [--seed S] [--out FILE.json]

Loads the newest checkpoint of ``RUN`` (or the checkpoint directory given), measures with
:func:`worldmodel.eval.gqn_quality.evaluate_quality` the PSNR of the query view predicted from
K = 1..kmax context views (prior mean and best of N prior samples, one prior sample) beside the
nearest-context-view and mean-context-image baselines, and the Bayesian surprise curve; writes
``FILE.json`` (atomically) and a figure ``FILE.png`` beside it.

Held-out scenes: ``--data DIR`` (a dataset the run never trained on, e.g. collected with another
``--seed``), or by default the validation split the run recorded in ``run.json``: its
``--val-data``, else the last ``val_fraction`` of its training data (the engine's split). The JSON
says which split and which scenes (global indices) were used, and warns when ``--data`` is the
run's training dataset.

Torch is imported inside the handler only, so ``wm --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_SCENES = 256
FORMAT = "wm-gqn-quality-v1"


def _run_dir(path: Path) -> Path | None:
    """The run directory of a run or checkpoint path (the one holding run.json), or None."""
    for p in (path, path.parent, path.parent.parent):
        if (p / "run.json").is_file():
            return p
    return None


def load_gqn(run: str, device: Any) -> tuple[Any, dict[str, Any]]:
    """The GQN of the newest checkpoint of ``run`` (eval mode, no gradients) and its checkpoint config.

    Raises ``FileNotFoundError``/``ValueError`` naming ``--run`` when there is no GQN checkpoint.
    """
    from worldmodel.checkpoint import read_checkpoint_config
    from worldmodel.models.gqn import load_frozen

    path = Path(run)
    if not path.exists():
        raise FileNotFoundError(f"--run {run}: no such run or checkpoint directory")
    try:
        meta = read_checkpoint_config(path)
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"--run {run}: holds no GQN checkpoint ({err}); train one with `wm train gqn`"
        ) from None
    if meta.get("learner") != "gqn":
        raise ValueError(
            f"--run {run}: its checkpoint is of learner {meta.get('learner')!r}, not 'gqn'; "
            "`wm eval gqn` evaluates GQN runs only"
        )
    encoder = load_frozen(str(path), device=device)
    return encoder.model, meta


def resolve_data(run: str, data: str | None) -> tuple[Any, list[int], dict[str, Any]]:
    """``(dataset, scene positions, description)`` of the held-out scenes.

    ``data`` given: every scene of that dataset. Otherwise the run's recorded validation split.
    """
    from worldmodel.data.reader import SceneDataset
    from worldmodel.run_metadata import read_run_metadata

    run_dir = _run_dir(Path(run))
    recorded_run = read_run_metadata(run_dir) if run_dir else {}
    train_cfg = (recorded_run.get("config") or {}).get("train", {})
    extra = recorded_run.get("extra") or {}
    if data:
        if not Path(data).is_dir():
            raise FileNotFoundError(f"--data {data}: no such dataset directory")
        ds = SceneDataset(data)
        train_path = train_cfg.get("data")
        same = bool(train_path) and Path(train_path).resolve() == Path(data).resolve()
        desc = {"split": "all scenes of --data", "overlaps_training": same}
        if same:
            desc["warning"] = (
                f"--data {data} is the run's training dataset: its scenes (but the last val_fraction) "
                "were trained on, so these are not held-out figures"
            )
        return ds, list(range(len(ds))), desc
    if run_dir is None:
        raise ValueError(
            f"--run {run}: no run.json found, so no recorded validation split; pass --data DIR (held-out scenes)"
        )
    if train_cfg.get("val_data"):
        path = train_cfg["val_data"]
        if not Path(path).is_dir():
            raise FileNotFoundError(
                f"the run's --val-data {path} (from {run_dir / 'run.json'}) does not exist here; pass --data DIR"
            )
        ds = SceneDataset(path)
        return ds, list(range(len(ds))), {"split": "the run's --val-data", "overlaps_training": False}
    fraction = float(train_cfg.get("val_fraction") or 0.0)
    path = train_cfg.get("data")
    if fraction <= 0 or not path:
        raise ValueError(
            f"--run {run}: the run recorded no validation split (val_fraction {fraction}, no val_data); "
            "pass --data DIR with held-out scenes"
        )
    if not Path(path).is_dir():
        raise FileNotFoundError(
            f"the run's training data {path} (from {run_dir / 'run.json'}) does not exist here "
            "(relative paths are relative to the directory training ran in); pass --data DIR"
        )
    ds = SceneDataset(path)
    n = len(ds)
    n_val = max(int(extra.get("world_size", 1) or 1), int(round(fraction * n)))  # the engine's split (train.data.split)
    recorded = ((extra.get("data") or {}).get("val") or {}).get("scenes")
    if recorded is not None and int(recorded) != n_val:
        raise ValueError(
            f"the run held out {recorded} scenes of {path} but {n_val} follow from val_fraction {fraction} "
            f"and its {n} scenes now: the dataset changed since training; pass --data DIR"
        )
    return (
        ds,
        list(range(n - n_val, n)),
        {
            "split": f"the run's validation split: the last {n_val} of {n} scenes of its "
            f"training data (val_fraction {fraction})",
            "overlaps_training": False,
        },
    )


def _device(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"--device {name!r} is not a device; valid values: auto, cpu, cuda, cuda:N") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available here; use --device cpu or auto")
    return dev


def _json_keys(table: dict[Any, Any]) -> dict[str, Any]:
    return {str(k): v for k, v in table.items()}


def _table(result: dict[str, Any]) -> str:
    from worldmodel.eval.gqn_quality import METHODS

    head = f"{'K':>2} " + "".join(f"{m:>17}" for m in METHODS) + f"{'gain(prior_mean)':>18}{'surprise':>10}"
    lines = ["held-out query PSNR in dB (mean [95% CI] over scenes)", head]
    for k, row in result["psnr"].items():
        cells = "".join(
            f"{row[m]['mean']:>8.2f} [{row[m]['ci'][0]:.1f},{row[m]['ci'][1]:.1f}]".rjust(17) for m in METHODS
        )
        gain = result["gain_over_nearest"][k]["prior_mean"]
        lines.append(f"{k:>2} {cells}{gain['mean']:>+18.2f}{result['surprise'][k]['mean']:>10.2f}")
    return "\n".join(lines)


def handle_gqn_quality(args: argparse.Namespace) -> int:
    """``wm eval gqn``."""
    import torch

    from worldmodel.atomic import atomic_write_json
    from worldmodel.data.loader import default_max_context
    from worldmodel.eval.gqn_quality import METHOD_DESCRIPTIONS, QualityConfig, evaluate_quality
    from worldmodel.eval.gqn_quality_plot import plot_quality
    from worldmodel.run_metadata import DEFAULT_PACKAGES, collect_run_metadata, package_versions, to_jsonable

    if args.scenes is not None and args.scenes < 1:
        raise ValueError(f"--scenes must be >= 1, got {args.scenes}")
    device = _device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, meta = load_gqn(args.run, device)
    dataset, scenes, split = resolve_data(args.run, args.data)
    if "warning" in split:
        print(f"wm eval gqn: warning: {split['warning']}", file=sys.stderr)
    views = int(dataset.views)
    if args.kmax is None:
        trained = model.config.max_context or default_max_context(str(dataset.info.get("source", "")), views)
        kmax = max(1, min(int(trained), views - 1))
    else:
        kmax = args.kmax
        if not 1 <= kmax <= views - 1:
            raise ValueError(
                f"--kmax {kmax}: the scenes of {dataset.root} have {views} views, so K context views plus "
                f"one query view allow --kmax 1..{views - 1}"
            )
    available = len(scenes)
    scenes = scenes[: args.scenes or DEFAULT_SCENES]
    config = QualityConfig(
        kmax=kmax,
        samples=args.samples,
        seed=args.seed,
        batch_size=args.batch_size,
        surprise_samples=args.surprise_samples,
        bootstrap=args.bootstrap,
        grid_scenes=args.grid_scenes,
    )
    t0 = time.perf_counter()
    res = evaluate_quality(model, dataset, scenes, config, device=device, progress=not args.no_progress)
    seconds = time.perf_counter() - t0

    info = collect_run_metadata({}, args.seed)
    result = {
        "format": FORMAT,
        "run": {
            "path": str(Path(args.run).resolve()),
            "checkpoint_dir": str(meta.get("checkpoint_dir")),
            "step": meta.get("step"),
            "learner": meta.get("learner"),
            "model": meta.get("model"),
        },
        "data": {
            "path": str(Path(dataset.root).resolve()),
            "source": dataset.info.get("source"),
            "collection_seed": dataset.info.get("seed"),
            "views": views,
            "size": int(dataset.size),
            "scenes_available": available,
            "scenes_used": len(scenes),
            **split,
            "scene_indices": res["scene_indices"],
        },
        "settings": {
            **to_jsonable(config),
            "device": str(device),
            "seeds": {"views_and_latents": args.seed, "bootstrap_base": args.seed * 7919},
        },
        "methods": METHOD_DESCRIPTIONS,
        "psnr": _json_keys(res["psnr"]),
        "gain_over_nearest": _json_keys(res["gain_over_nearest"]),
        "surprise": _json_keys(res["surprise"]),
        "per_scene": {
            "psnr": {m: _json_keys(t) for m, t in res["per_scene"]["psnr"].items()},
            "surprise": _json_keys(res["per_scene"]["surprise"]),
            "views_query_first": res["views"],
        },
        "seconds": round(seconds, 2),
        "command": info["command"],
        "created": info["created"],
        "versions": {
            "python": info["versions"]["python"],
            **package_versions((*DEFAULT_PACKAGES, "scipy", "matplotlib")),
        },
        "git": info["git"],
    }
    out = Path(args.out) if args.out else (_run_dir(Path(args.run)) or Path(meta["checkpoint_dir"])) / "eval_gqn.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, result)
    png = out.with_suffix(".png")
    tmp = png.with_name(f".{png.name}.tmp.png")
    try:
        plot_quality(result, res["grid"], str(tmp))
        os.replace(tmp, png)
    finally:
        if tmp.exists():
            tmp.unlink()
    print(_table(result))
    print(f"wrote {out} and {png} ({len(scenes)} scenes, {seconds:.1f} s)", file=sys.stderr)
    return 0


def add_gqn_quality_parser(sub: Any) -> None:
    """Add ``wm eval gqn`` to the ``wm eval`` subparsers."""
    p = sub.add_parser(
        "gqn",
        help="GQN novel-view quality: PSNR vs K context views against nearest/mean-context baselines, surprise",
        description="On held-out scenes, the PSNR of the query view predicted by a trained GQN from K = 1..KMAX "
        "context views (prior mean and best of N prior samples) beside two baselines (the context view nearest to the "
        "query camera, the mean context image), with bootstrap confidence intervals over scenes, and the "
        "Bayesian surprise KL(q||p) vs K. Writes FILE.json and FILE.png.",
    )
    p.add_argument("--run", required=True, help="GQN run directory (newest checkpoint) or checkpoint directory")
    p.add_argument(
        "--data",
        default=None,
        help="held-out dataset directory (default: the validation split recorded in the run's run.json)",
    )
    p.add_argument(
        "--scenes",
        type=int,
        default=None,
        help=f"use the first N held-out scenes (default: {DEFAULT_SCENES}, or all if fewer)",
    )
    p.add_argument(
        "--kmax",
        type=int,
        default=None,
        help="largest context size K (default: the model's training max_context, at most views - 1)",
    )
    p.add_argument("--samples", type=int, default=8, help="prior samples N per scene and K (default: 8)")
    p.add_argument(
        "--surprise-samples", type=int, default=2, help="posterior samples per surprise estimate (default: 2)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the view choice and of the latent draws (default: 0)")
    p.add_argument("--batch-size", type=int, default=16, help="scenes per forward pass (default: 16)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the CIs (default: 2000)")
    p.add_argument("--grid-scenes", type=int, default=4, help="scenes in the figure's sample grid (default: 4)")
    p.add_argument(
        "--out",
        default=None,
        metavar="FILE.json",
        help="result JSON; the figure goes beside it as FILE.png (default: RUN/eval_gqn.json)",
    )
    p.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: 0 = torch's default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=handle_gqn_quality)
