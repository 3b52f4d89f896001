"""``wm eval niso ...``: downstream evaluations of trained NISO checkpoints (and baselines).

* ``wm eval niso classify CKPT [CKPT ...]``: homNIST protocol (train a head on clean digits,
  test on homography-warped ones); one row per checkpoint.
* ``wm eval niso hmnist CKPT [CKPT ...]``: the official ``hmnist_pred`` protocol (O(k)-invariant
  head, trainable Phi/M) on the homNIST-style test set, with the raw-pixel reference row.
* ``wm eval niso equivariance CKPT``: latent equivariance error ``||tau A - B||^2 / ||B||^2``.
* ``wm eval niso pose --niso CKPT --baseline CKPT --data DIR``: camera pose from ``vec(tau)``
  per frame skip, against an autoencoder-feature baseline (a per-pair RPE).
* ``wm eval niso trajectory CKPT [CKPT ...] --data DIR``: the official pose protocol: relative
  poses chained along held-out sequences at skips 1, 2, 4, 6, 8, 10, Procrustes-aligned ATE.

A checkpoint argument may be ``NAME=PATH`` to label its row; PATH is a checkpoint or run
directory. Torch is imported inside the handlers only.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from worldmodel.eval.eval_cli_io import add_threads_option, apply_threads

FEATURE_CHOICES = ("auto", "latent", "gram", "grid")


# Lazy: importing worldmodel.eval pulls in torch, which `wm envs ...` must not pay for.
def load_niso_arg(arg: str, device: str):
    """See :func:`worldmodel.eval.eval_cli_io.load_niso_arg`."""
    from worldmodel.eval.eval_cli_io import load_niso_arg as load

    return load(arg, device)


def write_result(out: str | None, result: dict[str, Any]) -> None:
    """See :func:`worldmodel.eval.eval_cli_io.write_result`."""
    from worldmodel.eval.eval_cli_io import write_result as write

    write(out, result)


def _head_config(args: argparse.Namespace):
    from worldmodel.eval.niso_eval import HeadConfig

    return HeadConfig(steps=args.head_steps, hidden=args.head_hidden, seed=args.seed)


def handle_classify(args: argparse.Namespace) -> int:
    """``wm eval niso classify``."""
    apply_threads(args.threads)
    import torch

    from worldmodel.eval.niso_eval import classification_eval, format_percent

    torch.manual_seed(args.seed)
    rows = []
    for arg in args.checkpoints:
        name, model, config = load_niso_arg(arg, args.device)
        features = None if args.features == "auto" else args.features
        res = classification_eval(
            model,
            source=args.source,
            features=features,
            head=_head_config(args),
            test_seed=args.test_seed,
            max_train=args.max_train,
        )
        rows.append({"name": name, "checkpoint": config.get("checkpoint_dir"), "step": config.get("step"), **res})
    print(f"{'model':<22} {'features':<8} {'dim':>6} {'clean':>8} {'warped':>8}", file=sys.stderr)
    for r in rows:
        print(
            f"{r['name']:<22} {r['features']:<8} {r['feature_dim']:>6} {format_percent(r['clean_accuracy']):>8} "
            f"{format_percent(r['warped_accuracy']):>8}",
            file=sys.stderr,
        )
    write_result(args.out, {"source": args.source, "test_seed": args.test_seed, "results": rows})
    return 0


def handle_hmnist(args: argparse.Namespace) -> int:
    """``wm eval niso hmnist``: the official protocol per checkpoint, plus the raw-pixel reference."""
    apply_threads(args.threads)
    from worldmodel.eval.homnist_pixels import pixel_baseline
    from worldmodel.eval.niso_protocol import ClassificationProtocolConfig, homnist_classification

    cfg = ClassificationProtocolConfig(
        head=args.head, steps=args.steps, warmup_steps=min(args.warmup_steps, args.steps - 1), seed=args.seed
    )
    common = dict(
        source=args.source,
        mat_path=args.mat,
        warps=args.warps,
        test_seed=args.test_seed,
        max_train=args.max_train,
        max_test_digits=args.max_test_digits,
    )
    rows, scales, size = [], set(), None
    for arg in args.checkpoints:
        name, model, config = load_niso_arg(arg, args.device)
        scales.add(float(model.config.sigma_scale))
        size = model.config.image_size
        res = homnist_classification(model, config=cfg, progress=not args.no_progress, **common)
        rows.append({"name": name, "checkpoint": config.get("checkpoint_dir"), "step": config.get("step"), **res})
    if args.pixels:
        if len(scales) > 1:
            raise ValueError(f"--pixels needs checkpoints with one sigma_scale (one test set), got {sorted(scales)}")
        rows.append({"name": "raw pixels (logistic)", **pixel_baseline(size=size, sigma_scale=scales.pop(), **common)})
    print(f"{'model':<24} {'clean':>8} {'warped':>8}", file=sys.stderr)
    for r in rows:
        clean, warped = 100 * r["clean_accuracy"], 100 * r["warped_accuracy"]
        print(f"{r['name']:<24} {clean:>7.1f}% {warped:>7.1f}%", file=sys.stderr)
    write_result(args.out, {"source": args.source, "protocol": "hmnist_pred", "results": rows})
    return 0


def handle_equivariance(args: argparse.Namespace) -> int:
    """``wm eval niso equivariance``."""
    apply_threads(args.threads)
    from worldmodel.eval.niso_eval import equivariance_eval

    rows = []
    for arg in args.checkpoints:
        name, model, config = load_niso_arg(arg, args.device)
        res = equivariance_eval(model, source=args.source, pairs=args.pairs, seed=args.seed)
        rows.append({"name": name, "checkpoint": config.get("checkpoint_dir"), **res})
        print(
            f"{name}: equivariance error {100 * res['equivariance_error']:.2f}% "
            f"(identity map: {100 * res['identity_error']:.2f}%) over {res['pairs']} held-out pairs",
            file=sys.stderr,
        )
    write_result(args.out, {"source": args.source, "results": rows})
    return 0


def handle_pose(args: argparse.Namespace) -> int:
    """``wm eval niso pose``."""
    apply_threads(args.threads)
    from worldmodel.eval.niso_eval import pose_eval
    from worldmodel.eval.pose_protocol_cli import split_scenes

    train, test = split_scenes(args.data, args.val_data, args.test_fraction)
    models: dict[str, Any] = {}
    name, niso, _ = load_niso_arg(args.niso, args.device)
    if niso.operator is None:
        raise ValueError(f"--niso {args.niso} is an autoencoder-mode checkpoint; pose from tau needs mode='niso'")
    models[name] = (niso, "tau")
    for arg in args.baseline or []:
        bname, base, _ = load_niso_arg(arg, args.device)
        if base.operator is None:
            base.config.features = "grid"
        models[bname if bname not in models else f"{bname} (baseline)"] = (base, "concat")
    res = pose_eval(
        models,
        train,
        test,
        train_pairs=args.train_pairs,
        test_pairs_per_skip=args.test_pairs,
        skips=tuple(args.skips),
        head=_head_config(args),
        seed=args.seed,
    )
    skips = [str(k) for k in range(args.skips[0], args.skips[1] + 1)]
    print("ATE (RMSE of the relative translation) per frame skip:", file=sys.stderr)
    print(f"{'model':<22} " + " ".join(f"{k:>7}" for k in skips), file=sys.stderr)
    for mname in models:
        per = res[mname]["per_skip"]
        print(f"{mname:<22} " + " ".join(f"{per[k]['ate']:>7.3f}" for k in skips), file=sys.stderr)
    write_result(args.out, {"data": args.data, "val_data": args.val_data, **res})
    return 0


def _common(p: argparse.ArgumentParser, source: bool = True) -> None:
    p.add_argument("--device", default="cpu", help="where to run the frozen models (default: cpu)")
    p.add_argument("--seed", type=int, default=0, help="seed of the heads and of the pair draws (default: 0)")
    p.add_argument("--out", default=None, help="write the results as JSON to this file (default: print them)")
    add_threads_option(p)
    if source:
        p.add_argument(
            "--source",
            default="digits",
            help="'digits' (scikit-learn's digits, offline stand-in for homNIST) "
            "or an MNIST IDX directory (default: digits)",
        )


def _head_options(p: argparse.ArgumentParser, steps: int) -> None:
    p.add_argument(
        "--head-steps", type=int, default=steps, help=f"optimiser steps of the downstream MLP head (default: {steps})"
    )
    p.add_argument("--head-hidden", type=int, default=256, help="hidden width of the head (default: 256)")


def add_commands(subparsers: Any) -> None:
    """Register ``wm eval`` with the ``wm`` dispatcher."""
    ev = subparsers.add_parser(
        "eval",
        help="downstream evaluations of trained representations (niso, probe, gqn, disentanglement)",
        description="Downstream evaluations of trained representation learners.",
    )
    learners = ev.add_subparsers(dest="eval_learner", metavar="LEARNER", required=True)
    niso = learners.add_parser(
        "niso",
        help="NISO: classification under homographies, equivariance error, camera pose",
        description="Evaluate NISO checkpoints (and autoencoder baselines) as in Mitchel et al. 2024.",
    )
    sub = niso.add_subparsers(dest="eval_command", metavar="EVAL", required=True)

    p = sub.add_parser(
        "classify",
        help="homNIST protocol: head on clean digits, tested on warped digits",
        description="Train an MLP head on frozen features of clean training digits and report accuracy "
        "on homography-warped (and clean) test digits, one row per checkpoint.",
    )
    p.add_argument("checkpoints", nargs="+", metavar="[NAME=]CKPT", help="checkpoint or run directories")
    p.add_argument(
        "--features",
        choices=FEATURE_CHOICES,
        default="auto",
        help="features fed to the head: auto ('gram' for NISO, 'grid' for an autoencoder), latent, gram, grid",
    )
    p.add_argument("--test-seed", type=int, default=1234, help="seed of the test homographies (default: 1234)")
    p.add_argument("--max-train", type=int, default=None, help="use at most this many training digits")
    _head_options(p, 1500)
    _common(p)
    p.set_defaults(handler=handle_classify)

    p = sub.add_parser(
        "hmnist",
        help="official hmnist_pred protocol (O(k)-invariant head, trainable Phi/M) with the raw-pixel reference",
        description="Train the official O(k)-invariant head (and a copy of Phi, M) on frozen encoders of clean "
        "training digits; test on the homNIST-style test set (32 Metropolis-walk warps per test digit) or "
        "the published homNIST_test.mat. One row per checkpoint, plus raw pixels with --pixels.",
    )
    p.add_argument("checkpoints", nargs="+", metavar="[NAME=]CKPT", help="NISO (or --ae-bottleneck AE) checkpoints")
    p.add_argument("--head", choices=("orth", "gram"), default="orth", help="head (default: orth, the official)")
    p.add_argument("--steps", type=int, default=20_000, help="head optimiser steps (default: 20000, official)")
    p.add_argument("--warmup-steps", type=int, default=2000, help="linear warm-up steps (default: 2000, official)")
    p.add_argument("--warps", type=int, default=32, help="warps per test digit (default: 32, homNIST)")
    p.add_argument("--mat", default=None, help="the published homNIST_test.mat (default: generate the test set)")
    p.add_argument("--test-seed", type=int, default=1234, help="seed of the generated test set (default: 1234)")
    p.add_argument("--max-train", type=int, default=None, help="use at most this many training digits")
    p.add_argument("--max-test-digits", type=int, default=None, help="use at most this many test digits")
    p.add_argument("--pixels", action="store_true", help="add the raw-pixel logistic-regression reference row")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _common(p)
    p.set_defaults(handler=handle_hmnist)

    p = sub.add_parser("equivariance", help="latent equivariance error ||tau A - B||^2 / ||B||^2 on held-out pairs")
    p.add_argument("checkpoints", nargs="+", metavar="[NAME=]CKPT", help="NISO checkpoint or run directories")
    p.add_argument("--pairs", type=int, default=512, help="held-out pairs (default: 512)")
    _common(p)
    p.set_defaults(handler=handle_equivariance)

    p = sub.add_parser(
        "pose",
        help="camera pose from vec(tau) per frame skip vs an autoencoder-feature baseline",
        description="Regress the relative camera transform of view pairs (frame skips 0..9) of a scene "
        "dataset from vec(tau) of a NISO checkpoint and from the features of baseline checkpoints; "
        "report the ATE (RMSE of the relative translation) and rotation error per skip "
        "on held-out scenes.",
    )
    p.add_argument(
        "--niso", required=True, metavar="[NAME=]CKPT", help="NISO checkpoint (mode niso) trained on the scenes"
    )
    p.add_argument(
        "--baseline",
        action="append",
        metavar="[NAME=]CKPT",
        help="baseline checkpoint(s), e.g. a NISO trained with --mode autoencoder (repeatable)",
    )
    p.add_argument("--data", required=True, help="scene dataset directory (written by `wm data collect`)")
    p.add_argument(
        "--val-data", default=None, help="held-out scene dataset (default: the last --test-fraction of --data)"
    )
    p.add_argument(
        "--test-fraction", type=float, default=0.2, help="fraction of scenes held out when --val-data is unset"
    )
    p.add_argument("--train-pairs", type=int, default=4096, help="training pairs for the pose heads (default: 4096)")
    p.add_argument("--test-pairs", type=int, default=256, help="test pairs per frame skip (default: 256)")
    p.add_argument(
        "--skips", type=int, nargs=2, default=(0, 9), metavar=("MIN", "MAX"), help="frame skips (default: 0 9)"
    )
    _head_options(p, 2000)
    _common(p, source=False)
    p.set_defaults(handler=handle_pose)

    from worldmodel.eval.pose_protocol_cli import add_trajectory_parser

    add_trajectory_parser(sub)

    from worldmodel.eval.probe_cli import add_probe_parser

    add_probe_parser(learners)

    from worldmodel.eval.gqn_quality_cli import add_gqn_quality_parser

    add_gqn_quality_parser(learners)

    from worldmodel.eval.disentanglement_cli import add_disentanglement_parser

    add_disentanglement_parser(learners)
