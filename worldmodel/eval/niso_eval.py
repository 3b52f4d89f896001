"""Downstream evaluations of NISO (Mitchel et al. 2024) and its baselines.

* :func:`classification_eval`: a simplified homNIST-style protocol (the official ``hmnist_pred``
  one, with trainable ``Phi``/``M`` and 32 Metropolis-walk warps per test digit, is
  :func:`worldmodel.eval.niso_protocol.homnist_classification`). A head is trained on the frozen features of
  *clean* training digits and tested on *warped* test digits (each by its own random
  homography) and on clean test digits. NISO uses its ``gram`` features ``A^T A`` (invariant to
  any orthogonal ``tau``: the representation-level counterpart of the paper's O(k)-invariant
  head); an autoencoder uses its raw latent grid.
* :func:`equivariance_eval`: latent equivariance error ``||tau A - B||^2 / ||B||^2`` on held-out
  homography pairs (the paper reports 4.06% on homNIST), next to the error of the identity map
  ``||A - B||^2 / ||B||^2`` (how much the latents move at all).
* :func:`pose_eval`: camera pose from ``vec(tau)`` of view pairs of a scene dataset (an MLP to
  a 9-d output lifted to SO(3) plus a translation), per frame skip, against a baseline that
  regresses the pose from an autoencoder's features of both views. Its ``ate`` key is a per-pair
  relative translation RMSE, i.e. an RPE; the official chained, Procrustes-aligned ATE is in
  :mod:`worldmodel.eval.pose_trajectory`.

Warps use the model's ``sigma_scale``.

The heads are small and train in seconds on a CPU; the representation models are frozen.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from worldmodel.data.homography import HOMOGRAPHY_SIGMAS, load_digit_images, sample_homographies, warp, warped_test_set
from worldmodel.models.isometry import equivariance_error


@torch.no_grad()
def encode_images(
    model: nn.Module, images: torch.Tensor, features: str | None = None, batch_size: int = 256
) -> torch.Tensor:
    """Features ``[n, D]`` (float32, CPU) of uint8 images ``[n, C, H, W]`` with ``model.features``."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(device).float().div_(255.0)
        out.append(model.features(x, features).float().cpu())
    return torch.cat(out)


