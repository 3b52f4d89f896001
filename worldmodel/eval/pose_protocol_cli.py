"""``wm eval niso trajectory``: camera pose by the chained-trajectory ATE (:mod:`worldmodel.eval.pose_protocol`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from worldmodel.eval.eval_cli_io import add_threads_option
from worldmodel.eval.pose_trajectory import ATE_METHODS, TRAJECTORY_SKIPS


def split_scenes(data: str, val_data: str | None, test_fraction: float) -> tuple[Any, Any]:
    """``(train, test)``: ``val_data`` as the test set, else the last ``test_fraction`` of ``data``'s scenes."""
    from worldmodel.data.reader import SceneDataset
    from worldmodel.train.data import SceneSubset

    full = SceneDataset(data)
    if val_data:
        return full, SceneDataset(val_data)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"--test-fraction must be in (0, 1), got {test_fraction}")
    n_test = max(1, int(round(test_fraction * len(full))))
    if n_test >= len(full):
        raise ValueError(f"{data}: {len(full)} scenes are too few to hold out {n_test} for testing")
    cut = len(full) - n_test
    return SceneSubset(full, range(cut)), SceneSubset(full, range(cut, len(full)))


def handle_trajectory(args: argparse.Namespace) -> int:
    """``wm eval niso trajectory``."""
    from worldmodel.eval.eval_cli_io import apply_threads, load_niso_arg, write_result
    from worldmodel.eval.niso_eval import HeadConfig
    from worldmodel.eval.pose_protocol import TrajectoryProtocolConfig, trajectory_protocol

    apply_threads(args.threads)

    train, test = split_scenes(args.data, args.val_data, args.test_fraction)
    models: dict[str, Any] = {}
    for arg in args.checkpoints:
        name, model, _ = load_niso_arg(arg, args.device)
        if model.operator is None:
            model.config.features = "grid"  # a plain autoencoder: its latent grids of both views
        while name in models:
            name += "'"
        models[name] = (model, "tau" if model.operator is not None else "concat")
    config = TrajectoryProtocolConfig(
        skips=tuple(args.skips),
        train_pairs=args.train_pairs,
        translation_loss=args.translation_loss,
        method=args.method,
        head=HeadConfig(steps=args.head_steps, hidden=args.head_hidden, seed=args.seed),
    )
    res = trajectory_protocol(models, train, test, config, seed=args.seed)
    print(f"ATE ({args.method}-aligned chained trajectory) per frame skip:", file=sys.stderr)
    print(f"{'model':<22} " + " ".join(f"{k:>7}" for k in args.skips), file=sys.stderr)
    for name in ["mean motion", *models]:
        per = res[name]["per_skip"]
        print(f"{name:<22} " + " ".join(f"{per[str(k)]['ate']:>7.3f}" for k in args.skips), file=sys.stderr)
    write_result(args.out, {"data": args.data, "val_data": args.val_data, **res})
    return 0


def add_trajectory_parser(sub: Any) -> None:
    """Register ``trajectory`` under ``wm eval niso``."""
    p = sub.add_parser(
        "trajectory",
        help="camera pose: relative poses chained along held-out sequences, Procrustes ATE per skip",
        description="Train a pose head (scale-invariant translation loss) on pair features of each "
        "checkpoint (vec(tau) for NISO, both views' latent grids for an autoencoder), chain its "
        "relative poses along every held-out scene's view sequence at each skip, align to the true "
        "camera path by a similarity and report the ATE (and RPE).",
    )
    p.add_argument("checkpoints", nargs="+", metavar="[NAME=]CKPT", help="NISO / autoencoder checkpoints or runs")
    p.add_argument("--data", required=True, help="scene dataset whose views follow a camera trajectory")
    p.add_argument("--val-data", default=None, help="held-out dataset (default: the last --test-fraction of --data)")
    p.add_argument("--test-fraction", type=float, default=0.2, help="scenes held out when --val-data is unset")
    p.add_argument(
        "--skips", type=int, nargs="+", default=list(TRAJECTORY_SKIPS), help="frame skips (default: 1 2 4 6 8 10)"
    )
    p.add_argument("--train-pairs", type=int, default=8192, help="training pairs of each head (default: 8192)")
    p.add_argument(
        "--translation-loss", choices=("scale_invariant", "l1"), default="scale_invariant", help="(default: official)"
    )
    p.add_argument("--method", choices=ATE_METHODS, default="umeyama", help="ATE alignment (default: umeyama)")
    p.add_argument("--head-steps", type=int, default=3000, help="optimiser steps of each head (default: 3000)")
    p.add_argument("--head-hidden", type=int, default=256, help="hidden width of the head (default: 256)")
    p.add_argument("--device", default="cpu", help="where to run the frozen models (default: cpu)")
    p.add_argument("--seed", type=int, default=0, help="seed of the heads and the training pairs (default: 0)")
    p.add_argument("--out", default=None, help="write the results as JSON to this file (default: print them)")
    add_threads_option(p)
    p.set_defaults(handler=handle_trajectory)
