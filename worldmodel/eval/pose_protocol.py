"""NISO's camera-pose protocol on scene datasets: a pose head on frozen pair features, chained ATE.

The official ``experiments/pose_pred`` (Mitchel et al. 2024) regresses the relative camera pose
of two frames from ``vec(tau)`` and scores the chained trajectory. Here, on a dataset whose
scenes are camera trajectories (views in path order, e.g. ``wm data collect --source jaco`` or
``--source rooms --trajectory``):

1. **Head training** on the training scenes: random pairs ``(a, a + s)`` at the skips ``s`` of
   the protocol, features from the frozen model (``vec(tau)`` of a NISO model, or both views'
   features side by side for a baseline), an MLP to 12 numbers (9 lifted to SO(3) by the SVD
   projection, plus a translation), loss = L1 on the rotation matrix + the official
   scale-invariant translation loss (:func:`~worldmodel.eval.pose_trajectory.scale_invariant_translation_loss`,
   one least-squares scale per minibatch, so the head learns the relative magnitudes of the
   translations but not their unit). A single scale fitted on the training pairs afterwards
   puts the translations back in scene units (it leaves the similarity-aligned ATE unchanged
   and makes the RPE meaningful).
2. **Evaluation** on held-out scenes (split by scene, never by frame): each scene's views,
   subsampled at every skip, are paired consecutively; the predicted relative poses are
   chained from the first true pose and aligned to the true camera positions
   (:func:`~worldmodel.eval.pose_trajectory.trajectory_metrics`, Umeyama by default). Per skip:
   the pooled ATE, the per-sequence ATEs (for paired comparisons between models on the same
   sequences) and the RPE.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from envs.camera import pose_matrix, relative_transform
from worldmodel.eval.niso_eval import HeadConfig, fit_head, pair_features, pose_from_output
from worldmodel.eval.pose_trajectory import (
    ATE_METHODS,
    TRAJECTORY_SKIPS,
    scale_invariant_translation_loss,
    trajectory_metrics,
)

TRANSLATION_LOSSES: tuple[str, ...] = ("scale_invariant", "l1")


@dataclass
class TrajectoryProtocolConfig:
    """Settings of :func:`trajectory_protocol`."""

    skips: tuple[int, ...] = TRAJECTORY_SKIPS
    """Frame skips of the training pairs and of the evaluated trajectories (official: 1, 2, 4, 6, 8, 10)."""
    train_pairs: int = 8192
    """Training pairs of the head, drawn uniformly over training scenes, skips and start frames."""
    translation_loss: str = "scale_invariant"
    """``"scale_invariant"`` (official) or ``"l1"`` (plain L1 against the metric translation)."""
    method: str = "umeyama"
    """ATE alignment: ``"umeyama"`` (scene units) or ``"scipy"`` (the official dimensionless number)."""
    max_frames: int | None = None
    """Only the first ``max_frames`` views of a sequence (official: 200 frames of CO3D); None: all."""
    head: HeadConfig = field(default_factory=lambda: HeadConfig(steps=3000))
    """The MLP head's training."""

    def __post_init__(self) -> None:
        if self.translation_loss not in TRANSLATION_LOSSES:
            raise ValueError(
                f"unknown translation_loss {self.translation_loss!r}; valid values: "
                f"{', '.join(map(repr, TRANSLATION_LOSSES))}"
            )
        if self.method not in ATE_METHODS:
            raise ValueError(f"unknown method {self.method!r}; valid values: {', '.join(map(repr, ATE_METHODS))}")
        if not self.skips or min(self.skips) < 1:
            raise ValueError(f"skips must be a non-empty list of integers >= 1, got {self.skips}")
        if self.train_pairs < 1:
            raise ValueError(f"train_pairs must be >= 1, got {self.train_pairs}")


def trajectory_pose_loss(out: torch.Tensor, target: torch.Tensor, translation_loss: str) -> torch.Tensor:
    """L1 on the SO(3)-lifted rotation plus the chosen translation loss (targets ``[B, 12]``)."""
    rot, trans = pose_from_output(out)
    loss = (rot - target[:, :9].reshape(-1, 3, 3)).abs().mean()
    if translation_loss == "scale_invariant":
        return loss + scale_invariant_translation_loss(trans[None], target[None, :, 9:])
    return loss + (trans - target[:, 9:]).abs().mean()


