"""Quality of a GQN's novel views, measured: PSNR of predicted query views against two baselines.

For every held-out scene, :func:`choose_views` draws (from ``(seed, scene index)`` only) one query
view and an ordered list of ``kmax`` other views; the context of size K is the first K of them
(nested contexts, so the curves over K compare the same scenes and views). Per scene and K,
:func:`evaluate_quality` computes the PSNR (images in [0,1], peak 1, capped at
``QualityConfig.psnr_cap_db``) of the query view predicted by

* ``prior_mean``: the mean over ``samples`` draws of the latents from the prior of the generator's
  mean image (a Monte-Carlo estimate of the predictive mean ``E_{p(z|y)}[mu(z, y)]``; the model
  exposes prior *sampling* only, not a z = prior-mean pass),
* ``best_of_n``: the best (highest-PSNR) of those ``samples`` prior samples (an oracle choice that
  needs the true view: an upper reference, not a prediction),
* ``prior_sample``: one prior sample (the mean PSNR over the draws),

and by two baselines computed on the same views:

* ``nearest_context``: the context view whose camera is nearest to the query camera, with
  distance ``|p_c - p_q| / position_scale + angle(forward_c, forward_q)`` (positions over the
  model's position scale, angle between the viewing directions in radians; ties go to the
  earlier context view),
* ``mean_context``: the pixel-wise mean of the K context images.

Plus the Bayesian surprise ``KL(q(z | x_q, y) || p(z | y))`` of the query view given K context
views (K = 0..kmax), from :meth:`GQN.surprise`. Summaries are means with percentile-bootstrap
confidence intervals over scenes (:func:`bootstrap_ci`), and the paired gain of each model
prediction over the nearest-view baseline. Plots: :mod:`worldmodel.eval.gqn_quality_plot`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

#: Methods whose PSNR is reported, in plotting order (the first two are the model's predictions).
METHODS: tuple[str, ...] = ("prior_mean", "best_of_n", "prior_sample", "nearest_context", "mean_context")
#: Model predictions compared with the nearest-view baseline (``gain_over_nearest``).
MODEL_METHODS: tuple[str, ...] = ("prior_mean", "best_of_n", "prior_sample")
METHOD_DESCRIPTIONS: dict[str, str] = {
    "prior_mean": "mean over the N prior samples of the generator's mean image (Monte-Carlo predictive mean; the model "
    "has no z = prior-mean pass)",
    "best_of_n": "highest-PSNR of the N prior samples (oracle choice using the true view: an upper reference)",
    "prior_sample": "one prior sample (PSNR averaged over the N draws)",
    "nearest_context": "context view nearest to the query camera (|dp| / position_scale + angle of the viewing "
    "directions in rad)",
    "mean_context": "pixel-wise mean of the K context images",
}


@dataclass
class QualityConfig:
    """Settings of :func:`evaluate_quality`."""

    kmax: int = 5
    """Largest number K of context views: PSNR for K = 1..kmax, surprise for K = 0..kmax (at most views - 1)."""
    samples: int = 8
    """Prior samples N per scene and K (for prior_mean, best_of_n and prior_sample)."""
    seed: int = 0
    """Seed of the view choice (per scene: from (seed, scene index)) and of the latent draws."""
    batch_size: int = 16
    """Scenes per forward pass (the prior samples multiply it: N * batch_size images per generator run)."""
    surprise_samples: int = 2
    """Posterior samples per Bayesian-surprise estimate."""
    psnr_cap_db: float = 100.0
    """PSNR of an exact prediction (MSE 0) and upper bound of every PSNR, in dB."""
    bootstrap: int = 2000
    """Bootstrap resamples of the scenes for the confidence intervals."""
    confidence: float = 0.95
    """Confidence level of the intervals."""
    grid_scenes: int = 4
    """Scenes kept (at K = kmax) for the sample grid: context views, truth, prior mean, best sample."""

    def __post_init__(self) -> None:
        for name in ("kmax", "samples", "batch_size", "surprise_samples", "bootstrap"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.grid_scenes < 0:
            raise ValueError(f"grid_scenes must be >= 0, got {self.grid_scenes}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if not self.psnr_cap_db > 0:
            raise ValueError(f"psnr_cap_db must be > 0, got {self.psnr_cap_db}")


# --------------------------------------------------------------------------- metrics


def psnr(prediction: torch.Tensor, target: torch.Tensor, cap_db: float = 100.0) -> torch.Tensor:
    """Per-image PSNR in dB of images in [0,1] (peak 1): ``10 log10(1 / MSE)``, capped at ``cap_db``.

    ``prediction`` and ``target`` are ``[..., 3, H, W]``; the MSE is over the last three
    dimensions, so the result has the leading shape. An exact prediction gives ``cap_db``.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"psnr: prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    mse = (prediction.float() - target.float()).pow(2).flatten(-3).mean(dim=-1)
    floor = 10.0 ** (-cap_db / 10.0)  # the MSE at which the PSNR reaches the cap
    return (10.0 * torch.log10(1.0 / mse.clamp_min(floor))).clamp_max(cap_db)