class MLPHead(nn.Module):
    """Standardise the input features (statistics of the training set), then a 2-layer MLP."""

    def __init__(
        self, mean: torch.Tensor, std: torch.Tensor, out_dim: int, hidden: int = 256, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.net = nn.Sequential(
            nn.Linear(mean.numel(), hidden),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


@dataclass
class HeadConfig:
    """Training of a downstream head on frozen features."""

    hidden: int = 256
    """Width of the two hidden layers."""
    steps: int = 1500
    """Optimiser steps (minibatches)."""
    batch_size: int = 128
    """Examples per step."""
    lr: float = 1e-3
    """AdamW learning rate (cosine-annealed to 0)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    dropout: float = 0.1
    """Dropout after the first hidden layer."""
    seed: int = 0
    """Seed of the head's initialisation and minibatch order."""


def fit_head(
    x: torch.Tensor, y: torch.Tensor, out_dim: int, loss_fn, config: HeadConfig, desc: str = "head"
) -> MLPHead:
    """Train an :class:`MLPHead` on features ``x`` and targets ``y`` with ``loss_fn(pred, y)``."""
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    head = MLPHead(x.mean(0), x.std(0).clamp_min(1e-6), out_dim, config.hidden, config.dropout)
    opt = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, config.steps))
    head.train()
    for _ in tqdm(range(config.steps), desc=desc, leave=False, mininterval=2.0):
        idx = torch.randint(0, x.shape[0], (min(config.batch_size, x.shape[0]),), generator=gen)
        loss = loss_fn(head(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return head.eval()


@torch.no_grad()
def _accuracy(head: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((head(x).argmax(-1) == y).float().mean())


def default_features(model: nn.Module) -> str:
    """``"gram"`` for a NISO model (invariant to tau), ``"latent"`` (its ``k x d`` coefficients) for the
    bottlenecked autoencoder, ``"grid"`` for a plain autoencoder."""
    if getattr(model, "operator", None) is not None:
        return "gram"
    return "latent" if getattr(model, "bottleneck", None) is not None else "grid"


def classification_eval(
    model: nn.Module,
    source: str = "digits",
    features: str | None = None,
    head: HeadConfig | None = None,
    test_seed: int = 1234,
    max_train: int | None = None,
) -> dict[str, Any]:
    """homNIST-style classification of frozen features: train on clean digits, test on warped ones.

    Args:
        model: a trained :class:`worldmodel.models.niso.Niso` (any mode).
        source: ``"digits"`` or an MNIST IDX directory (see :mod:`worldmodel.data.homography`).
        features: feature kind for ``model.features`` (default: :func:`default_features`).
        head: head training settings.
        test_seed: seed of the test homographies (fixed: every model sees the same test set).
        max_train: use at most this many training digits (quick runs).

    Returns:
        dict with ``warped_accuracy``, ``clean_accuracy``, ``features``, ``feature_dim``, counts.
    """
    head = head or HeadConfig()
    features = features or default_features(model)
    size = model.config.image_size
    train_x, train_y = load_digit_images(source, "train", size)
    if max_train is not None:
        train_x, train_y = train_x[:max_train], train_y[:max_train]
    test_x, test_y = load_digit_images(source, "test", size)
    scale = getattr(model.config, "sigma_scale", 1.0)  # the model's own warp strength
    warped_x, _ = warped_test_set(test_x, seed=test_seed, sigmas=tuple(s * scale for s in HOMOGRAPHY_SIGMAS))
    f_train = encode_images(model, train_x, features)
    clf = fit_head(f_train, train_y, 10, F.cross_entropy, head, desc=f"classifier ({features})")
    return {
        "features": features,
        "feature_dim": int(f_train.shape[1]),
        "train_digits": int(train_x.shape[0]),
        "test_digits": int(test_x.shape[0]),
        "clean_accuracy": _accuracy(clf, encode_images(model, test_x, features), test_y),
        "warped_accuracy": _accuracy(clf, encode_images(model, warped_x, features), test_y),
        "train_accuracy": _accuracy(clf, f_train, train_y),
        "head": asdict(head),
    }


@torch.no_grad()
def equivariance_eval(
    model: nn.Module,
    source: str = "digits",
    pairs: int = 512,
    seed: int = 4321,
    batch_size: int = 128,
    split: str = "test",
) -> dict[str, Any]:
    """Latent equivariance error on held-out homography pairs ``(x, H x)``.

    Returns ``equivariance_error`` (mean of ``||tau A - B||^2 / ||B||^2``), its median, and
    ``identity_error`` (the same with ``tau = I``), over ``pairs`` pairs of the ``split`` digits.
    """
    if getattr(model, "operator", None) is None:
        raise ValueError("equivariance_eval needs a NISO model (mode='niso'); an autoencoder has no latent map tau")
    model.eval()
    device = next(model.parameters()).device
    images, _ = load_digit_images(source, split, model.config.image_size)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, images.shape[0], (pairs,), generator=gen)
    errs, ids = [], []
    for start in range(0, pairs, batch_size):
        x = images[idx[start : start + batch_size]].float() / 255.0
        y = warp(x, sample_homographies(x.shape[0], gen, scale=getattr(model.config, "sigma_scale", 1.0)))
        maps = model.pair_maps(x.to(device), y.to(device))
        errs.append(maps["equivariance_error"].cpu())
        eye = torch.eye(maps["tau"].shape[-1], device=device).expand_as(maps["tau"])
        ids.append(equivariance_error(eye, maps["a"], maps["b"]).cpu())
    e, i = torch.cat(errs), torch.cat(ids)
    return {
        "pairs": int(pairs),
        "equivariance_error": float(e.mean()),
        "equivariance_error_median": float(e.median()),
        "identity_error": float(i.mean()),
        "ratio_to_identity": float(e.mean() / i.mean().clamp_min(1e-12)),
    }


def format_percent(x: float) -> str:
    """``0.925 -> '92.5%'`` (``nan`` stays ``nan``)."""
    return "nan" if math.isnan(x) else f"{100.0 * x:.1f}%"


# ----------------------------------------------------------------------------- camera pose


def _rotation_from_9d(x: torch.Tensor) -> torch.Tensor:
    """Lift ``[..., 9]`` to rotations ``[..., 3, 3]`` (nearest rotation via the stable SVD projection)."""
    from worldmodel.models.isometry import polar_project

    return polar_project(x.reshape(*x.shape[:-1], 3, 3), special=True)


def pose_from_output(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a 12-d head output into a rotation ``[B,3,3]`` (first 9, lifted to SO(3)) and a translation ``[B,3]``."""
    return _rotation_from_9d(out[..., :9]), out[..., 9:12]


def pose_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between predicted and true rotation matrices plus L1 between translations (targets ``[B,12]``)."""
    rot, trans = pose_from_output(out)
    return (rot - target[:, :9].reshape(-1, 3, 3)).abs().mean() + (trans - target[:, 9:]).abs().mean()


def rotation_error_deg(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Geodesic angle (degrees) between rotations ``[B,3,3]``."""
    cos = ((pred.transpose(-1, -2) @ true).diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0
    return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))


@torch.no_grad()
def pair_features(model: nn.Module, batch: dict[str, torch.Tensor], kind: str) -> torch.Tensor:
    """Pose-regression inputs of a batch of pairs.

    ``kind="tau"``: ``vec(tau)`` (``k^2`` values) of a NISO model; ``kind="concat"``: the two
    views' features side by side (for an autoencoder: its latent grids).
    """
    device = next(model.parameters()).device
    a, b = batch["frame_a"].to(device), batch["frame_b"].to(device)
    if kind == "tau":
        return model.pair_maps(a, b)["tau"].flatten(1).float().cpu()
    if kind == "concat":
        return torch.cat((model.features(a), model.features(b)), dim=1).float().cpu()
    raise ValueError(f"unknown pair feature kind {kind!r}; valid: 'tau', 'concat'")


def _pose_targets(relative: torch.Tensor) -> torch.Tensor:
    return torch.cat((relative[:, :3, :3].reshape(-1, 9), relative[:, :3, 3]), dim=1).float()


def collect_pairs(
    model: nn.Module,
    data: Any,
    kind: str,
    pairs: int,
    skips: tuple[int, int],
    seed: int,
    batch_size: int = 32,
    desc: str = "pairs",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(features, targets [n,12], skips [n])`` for ``pairs`` view pairs of a scene dataset."""
    from worldmodel.data.loader import make_pair_loader

    loader = make_pair_loader(data, batch_size=batch_size, skips=skips, seed=seed, shuffle=True, drop_last=False)
    feats, targets, ks = [], [], []
    n, epoch = 0, 0
    bar = tqdm(total=pairs, desc=desc, leave=False, mininterval=2.0)
    while n < pairs:
        loader.set_epoch(epoch)
        got = 0
        for batch in loader:
            feats.append(pair_features(model, batch, kind))
            targets.append(_pose_targets(batch["relative"]))
            ks.append(batch["skip"].long())
            got += len(batch["skip"])
            n += len(batch["skip"])
            bar.update(len(batch["skip"]))
            if n >= pairs:
                break
        if got == 0:
            raise ValueError(f"the pair loader of {data} yields no pairs (too few scenes or views for skips {skips})")
        epoch += 1
    bar.close()
    return torch.cat(feats)[:pairs], torch.cat(targets)[:pairs], torch.cat(ks)[:pairs]


@torch.no_grad()
def pose_metrics(
    head: nn.Module, x: torch.Tensor, targets: torch.Tensor, skips: torch.Tensor
) -> dict[str, dict[str, float]]:
    """Per frame skip: ``ate`` (RMSE of the relative translation, scene units), ``rot_deg`` (mean
    geodesic rotation error) and ``pairs``; plus ``"all"``."""
    rot, trans = pose_from_output(head(x))
    t_err = (trans - targets[:, 9:]).square().sum(-1)
    r_err = rotation_error_deg(rot, targets[:, :9].reshape(-1, 3, 3))
    out: dict[str, dict[str, float]] = {}
    for k in sorted(set(skips.tolist())):
        m = skips == k
        out[str(k)] = {"ate": float(t_err[m].mean().sqrt()), "rot_deg": float(r_err[m].mean()), "pairs": int(m.sum())}
    out["all"] = {"ate": float(t_err.mean().sqrt()), "rot_deg": float(r_err.mean()), "pairs": int(len(skips))}
    return out


def pose_eval(
    models: dict[str, tuple[nn.Module, str]],
    train_data: Any,
    test_data: Any,
    train_pairs: int = 4096,
    test_pairs_per_skip: int = 256,
    skips: tuple[int, int] = (0, 9),
    head: HeadConfig | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Camera pose from frozen representations, per frame skip.

    For each ``name -> (model, kind)`` (``kind`` ``"tau"`` for NISO, ``"concat"`` for a baseline's
    features of both views) an MLP maps the pair features to 12 numbers: 9 lifted to a rotation
    by the SVD projection onto SO(3) plus a 3-d translation, the relative camera transform of
    view b in view a's frame. It trains on ``train_data`` pairs at all skips in ``skips`` and is
    tested on ``test_data`` (other scenes), skip by skip.

    Returns ``{name: {"per_skip": {k: {ate, rot_deg, pairs}}, "train": {...}}}`` plus settings.
    """
    head = head or HeadConfig()
    results: dict[str, Any] = {
        "settings": {
            "train_pairs": train_pairs,
            "test_pairs_per_skip": test_pairs_per_skip,
            "skips": list(skips),
            "head": asdict(head),
            "seed": seed,
        }
    }
    for name, (model, kind) in models.items():
        model.eval()
        x, y, ks = collect_pairs(model, train_data, kind, train_pairs, skips, seed, desc=f"{name}: train pairs")
        reg = fit_head(x, y, 12, pose_loss, head, desc=f"{name}: pose head")
        test_x, test_y, test_k = [], [], []
        for k in range(skips[0], skips[1] + 1):
            tx, ty, tk = collect_pairs(
                model, test_data, kind, test_pairs_per_skip, (k, k), seed + 100 + k, desc=f"{name}: test skip {k}"
            )
            test_x.append(tx), test_y.append(ty), test_k.append(tk)
        results[name] = {
            "kind": kind,
            "feature_dim": int(x.shape[1]),
            "per_skip": pose_metrics(reg, torch.cat(test_x), torch.cat(test_y), torch.cat(test_k)),
            "train": pose_metrics(reg, x, y, ks)["all"],
        }
    return results
