"""Latent isometry error: how well one fixed map explains a transformation in latent space.

For an encoder ``z`` and pairs ``(x, T x)`` related by the *same* transformation ``T`` (a fixed
camera motion, a fixed homography), fit on training pairs

* the best orthogonal map ``R`` (orthogonal Procrustes: ``R = U V^T`` from the SVD of
  ``sum z(x) z(Tx)^T``), and
* the best general linear map ``W`` (least squares, a small ridge for stability),

and report on held-out pairs the relative error ``||M z(x) - z(Tx)||^2 / ||z(Tx)||^2`` (mean over
pairs) for ``M = R``, ``M = W`` and ``M = I`` (how far the latent moves at all). An encoder whose
latent transforms by an isometry under ``T`` scores ~0 with ``R``; a merely linearly-equivariant
one scores ~0 with ``W`` only. Works for any encoder: GQN, NISO (whose own ``tau`` is fitted per
pair, see :func:`pair_tau_error`), the untrained control, and later learners.

Pairs: :func:`camera_motion_pairs` picks view pairs of a scene dataset whose known poses differ
by a fixed yaw step (within a tolerance, pitch nearly unchanged); :func:`homography_pairs` warps
digits by one fixed homography (:data:`DIGIT_HOMOGRAPHIES`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

#: Fixed homographies of the digits table (coefficients over :data:`worldmodel.data.homography.SL3_BASIS`,
#: which acts on ``(x, y, 1)`` in ``[-1, 1]`` image coordinates).
DIGIT_HOMOGRAPHIES: dict[str, str] = {
    "rotate_15deg": "rotation by 15 degrees about the centre",
    "shift_3px": "translation by 3 pixels right (40 px canvas)",
    "homnist_draw": "one fixed homNIST draw (c_i = s_i * N(0, 1), seed 0)",
}


# ----------------------------------------------------------------------------- maps


def procrustes(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The orthogonal ``R`` (``[D, D]``) minimising ``sum ||R s_i - t_i||^2`` for rows ``s_i``, ``t_i``.

    ``R = U V^T`` from the SVD ``T^T S = U diag(sigma) V^T`` (float64). Equals
    ``scipy.linalg.orthogonal_procrustes(S, T)[0].T``.
    """
    s, t = _pair_matrices(source, target)
    u, _, vh = torch.linalg.svd(t.T @ s)
    return u @ vh


def least_squares_map(source: torch.Tensor, target: torch.Tensor, ridge: float = 1e-6) -> torch.Tensor:
    """The linear ``W`` (``[D, D]``) minimising ``sum ||W s_i - t_i||^2 + lam ||W||^2``.

    ``lam = ridge * trace(S^T S) / D`` (scale-free); ``ridge = 0`` is plain least squares.
    """
    s, t = _pair_matrices(source, target)
    gram = s.T @ s
    lam = ridge * float(torch.trace(gram)) / max(1, gram.shape[0])
    eye = torch.eye(gram.shape[0], dtype=gram.dtype)
    return torch.linalg.solve(gram + lam * eye, s.T @ t).T