def forward_vectors(cameras: torch.Tensor) -> torch.Tensor:
    """Unit viewing directions ``[..., 3]`` of 5-d cameras ``(x, y, z, yaw, pitch)`` (the toolkit's convention)."""
    yaw, pitch = cameras[..., 3], cameras[..., 4]
    return torch.stack((torch.cos(pitch) * torch.cos(yaw), torch.cos(pitch) * torch.sin(yaw), torch.sin(pitch)), dim=-1)


def nearest_view(
    context_cameras: torch.Tensor, query_camera: torch.Tensor, position_scale: float = 1.0
) -> torch.Tensor:
    """Index ``[B]`` of the context camera nearest to the query camera.

    ``context_cameras [B,K,5]``, ``query_camera [B,5]``; distance ``|p_c - p_q| / position_scale``
    plus the angle (radians) between the viewing directions. Ties go to the earlier view.
    """
    if (
        context_cameras.ndim != 3
        or context_cameras.shape[-1] != 5
        or query_camera.shape != (context_cameras.shape[0], 5)
    ):
        raise ValueError(
            f"nearest_view expects context cameras [B,K,5] and query cameras [B,5], got "
            f"{tuple(context_cameras.shape)} and {tuple(query_camera.shape)}"
        )
    cc, qc = context_cameras.double(), query_camera.double()[:, None]
    dist = (cc[..., :3] - qc[..., :3]).norm(dim=-1) / float(position_scale)
    cos = (forward_vectors(cc) * forward_vectors(qc)).sum(dim=-1).clamp(-1.0, 1.0)
    dist = dist + torch.arccos(cos)
    return dist.argmin(dim=1)  # argmin returns the first of equal minima


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> dict[str, Any]:
    """Mean of ``values`` (one per scene) and its percentile-bootstrap confidence interval over scenes.

    Returns ``{"mean", "ci": [low, high], "n"}``; with a single value the interval is that value.
    Uses :func:`scipy.stats.bootstrap` (percentile method).
    """
    from worldmodel.eval.intervals import mean_ci

    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"bootstrap_ci expects a non-empty 1-d array of per-scene values, got shape {x.shape}")
    low, high = mean_ci(x, resamples=resamples, confidence=confidence, seed=seed)
    return {"mean": float(x.mean()), "ci": [low, high], "n": int(x.size)}


# --------------------------------------------------------------------------- views and batches


def choose_views(views: int, kmax: int, seed: int, scene_index: int) -> np.ndarray:
    """``[kmax + 1]`` distinct view indices of one scene: the query first, then the context in order.

    Depends only on ``(seed, scene_index)`` (the scene's global index), so a scene gets the same
    views whatever the batch or the other scenes. The context of size K is ``out[1 : K + 1]``.
    """
    if not 1 <= kmax <= views - 1:
        raise ValueError(
            f"kmax must be in 1..{views - 1} (views per scene - 1) for scenes of {views} views, got {kmax}"
        )
    rng = np.random.default_rng([int(seed), int(scene_index)])
    return rng.choice(views, size=kmax + 1, replace=False)


def read_batch(dataset: Any, scenes: Sequence[int], choices: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
    """A loader-format batch (uint8 frames, 5-d cameras) of ``scenes`` with the views of ``choices``
    (query first): keys ``context_frames [B,kmax,H,W,3]``, ``context_cameras``, ``query_frame``, ``query_camera``."""
    reads = [dataset.read_views(int(s), np.asarray(c)) for s, c in zip(scenes, choices)]
    frames = torch.from_numpy(np.stack([f for f, _ in reads]))
    cameras = torch.from_numpy(np.stack([c for _, c in reads]).astype(np.float32))
    return {
        "context_frames": frames[:, 1:],
        "context_cameras": cameras[:, 1:],
        "query_frame": frames[:, 0],
        "query_camera": cameras[:, 0],
    }


def _seed_for(seed: int, first_scene: int, k: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(first_scene), int(k)]).generate_state(1)[0])


# --------------------------------------------------------------------------- measurement


@torch.no_grad()
def prior_predictions(
    model: Any,
    context_frames: torch.Tensor,
    context_viewpoints: torch.Tensor,
    query_viewpoint: torch.Tensor,
    samples: int,
) -> torch.Tensor:
    """``samples`` novel views per scene from the prior, ``[B, N, 3, H, W]`` in [0,1].

    One :meth:`GQN.generate` call on the batch repeated N times (scene-major), so all draws of
    all scenes run in one forward.
    """
    b = context_frames.shape[0]
    rep = [t.repeat_interleave(samples, dim=0) for t in (context_frames, context_viewpoints, query_viewpoint)]
    out = model.generate(*rep)
    return out.reshape(b, samples, *out.shape[1:])


