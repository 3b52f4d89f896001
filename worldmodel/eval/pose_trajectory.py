"""Camera-trajectory metrics of NISO's pose protocol: chained relative poses, Procrustes ATE, RPE, scale-free loss.

Official protocol (``experiments/pose_pred`` of Mitchel et al. 2024): a head predicts the
relative pose between consecutive frames of a sequence subsampled at a skip
``s in {1, 2, 4, 6, 8, 10}``; the predictions are chained from the first true pose into a
trajectory; the predicted camera positions are aligned to the true ones by Procrustes
(translation, rotation, scale) and the error is a root mean square.

* :func:`ate` (absolute trajectory error) does the alignment in the true trajectory's units
  with Umeyama's closed form (:func:`umeyama_alignment`: a proper rotation, the scale applied
  to the prediction only) and returns the RMS point distance; ``method="scipy"`` reproduces the
  official number instead: ``scipy.spatial.procrustes`` (both trajectories centred and scaled to
  unit Frobenius norm, reflections allowed) and the mean over coordinates of the squared
  residual, square-rooted (dimensionless).
* :func:`rpe` (relative pose error) is what this toolkit first called "ATE": the RMSE of the
  per-pair relative translation (no chaining, no alignment), plus the mean rotation angle error.
* :func:`scale_invariant_translation_loss`: the official ``procrustes_loss``: L1 between true
  translations and predicted ones rescaled by their least-squares scale (not differentiated).

Poses are 4x4 camera-to-world matrices; the relative pose of frame ``j`` seen from frame ``i``
is ``T_i^-1 T_j``, so ``T_j = T_i T_ij`` (the convention of the pair loader's ``relative``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch only for the loss; the CLI reads this module's constants without it
    import torch

#: Frame skips of the official trajectory evaluation.
TRAJECTORY_SKIPS: tuple[int, ...] = (1, 2, 4, 6, 8, 10)
ATE_METHODS: tuple[str, ...] = ("umeyama", "scipy")


def _as_poses(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[1:] != (4, 4):
        raise ValueError(f"{name} must be 4x4 poses [n, 4, 4], got shape {x.shape}")
    return x


def skip_indices(num_frames: int, skip: int, max_frames: int | None = None) -> np.ndarray:
    """Frames ``0, skip, 2 skip, ...`` of a sequence (of its first ``max_frames`` frames; official: 200)."""
    if skip < 1:
        raise ValueError(f"skip must be >= 1, got {skip}")
    n = num_frames if max_frames is None else min(num_frames, max_frames)
    return np.arange(0, n, skip)


def relative_poses(poses: np.ndarray) -> np.ndarray:
    """Consecutive relative poses ``T_i^-1 T_{i+1}`` ``[n-1, 4, 4]`` of absolute poses ``[n, 4, 4]``."""
    poses = _as_poses(poses, "poses")
    return np.linalg.inv(poses[:-1]) @ poses[1:]


def chain_relative_poses(relative: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """Absolute poses ``[m+1, 4, 4]``: ``T_0 = start`` (identity by default), ``T_{i+1} = T_i R_i``."""
    relative = _as_poses(relative, "relative")
    out = np.empty((relative.shape[0] + 1, 4, 4))
    out[0] = np.eye(4) if start is None else np.asarray(start, dtype=np.float64)
    for i, rel in enumerate(relative):
        out[i + 1] = out[i] @ rel
    return out


@dataclass
class Similarity:
    """``x -> scale * rotation @ x + translation``."""

    scale: float
    """Isotropic scale factor."""
    rotation: np.ndarray
    """3x3 proper rotation (det +1)."""
    translation: np.ndarray
    """3-vector."""

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transform points ``[n, 3]``."""
        return self.scale * np.asarray(points) @ self.rotation.T + self.translation