def relative_errors(m: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per pair ``||M s_i - t_i||^2 / ||t_i||^2`` (float64)."""
    s, t = _pair_matrices(source, target)
    pred = s @ m.T
    return (pred - t).square().sum(1) / t.square().sum(1).clamp_min(1e-300)


def _pair_matrices(source: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    s = torch.as_tensor(source).double().reshape(len(source), -1)
    t = torch.as_tensor(target).double().reshape(len(target), -1)
    if s.shape != t.shape:
        raise ValueError(
            f"source and target latents must have the same shape, got {tuple(s.shape)} and {tuple(t.shape)}"
        )
    if s.shape[0] < 1:
        raise ValueError("no pairs")
    return s, t


@dataclass
class IsometryResult:
    """Held-out errors of the fitted maps for one encoder and one transformation."""

    encoder: str
    transformation: str
    dim: int
    fit_pairs: int
    test_pairs: int
    identity: float
    orthogonal: float
    linear: float
    identity_sem: float = float("nan")
    orthogonal_sem: float = float("nan")
    linear_sem: float = float("nan")
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Plain numbers for JSON."""
        out = {k: v for k, v in vars(self).items() if k != "extra"}
        return {**out, **self.extra}


def _mean_sem(v: torch.Tensor) -> tuple[float, float]:
    return float(v.mean()), (float(v.std() / math.sqrt(v.numel())) if v.numel() > 1 else float("nan"))


def isometry_error(
    fit_a: torch.Tensor,
    fit_b: torch.Tensor,
    test_a: torch.Tensor,
    test_b: torch.Tensor,
    *,
    encoder: str = "encoder",
    transformation: str = "T",
    ridge: float = 1e-6,
    center: bool = False,
) -> IsometryResult:
    """Fit ``R`` (orthogonal) and ``W`` (linear) on ``fit`` pairs, report their errors on ``test`` pairs.

    Args:
        fit_a, fit_b: latents ``[n, ...]`` of ``x`` and ``T x`` for fitting (flattened per pair).
        test_a, test_b: held-out latents.
        ridge: relative ridge of the linear map (see :func:`least_squares_map`).
        center: subtract the fit set's means first (affine maps; the error is then of the
            centred target). Default off, as specified: ``||R z(x) - z(Tx)||^2 / ||z(Tx)||^2``.
    """
    fa, fb = _pair_matrices(fit_a, fit_b)
    ta, tb = _pair_matrices(test_a, test_b)
    if fa.shape[1] != ta.shape[1]:
        raise ValueError(f"fit latents have {fa.shape[1]} dims, test latents {ta.shape[1]}")
    if center:
        ma, mb = fa.mean(0), fb.mean(0)
        fa, fb, ta, tb = fa - ma, fb - mb, ta - ma, tb - mb
    r = procrustes(fa, fb)
    w = least_squares_map(fa, fb, ridge)
    eye = torch.eye(fa.shape[1], dtype=torch.float64)
    i_m, i_s = _mean_sem(relative_errors(eye, ta, tb))
    o_m, o_s = _mean_sem(relative_errors(r, ta, tb))
    l_m, l_s = _mean_sem(relative_errors(w, ta, tb))
    return IsometryResult(
        encoder,
        transformation,
        int(fa.shape[1]),
        int(fa.shape[0]),
        int(ta.shape[0]),
        i_m,
        o_m,
        l_m,
        i_s,
        o_s,
        l_s,
        {
            "fit_orthogonal": float(relative_errors(r, fa, fb).mean()),
            "fit_linear": float(relative_errors(w, fa, fb).mean()),
            "center": center,
            "ridge": ridge,
        },
    )


# ----------------------------------------------------------------------------- camera-motion pairs


def camera_motion_pairs(
    dataset: Any,
    yaw_step: float = 0.3,
    yaw_tol: float = 0.05,
    pitch_tol: float = 0.05,
    max_pairs: int | None = None,
) -> tuple[list[tuple[int, int, int]], dict[str, float]]:
    """Ordered view pairs ``(scene, a, b)`` of a scene dataset related by the same camera motion.

    The motion is a yaw step: ``|wrap(yaw_b - yaw_a) - yaw_step| <= yaw_tol`` and
    ``|pitch_b - pitch_a| <= pitch_tol`` (radians; for an orbiting camera that looks at the
    scene centre this is an azimuth step at nearly constant elevation). Both orders of a view
    pair are considered, so a trajectory moving either way contributes.

    Returns:
        the pairs and statistics of their motions (mean/std of the yaw and pitch steps and of the
        change of distance to the origin).
    """
    from envs.camera import wrap_angle

    ds = dataset
    if not hasattr(ds, "read_views"):
        from worldmodel.data.reader import SceneDataset

        ds = SceneDataset(dataset)
    if yaw_tol <= 0 or pitch_tol <= 0:
        raise ValueError(f"yaw_tol and pitch_tol must be > 0, got {yaw_tol}, {pitch_tol}")
    pairs: list[tuple[int, int, int]] = []
    dyaw, dpitch, ddist = [], [], []
    views = np.arange(ds.views)
    for scene in range(len(ds)):
        _, cams = ds.read_views(scene, views.tolist())
        cams = np.asarray(cams, dtype=np.float64)
        dy = wrap_angle(cams[None, :, 3] - cams[:, None, 3])  # [a, b]
        dp = cams[None, :, 4] - cams[:, None, 4]
        ok = (np.abs(dy - yaw_step) <= yaw_tol) & (np.abs(dp) <= pitch_tol)
        np.fill_diagonal(ok, False)
        dist = np.linalg.norm(cams[:, :3], axis=1)
        for a, b in zip(*np.nonzero(ok), strict=True):
            pairs.append((scene, int(a), int(b)))
            dyaw.append(dy[a, b]), dpitch.append(dp[a, b]), ddist.append(dist[b] - dist[a])
            if max_pairs is not None and len(pairs) >= max_pairs:
                break
        if max_pairs is not None and len(pairs) >= max_pairs:
            break
    stats = {
        "yaw_step": float(yaw_step),
        "yaw_tol": float(yaw_tol),
        "pitch_tol": float(pitch_tol),
        "pairs": len(pairs),
        "scenes": int(len({p[0] for p in pairs})),
        "yaw_mean": float(np.mean(dyaw)) if dyaw else float("nan"),
        "yaw_std": float(np.std(dyaw)) if dyaw else float("nan"),
        "pitch_mean": float(np.mean(dpitch)) if dpitch else float("nan"),
        "pitch_std": float(np.std(dpitch)) if dpitch else float("nan"),
        "distance_change_std": float(np.std(ddist)) if ddist else float("nan"),
    }
    return pairs, stats


def _scene_dataset(data: Any):
    if hasattr(data, "read_views"):
        return data
    from worldmodel.data.reader import SceneDataset

    return SceneDataset(data)


@torch.no_grad()
def encode_scene_pairs(
    encoder: Any,
    dataset: Any,
    pairs: Sequence[tuple[int, int, int]],
    batch_size: int = 64,
    progress: bool = True,
    desc: str = "encode pairs",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``(z(x_a), z(x_b))`` ``[n, D]`` of view pairs, each view with its own viewpoint."""
    from tqdm.auto import tqdm

    ds = _scene_dataset(dataset)
    za, zb = [], []
    for s in tqdm(range(0, len(pairs), batch_size), desc=desc, disable=not progress, leave=False):
        chunk = pairs[s : s + batch_size]
        reads = [ds.read_views(scene, [a, b]) for scene, a, b in chunk]
        frames = np.stack([f for f, _ in reads])  # [n, 2, H, W, 3]
        cams = np.stack([c for _, c in reads])  # [n, 2, 5]
        za.append(encoder.encode(frames[:, 0], cams[:, 0]).double().cpu())
        zb.append(encoder.encode(frames[:, 1], cams[:, 1]).double().cpu())
    return torch.cat(za), torch.cat(zb)


@torch.no_grad()
def pair_tau_error(model: Any, frames_a: torch.Tensor, frames_b: torch.Tensor, batch_size: int = 64) -> float | None:
    """NISO's own per-pair map error ``||tau A - B||^2 / ||B||^2`` (mean), or ``None`` if the model has no ``tau``.

    Unlike :func:`isometry_error`, ``tau`` is solved for each pair separately (an optimistic bound).
    """
    inner = getattr(model, "model", model)
    if getattr(inner, "operator", None) is None or not hasattr(inner, "pair_maps"):
        return None
    errs = []
    device = next(inner.parameters()).device
    for s in range(0, len(frames_a), batch_size):
        maps = inner.pair_maps(frames_a[s : s + batch_size].to(device), frames_b[s : s + batch_size].to(device))
        errs.append(maps["equivariance_error"].double().cpu())
    return float(torch.cat(errs).mean())


def scene_isometry(
    encoders: dict[str, Any],
    data: Any,
    yaw_step: float = 0.3,
    yaw_tol: float = 0.05,
    pitch_tol: float = 0.05,
    fit_fraction: float = 0.7,
    ridge: float = 1e-6,
    progress: bool = True,
    max_pairs: int | None = None,
) -> tuple[list[IsometryResult], dict[str, Any]]:
    """Isometry errors of several encoders under one camera motion of a scene dataset.

    Pairs come from :func:`camera_motion_pairs`; the first ``fit_fraction`` of the scenes that
    hold pairs fit the maps, the others test them (no scene is in both).
    """
    ds = _scene_dataset(data)
    pairs, stats = camera_motion_pairs(ds, yaw_step, yaw_tol, pitch_tol, max_pairs)
    scenes = sorted({p[0] for p in pairs})
    if len(scenes) < 2:
        raise ValueError(
            f"{getattr(ds, 'root', data)}: only {len(pairs)} view pairs in {len(scenes)} scene(s) have a yaw step of "
            f"{yaw_step} +- {yaw_tol} rad; collect more scenes (--trajectory views) or widen the tolerance"
        )
    cut = scenes[max(1, min(len(scenes) - 1, int(round(fit_fraction * len(scenes)))))]
    fit = [p for p in pairs if p[0] < cut]
    test = [p for p in pairs if p[0] >= cut]
    name = f"yaw step {yaw_step:g} rad"
    results = []
    tensors = None
    for label, enc in encoders.items():
        fa, fb = encode_scene_pairs(enc, ds, fit, progress=progress, desc=f"{label}: fit pairs")
        ta, tb = encode_scene_pairs(enc, ds, test, progress=progress, desc=f"{label}: test pairs")
        res = isometry_error(fa, fb, ta, tb, encoder=label, transformation=name, ridge=ridge)
        centred = isometry_error(fa, fb, ta, tb, encoder=label, transformation=name, ridge=ridge, center=True)
        res.extra.update(
            {
                "centred_orthogonal": centred.orthogonal,
                "centred_linear": centred.linear,
                "centred_identity": centred.identity,
            }
        )
        if getattr(getattr(enc, "model", None), "operator", None) is not None:
            if tensors is None:
                tensors = _pair_frames(ds, test)
            res.extra["niso_tau_error"] = pair_tau_error(enc, *tensors)
        results.append(res)
    return results, {
        **stats,
        "fit_pairs": len(fit),
        "test_pairs": len(test),
        "fit_scenes": sum(1 for s in scenes if s < cut),
        "test_scenes": sum(1 for s in scenes if s >= cut),
    }


def _pair_frames(ds: Any, pairs: Sequence[tuple[int, int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    reads = [ds.read_views(scene, [a, b]) for scene, a, b in pairs]
    frames = torch.from_numpy(np.stack([f for f, _ in reads])).permute(0, 1, 4, 2, 3).float().div_(255.0)
    return frames[:, 0], frames[:, 1]


# ----------------------------------------------------------------------------- digit homographies


def digit_homography(name: str, size: int = 40) -> torch.Tensor:
    """The fixed homography ``[3, 3]`` (float64) called ``name`` (see :data:`DIGIT_HOMOGRAPHIES`).

    Warps follow :func:`worldmodel.data.homography.warp`: ``out(p) = img(H p)``, so the content
    moves by ``H^-1``.
    """
    from worldmodel.data.homography import HOMOGRAPHY_SIGMAS, homography_matrices

    if name == "rotate_15deg":
        a = math.radians(15.0)
        return torch.tensor(
            [[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64
        )
    if name == "shift_3px":
        return torch.tensor(
            [[1.0, 0.0, -3.0 * 2.0 / (size - 1)], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64
        )
    if name == "homnist_draw":
        gen = torch.Generator().manual_seed(0)
        sigmas = torch.tensor(HOMOGRAPHY_SIGMAS, dtype=torch.float64)
        c = torch.randn(1, len(HOMOGRAPHY_SIGMAS), generator=gen, dtype=torch.float64) * sigmas
        return homography_matrices(c)[0]
    raise ValueError(f"unknown digit homography {name!r}; valid values: {', '.join(DIGIT_HOMOGRAPHIES)}")


def homography_pairs(images: torch.Tensor, homography: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, H x)`` as float ``[n, C, H, W]`` in [0, 1] from uint8 (or float) digits, one fixed ``H``."""
    from worldmodel.data.homography import warp

    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    hom = torch.as_tensor(homography, dtype=torch.float64).expand(x.shape[0], 3, 3)
    return x, warp(x, hom)


@torch.no_grad()
def _encode_images(encoder: Any, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """Features of float images ``[n, C, H, W]``; grey images are repeated to RGB (frozen encoders
    take RGB floats; grey learners average them back)."""
    out = []
    for s in range(0, images.shape[0], batch_size):
        x = images[s : s + batch_size]
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        out.append(encoder.encode(x).double().cpu())
    return torch.cat(out)


def digit_isometry(
    encoders: dict[str, Any],
    source: str = "digits",
    homographies: Sequence[str] = tuple(DIGIT_HOMOGRAPHIES),
    ridge: float = 1e-6,
    max_digits: int | None = None,
    progress: bool = True,
) -> list[IsometryResult]:
    """Isometry errors of digit encoders under fixed homographies: fit on train digits, test on test digits."""
    from tqdm.auto import tqdm

    from worldmodel.data.homography import load_digit_images

    results = []
    cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    jobs = [(label, enc, hname) for label, enc in encoders.items() for hname in homographies]
    for label, enc, hname in tqdm(jobs, desc="digit isometries", disable=not progress, leave=False):
        size = int(enc.image_size)
        if size not in cache:
            train, _ = load_digit_images(source, "train", size)
            test, _ = load_digit_images(source, "test", size)
            if max_digits is not None:
                train, test = train[:max_digits], test[:max_digits]
            cache[size] = (train, test)
        train, test = cache[size]
        hom = digit_homography(hname, size)
        fa, fb = homography_pairs(train, hom)
        ta, tb = homography_pairs(test, hom)
        za_f, zb_f = _encode_images(enc, fa), _encode_images(enc, fb)
        za_t, zb_t = _encode_images(enc, ta), _encode_images(enc, tb)
        res = isometry_error(za_f, zb_f, za_t, zb_t, encoder=label, transformation=hname, ridge=ridge)
        centred = isometry_error(za_f, zb_f, za_t, zb_t, encoder=label, transformation=hname, ridge=ridge, center=True)
        res.extra.update(
            {
                "centred_orthogonal": centred.orthogonal,
                "centred_linear": centred.linear,
                "centred_identity": centred.identity,
            }
        )
        tau = pair_tau_error(enc, ta, tb)
        if tau is not None:
            res.extra["niso_tau_error"] = tau
        results.append(res)
    return results