@torch.no_grad()
def evaluate_quality(
    model: Any,
    dataset: Any,
    scenes: Sequence[int],
    config: QualityConfig,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict[str, Any]:
    """Measure the PSNR curves and the surprise curve of ``model`` (a :class:`~worldmodel.models.gqn.GQN`).

    Args:
        model: the GQN (moved to ``device`` and set to eval mode here).
        dataset: a :class:`~worldmodel.data.reader.SceneDataset` (or subset) of held-out scenes.
        scenes: positions in ``dataset`` of the scenes to use.
        config: the settings.
        device: where to run.
        progress: show a tqdm progress bar over batches.

    Returns:
        ``{"psnr": {K: {method: summary}}, "gain_over_nearest": {K: {method: summary}},
        "surprise": {K: summary}, "per_scene": {...}, "grid": {...}, "scene_indices": [...]}``; a
        summary is :func:`bootstrap_ci`'s dict; K keys are ints.
    """
    from tqdm.auto import tqdm

    from worldmodel.data.transfer import to_device

    size = int(model.config.image_size)
    if int(dataset.size) != size:
        raise ValueError(
            f"the dataset {getattr(dataset, 'root', '')} has {dataset.size}px images but the GQN was trained "
            f"on {size}px (image_size={size}); evaluate on data collected with --size {size}"
        )
    views, kmax, n = int(dataset.views), int(config.kmax), int(config.samples)
    if not 1 <= kmax <= views - 1:
        raise ValueError(
            f"kmax {kmax} needs kmax + 1 views per scene (kmax context views + 1 query), but the scenes "
            f"have {views}: choose kmax in 1..{views - 1}"
        )
    scenes = [int(s) for s in scenes]
    if not scenes:
        raise ValueError("no scenes to evaluate")
    device = torch.device(device)
    model = model.to(device).eval()
    scale = float(model.config.position_scale or 1.0)
    global_index = [int(dataset.global_index(s)) for s in scenes]
    choices = [choose_views(views, kmax, config.seed, g) for g in global_index]

    per = {m: {k: [] for k in range(1, kmax + 1)} for m in METHODS}
    surprise = {k: [] for k in range(kmax + 1)}
    grid: dict[str, Any] = {}
    batches = range(0, len(scenes), config.batch_size)
    for start in tqdm(batches, desc="wm eval gqn", unit="batch", disable=not progress):
        sl = slice(start, start + config.batch_size)
        batch = to_device(read_batch(dataset, scenes[sl], choices[sl]), device)
        cf, cv, cc = batch["context_frames"], batch["context_viewpoints"], batch["context_cameras"]
        qf, qv, qc = batch["query_frame"], batch["query_viewpoint"], batch["query_camera"]
        b = qf.shape[0]
        for k in range(kmax + 1):
            torch.manual_seed(_seed_for(config.seed, global_index[start], k))
            kl = model.surprise(cf[:, :k], cv[:, :k], qf, qv, samples=config.surprise_samples)
            surprise[k].extend(kl.float().cpu().tolist())
            if k == 0:
                continue
            draws = prior_predictions(model, cf[:, :k], cv[:, :k], qv, n)  # [B,N,3,H,W]
            ps = psnr(draws, qf[:, None].expand_as(draws), config.psnr_cap_db)  # [B,N]
            mean_img = draws.mean(dim=1)
            near = nearest_view(cc[:, :k], qc, scale)
            near_img = cf[torch.arange(b, device=device), near]
            values = {
                "prior_mean": psnr(mean_img, qf, config.psnr_cap_db),
                "best_of_n": ps.max(dim=1).values,
                "prior_sample": ps.mean(dim=1),
                "nearest_context": psnr(near_img, qf, config.psnr_cap_db),
                "mean_context": psnr(cf[:, :k].mean(dim=1), qf, config.psnr_cap_db),
            }
            for m, v in values.items():
                per[m][k].extend(v.cpu().tolist())
            if k == kmax and start == 0 and config.grid_scenes:
                g = min(config.grid_scenes, b)
                best = ps[:g].argmax(dim=1)
                grid = {
                    "context": cf[:g, :k].cpu(),
                    "truth": qf[:g].cpu(),
                    "prior_mean": mean_img[:g].cpu(),
                    "best_sample": draws[torch.arange(g, device=device), best].cpu(),
                    "nearest_context": near_img[:g].cpu(),
                    "scene_indices": global_index[:g],
                    "k": k,
                }

    def summary(values: list[float], salt: int) -> dict[str, Any]:
        return bootstrap_ci(values, config.bootstrap, config.confidence, seed=config.seed * 7919 + salt)

    psnr_summary = {k: {m: summary(per[m][k], i * 1000 + k) for i, m in enumerate(METHODS)} for k in range(1, kmax + 1)}
    gain = {
        k: {
            m: summary(list(np.subtract(per[m][k], per["nearest_context"][k])), 50_000 + i * 1000 + k)
            for i, m in enumerate(MODEL_METHODS)
        }
        for k in range(1, kmax + 1)
    }
    return {
        "psnr": psnr_summary,
        "gain_over_nearest": gain,
        "surprise": {k: summary(v, 90_000 + k) for k, v in surprise.items()},
        "per_scene": {"psnr": {m: {k: v for k, v in per[m].items()} for m in METHODS}, "surprise": surprise},
        "views": {str(g): [int(x) for x in c] for g, c in zip(global_index, choices)},
        "scene_indices": global_index,
        "grid": grid,
    }