def umeyama_alignment(source: np.ndarray, target: np.ndarray, with_scale: bool = True) -> Similarity:
    """The similarity ``S`` minimising ``sum_i ||target_i - S(source_i)||^2`` (Umeyama 1991, closed form).

    With centred point sets ``X = source - mu_s``, ``Y = target - mu_t`` and the SVD
    ``Y^T X / n = U D V^T``: ``R = U diag(1, 1, det(U V^T)) V^T`` (a proper rotation),
    ``c = tr(D diag(1, 1, det(U V^T))) / var_s`` with ``var_s = ||X||^2 / n`` (``c = 1`` without
    scale), ``t = mu_t - c R mu_s``. Written out (numpy SVD) because scipy's Procrustes helpers
    either rescale both sets (``scipy.spatial.procrustes``) or allow reflections
    (``scipy.linalg.orthogonal_procrustes``).
    """
    src = np.asarray(source, dtype=np.float64)
    dst = np.asarray(target, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3:
        raise ValueError(f"source and target must both be [n, 3], got {src.shape} and {dst.shape}")
    if src.shape[0] < 2:
        raise ValueError(f"alignment needs at least 2 points, got {src.shape[0]}")
    mu_s, mu_t = src.mean(0), dst.mean(0)
    x, y = src - mu_s, dst - mu_t
    u, d, vt = np.linalg.svd(y.T @ x / src.shape[0])
    sign = np.ones(3)
    sign[-1] = np.sign(np.linalg.det(u @ vt)) or 1.0
    rotation = (u * sign) @ vt
    var_s = float((x**2).sum() / src.shape[0])
    scale = float((d * sign).sum() / var_s) if with_scale and var_s > 0 else 1.0
    return Similarity(scale, rotation, mu_t - scale * rotation @ mu_s)


def ate(pred_positions: np.ndarray, true_positions: np.ndarray, method: str = "umeyama") -> float:
    """Absolute trajectory error of camera positions ``[n, 3]`` after a similarity alignment.

    * ``"umeyama"``: ``sqrt(mean_i ||S(pred_i) - true_i||^2)`` with ``S`` from
      :func:`umeyama_alignment` (units of the true trajectory);
    * ``"scipy"``: the official number: ``scipy.spatial.procrustes(true, pred)`` standardises both
      (centred, unit Frobenius norm) and rotates (or reflects) and scales the prediction; the
      result is ``sqrt(mean over the n x 3 coordinates of the squared residual)`` (dimensionless).
    """
    pred = np.asarray(pred_positions, dtype=np.float64)
    true = np.asarray(true_positions, dtype=np.float64)
    return float(np.sqrt(ate_squared(pred, true, method)))


def ate_squared(pred_positions: np.ndarray, true_positions: np.ndarray, method: str = "umeyama") -> float:
    """The mean squared residual inside :func:`ate` (what the official code averages over sequences)."""
    if method not in ATE_METHODS:
        raise ValueError(f"unknown ATE method {method!r}; valid values: {', '.join(map(repr, ATE_METHODS))}")
    pred = np.asarray(pred_positions, dtype=np.float64)
    true = np.asarray(true_positions, dtype=np.float64)
    if method == "umeyama":
        aligned = umeyama_alignment(pred, true).apply(pred)
        return float(((aligned - true) ** 2).sum(-1).mean())
    from scipy.spatial import procrustes

    std_true, std_pred, _ = procrustes(true, pred)
    return float(((std_pred - std_true) ** 2).mean())


def sequence_ate(pred_relative: np.ndarray, true_poses: np.ndarray, method: str = "umeyama") -> float:
    """ATE of one (subsampled) sequence: chain ``pred_relative`` ``[n-1,4,4]`` from ``true_poses[0]``, align, RMSE.

    As the official code, the first frame (equal by construction) is left out of the alignment.
    """
    true_poses = _as_poses(true_poses, "true_poses")
    if pred_relative.shape[0] != true_poses.shape[0] - 1:
        raise ValueError(
            f"{true_poses.shape[0]} true poses need {true_poses.shape[0] - 1} relative poses, "
            f"got {pred_relative.shape[0]}"
        )
    pred = chain_relative_poses(pred_relative, true_poses[0])
    return ate(pred[1:, :3, 3], true_poses[1:, :3, 3], method)


def _rotation_angle_deg(rel_a: np.ndarray, rel_b: np.ndarray) -> np.ndarray:
    m = np.swapaxes(rel_a[:, :3, :3], -1, -2) @ rel_b[:, :3, :3]
    cos = (np.trace(m, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def rpe(pred_relative: np.ndarray, true_relative: np.ndarray) -> dict[str, float]:
    """Relative pose error of pairs ``[n, 4, 4]``: ``translation`` RMSE (no chaining or alignment), mean ``rot_deg``."""
    pred = _as_poses(pred_relative, "pred_relative")
    true = _as_poses(true_relative, "true_relative")
    if pred.shape != true.shape:
        raise ValueError(f"pred_relative {pred.shape} and true_relative {true.shape} differ")
    t = ((pred[:, :3, 3] - true[:, :3, 3]) ** 2).sum(-1)
    return {"translation": float(np.sqrt(t.mean())), "rot_deg": float(_rotation_angle_deg(pred, true).mean())}


def trajectory_metrics(
    predict: Callable[[int, np.ndarray], np.ndarray],
    sequences: Iterable[np.ndarray],
    skips: Sequence[int] = TRAJECTORY_SKIPS,
    max_frames: int | None = 200,
    min_fraction: float = 0.8,
    method: str = "umeyama",
    per_sequence: bool = False,
) -> dict[str, dict[str, Any]]:
    """ATE and RPE per skip over sequences, as the official evaluation loop.

    Args:
        predict: ``predict(sequence_index, frame_indices) -> [m-1, 4, 4]`` predicted relative poses
            between consecutive frames ``frame_indices`` (``m`` of them) of that sequence.
        sequences: true absolute poses ``[n_frames, 4, 4]`` of each sequence.
        skips: frame skips (official: 1, 2, 4, 6, 8, 10).
        max_frames: only the first ``max_frames`` frames of a sequence (official: 200).
        min_fraction: a sequence is skipped at a skip when it has fewer than ``min_fraction`` times
            the subsampled frames of a full ``max_frames`` sequence (official: 0.8); ignored when
            ``max_frames`` is None.
        method: ATE alignment (see :func:`ate`).
        per_sequence: also return each evaluated sequence's own ATE (``"per_sequence_ate"``, in
            sequence order), for paired comparisons between models on the same sequences.

    Returns:
        ``{str(skip): {"ate", "rpe_translation", "rpe_rot_deg", "sequences"}}``; ``ate`` is
        ``sqrt(mean over sequences of the per-sequence mean squared residual)`` (official pooling).
    """
    seqs = [_as_poses(s, "sequence") for s in sequences]
    out: dict[str, dict[str, float]] = {}
    for skip in skips:
        min_len = int(min_fraction * len(np.arange(0, max_frames, skip))) if max_frames is not None else 2
        sq, rel_pred, rel_true = [], [], []
        for i, poses in enumerate(seqs):
            idx = skip_indices(len(poses), skip, max_frames)
            if len(idx) < max(2, min_len):
                continue
            pred_rel = np.asarray(predict(i, idx), dtype=np.float64)
            true_sub = poses[idx]
            pred_traj = chain_relative_poses(pred_rel, true_sub[0])
            sq.append(ate_squared(pred_traj[1:, :3, 3], true_sub[1:, :3, 3], method))
            rel_pred.append(pred_rel)
            rel_true.append(relative_poses(true_sub))
        if not sq:
            out[str(skip)] = {"ate": float("nan"), "rpe_translation": float("nan"), "rpe_rot_deg": float("nan")}
            out[str(skip)]["sequences"] = 0
            if per_sequence:
                out[str(skip)]["per_sequence_ate"] = []
            continue
        r = rpe(np.concatenate(rel_pred), np.concatenate(rel_true))
        out[str(skip)] = {
            "ate": float(np.sqrt(np.mean(sq))),
            "rpe_translation": r["translation"],
            "rpe_rot_deg": r["rot_deg"],
            "sequences": len(sq),
        }
        if per_sequence:
            out[str(skip)]["per_sequence_ate"] = [float(np.sqrt(v)) for v in sq]
    return out


def scale_invariant_translation_loss(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """The official ``procrustes_loss``: ``mean |true - s pred|`` with ``s = <pred, true> / ||pred||^2``.

    ``pred`` and ``true`` are translations ``[..., n, 3]``; one scale per leading index (per
    sequence of ``n`` relative translations; use ``n = 1`` for single pairs), computed in closed
    form (least squares) and detached, as the official ``stop_gradient``.
    """
    if pred.shape != true.shape or pred.ndim < 2 or pred.shape[-1] != 3:
        raise ValueError(f"pred and true must both be [..., n, 3], got {tuple(pred.shape)} and {tuple(true.shape)}")
    num = (pred * true).sum((-2, -1))
    den = pred.square().sum((-2, -1)).clamp_min(1e-8)
    scale = (num / den).detach()[..., None, None]
    return (true - scale * pred).abs().mean()