def _targets(relative: np.ndarray) -> torch.Tensor:
    rel = torch.from_numpy(np.asarray(relative, dtype=np.float32))
    return torch.cat((rel[:, :3, :3].reshape(-1, 9), rel[:, :3, 3]), dim=1)


def _check_sequences(data: Any, skips: Sequence[int]) -> int:
    if len(data) == 0:
        raise ValueError(f"{data}: no scenes")
    views = min(int(data.cameras(i).shape[0]) for i in range(len(data)))
    if views <= max(skips):
        raise ValueError(f"{data}: scenes of {views} views are too short for skip {max(skips)} (need > skip views)")
    return views


def _features(model: nn.Module, kind: str, frames: np.ndarray, a: np.ndarray, b: np.ndarray) -> torch.Tensor:
    """Pair features of views ``a[j], b[j]`` of one scene's frames, in batches of 64."""
    out = []
    for s in range(0, len(a), 64):
        batch = {"frame_a": torch.from_numpy(frames[a[s : s + 64]]), "frame_b": torch.from_numpy(frames[b[s : s + 64]])}
        out.append(pair_features(model, batch, kind))
    return torch.cat(out)


def training_pairs(
    model: nn.Module, kind: str, data: Any, config: TrajectoryProtocolConfig, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features, targets [n, 12])`` of ``config.train_pairs`` random pairs ``(a, a + s)`` of ``data``."""
    views = _check_sequences(data, config.skips)
    rng = np.random.default_rng(seed)
    scene = rng.integers(0, len(data), config.train_pairs)
    skip = rng.choice(np.asarray(config.skips), config.train_pairs)
    start = (rng.random(config.train_pairs) * (views - skip)).astype(np.int64)
    feats, targets = [], []
    for i in tqdm(np.unique(scene), desc="pose head: training pairs", leave=False, mininterval=2.0):
        m = scene == i
        frames, cameras = data.read_views(int(i), list(range(views)))
        a, b = start[m], start[m] + skip[m]
        feats.append(_features(model, kind, frames, a, b))
        targets.append(_targets(relative_transform(cameras[a], cameras[b])))
    return torch.cat(feats), torch.cat(targets)


class PoseHead(nn.Module):
    """A fitted pose head: features -> relative poses ``[n, 4, 4]`` (translations rescaled by ``scale``)."""

    def __init__(self, mlp: nn.Module, scale: float) -> None:
        super().__init__()
        self.mlp = mlp
        self.scale = float(scale)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rot, trans = pose_from_output(self.mlp(x))
        out = torch.zeros(x.shape[0], 4, 4, dtype=torch.float64)
        out[:, :3, :3] = rot.double()
        out[:, :3, 3] = trans.double() * self.scale
        out[:, 3, 3] = 1.0
        return out


def fit_pose_head(x: torch.Tensor, y: torch.Tensor, config: TrajectoryProtocolConfig, desc: str) -> PoseHead:
    """Train the MLP with :func:`trajectory_pose_loss`, then fit its translation scale on the training pairs."""
    mlp = fit_head(x, y, 12, lambda out, t: trajectory_pose_loss(out, t, config.translation_loss), config.head, desc)
    with torch.no_grad():
        trans = pose_from_output(mlp(x))[1]
        scale = float((trans * y[:, 9:]).sum() / trans.square().sum().clamp_min(1e-12))
    return PoseHead(mlp, scale)


def evaluate_trajectories(
    predict_pairs: Callable[[np.ndarray, np.ndarray, np.ndarray, int], np.ndarray],
    data: Any,
    config: TrajectoryProtocolConfig,
    desc: str,
) -> dict[str, Any]:
    """Pooled metrics per skip (:func:`trajectory_metrics`) plus the per-sequence ATE lists (``"per_sequence"``).

    ``predict_pairs(frames, a, b, skip)`` returns the relative poses ``[n, 4, 4]`` of views
    ``b[j]`` in views ``a[j]``'s frame, given one scene's frames ``[V, H, W, 3]``.
    """
    views = _check_sequences(data, config.skips)
    n = views if config.max_frames is None else min(views, config.max_frames)
    cache: dict[tuple[int, int], np.ndarray] = {}
    sequences = []
    for i in tqdm(range(len(data)), desc=desc, leave=False, mininterval=2.0):
        frames, cameras = data.read_views(i, list(range(views)))
        sequences.append(pose_matrix(cameras))
        for skip in config.skips:
            idx = np.arange(0, n, skip)
            cache[(i, skip)] = np.asarray(predict_pairs(frames, idx[:-1], idx[1:], skip), dtype=np.float64)
    per_sequence: dict[str, list[float]] = {}
    metrics = {}
    for skip in config.skips:
        out = trajectory_metrics(
            lambda i, idx, s=skip: cache[(i, s)],
            [seq[:n] for seq in sequences],
            skips=(skip,),
            max_frames=None,
            method=config.method,
            per_sequence=True,
        )
        per_sequence[str(skip)] = out[str(skip)].pop("per_sequence_ate")
        metrics.update(out)
    return {"per_skip": metrics, "per_sequence": per_sequence}


def mean_motion_predictor(data: Any, config: TrajectoryProtocolConfig) -> Callable[..., np.ndarray]:
    """The fixed reference: at each skip, the mean relative pose of the training scenes (rotation lifted to SO(3)).

    What a head that ignores the images could at best predict; a representation is only useful
    for pose where its ATE falls below this one's.
    """
    _check_sequences(data, config.skips)
    means = {}
    for skip in config.skips:
        rel = np.concatenate(
            [relative_transform(data.cameras(i)[:-skip], data.cameras(i)[skip:]) for i in range(len(data))]
        )
        out = _targets(rel).mean(0, keepdim=True)
        rot, trans = pose_from_output(out)
        mean = np.eye(4)
        mean[:3, :3], mean[:3, 3] = rot[0].double().numpy(), trans[0].double().numpy()
        means[skip] = mean
    return lambda frames, a, b, skip: np.repeat(means[skip][None], len(a), axis=0)


def trajectory_protocol(
    models: dict[str, tuple[nn.Module, str]],
    train_data: Any,
    test_data: Any,
    config: TrajectoryProtocolConfig | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Camera pose by chained-trajectory ATE for each ``name -> (frozen model, kind)``.

    ``kind`` is ``"tau"`` (``vec(tau)`` of a NISO model) or ``"concat"`` (both views' features).
    Every model's head sees the same training pairs (same scenes, skips and frames: ``seed``) and
    is scored on the same held-out sequences, so per-sequence ATEs pair up across models.

    A fixed reference row, ``"mean motion"`` (:func:`mean_motion_predictor`), comes first.

    Returns ``{"settings": ..., "mean motion": {...}, name: {"kind", "feature_dim", "translation_scale", "per_skip",
    "per_sequence", "train_rpe_translation"}}``.
    """
    config = config or TrajectoryProtocolConfig()
    settings = asdict(config)
    settings.update(seed=seed, train_scenes=len(train_data), test_scenes=len(test_data))
    results: dict[str, Any] = {"settings": settings}
    results["mean motion"] = {
        "kind": "reference",
        **evaluate_trajectories(mean_motion_predictor(train_data, config), test_data, config, "mean motion"),
    }
    for name, (model, kind) in models.items():
        model.eval()
        x, y = training_pairs(model, kind, train_data, config, seed)
        head = fit_pose_head(x, y, config, desc=f"{name}: pose head")
        train_t = head(x)[:, :3, 3].float()
        results[name] = {
            "kind": kind,
            "feature_dim": int(x.shape[1]),
            "translation_scale": head.scale,
            "train_rpe_translation": float((train_t - y[:, 9:]).square().sum(-1).mean().sqrt()),
            **evaluate_trajectories(
                lambda frames, a, b, _skip, h=head, m=model, k=kind: h(_features(m, k, frames, a, b)).numpy(),
                test_data,
                config,
                desc=f"{name}: test trajectories",
            ),
        }
    return results


__all__ = [
    "TRANSLATION_LOSSES",
    "PoseHead",
    "TrajectoryProtocolConfig",
    "evaluate_trajectories",
    "fit_pose_head",
    "mean_motion_predictor",
    "training_pairs",
    "trajectory_pose_loss",
    "trajectory_protocol",
]
