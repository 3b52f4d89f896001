"""The homNIST *test* protocol: Metropolis-walk homographies, 32 warps per test digit, and the published ``.mat``.

The homNIST training pairs of :mod:`worldmodel.data.homography` draw ``c ~ N(0, s^2)`` once per
image. The homNIST test set used by Neural Isometries (Mitchel et al. 2024) comes from another
generator: it starts at ``0.5 s N(0, 1)`` and takes Metropolis random-walk steps of
``0.5 s N(0, 1)``, and each of the 10,000 MNIST test digits is warped 32 times. Its
per-coefficient standard deviation is about ``0.7 s`` (milder than the training warps, whose
standard deviation is ``s``).

The acceptance rule of the original generator is not published with NISO; this module uses a
Metropolis random walk whose stationary distribution is the training warp distribution
(see :func:`metropolis_coefficients`). With the default 5 steps the per-coefficient standard
deviation is 0.70 s (``tests/test_niso_protocol.py`` measures it).

When the published file is at hand, :func:`load_homnist_mat` reads it (``scipy.io.loadmat``:
``img_data`` float ``[n, 40, 40]`` in [0, 1] and ``labels``, the keys the official
``get_hmnist`` reads); :func:`save_homnist_mat` writes a generated test set in the same layout.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldmodel.data.homography import HOMOGRAPHY_SIGMAS, SL3_BASIS, homography_matrices, load_digit_images, warp

#: Warps of each test digit in homNIST's test set.
HOMNIST_WARPS = 32
#: Metropolis steps of :func:`metropolis_coefficients` by default: the per-coefficient std comes out at ~0.70 s.
DEFAULT_WALK_STEPS = 5
#: Keys of the published ``homNIST_test.mat`` (images, labels).
MAT_IMAGE_KEY, MAT_LABEL_KEY = "img_data", "labels"


@dataclass
class HomnistSamplerConfig:
    """The Metropolis random walk that draws homNIST test homographies."""

    steps: int = DEFAULT_WALK_STEPS
    """Metropolis steps per chain (0: the start itself). Default 5: per-coefficient std ~0.70 s."""
    init_scale: float = 0.5
    """Start ``c_0 = init_scale * s * N(0, I)`` (homNIST: 0.5)."""
    step_scale: float = 0.5
    """Proposal ``c' = c + step_scale * s * N(0, I)`` (homNIST: 0.5)."""
    scale: float = 1.0
    """Multiplier of all of ``s`` (a model's ``sigma_scale``); the target is ``N(0, (scale s)^2 I)``."""

    def __post_init__(self) -> None:
        if int(self.steps) != self.steps or self.steps < 0:
            raise ValueError(f"steps must be an integer >= 0, got {self.steps!r}")
        self.steps = int(self.steps)
        for name in ("init_scale", "step_scale", "scale"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def metropolis_coefficients(
    n: int,
    config: HomnistSamplerConfig | None = None,
    generator: torch.Generator | None = None,
    sigmas: tuple[float, ...] = HOMOGRAPHY_SIGMAS,
) -> torch.Tensor:
    """``[n, 8]`` float64 sl(3) coefficients, each row the end of its own Metropolis random walk.

    The walk runs in standardised coordinates ``z = c / (scale s)`` (so ``scale = 0`` is allowed
    and gives the identity):

    * start ``z_0 = init_scale * xi``, ``xi ~ N(0, I_8)``;
    * proposal ``z' = z_t + step_scale * eta``, ``eta ~ N(0, I_8)`` (symmetric);
    * acceptance: with ``u ~ U(0, 1)``, ``z_{t+1} = z'`` if
      ``log u < (||z_t||^2 - ||z'||^2) / 2`` (i.e. with probability
      ``min(1, pi(z') / pi(z_t))`` for the target ``pi = N(0, I_8)``), else ``z_{t+1} = z_t``;
      one joint decision for all 8 coefficients;
    * ``c = scale * s * z_steps``.

    The stationary distribution is the training warp distribution ``N(0, (scale s)^2)``; started
    inside it (``init_scale < 1``) the walk spreads out step by step: the per-coefficient std is
    0.50 s at 0 steps, 0.60 s at 2, 0.70 s at 5 (the default), 0.75 s at 7 (acceptance ~47%).

    Args:
        n: number of coefficient vectors (independent chains).
        config: walk settings (default :class:`HomnistSamplerConfig`).
        generator: RNG (deterministic draws for a fixed seed).
        sigmas: the 8 per-coefficient standard deviations ``s`` (homNIST's by default).
    """
    cfg = config or HomnistSamplerConfig()
    if len(sigmas) != SL3_BASIS.shape[0]:
        raise ValueError(f"sigmas must have {SL3_BASIS.shape[0]} values (one per sl(3) generator), got {len(sigmas)}")
    dim = len(sigmas)
    z = torch.randn(n, dim, generator=generator, dtype=torch.float64) * cfg.init_scale
    for _ in range(cfg.steps):
        proposal = z + torch.randn(n, dim, generator=generator, dtype=torch.float64) * cfg.step_scale
        log_ratio = 0.5 * (z.square().sum(-1) - proposal.square().sum(-1))
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        accept = torch.log(u) < log_ratio
        z = torch.where(accept.unsqueeze(-1), proposal, z)
    return z * (torch.tensor(sigmas, dtype=torch.float64) * cfg.scale)


def homnist_test_homographies(
    n: int, config: HomnistSamplerConfig | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``[n, 3, 3]`` float64 homographies ``expm(sum_i c_i B_i)`` with :func:`metropolis_coefficients`."""
    return homography_matrices(metropolis_coefficients(n, config, generator))


def iter_homnist_test_set(
    images: torch.Tensor,
    labels: torch.Tensor,
    warps: int = HOMNIST_WARPS,
    seed: int = 0,
    config: HomnistSamplerConfig | None = None,
    digits_per_batch: int = 128,
) -> Iterator[dict[str, torch.Tensor]]:
    """Batches of the homNIST-style test set: each digit warped ``warps`` times (digit-major order).

    Yields dicts with ``image`` uint8 ``[m, C, H, W]``, ``label`` int64 ``[m]``, ``digit`` (index
    into ``images``) int64 ``[m]`` and ``homography`` float64 ``[m, 3, 3]``, ``m = warps *``
    (digits in the batch). Deterministic in ``seed`` and independent of ``digits_per_batch`` (the
    homographies of all ``n * warps`` warps are drawn first, from one generator).
    """
    if images.ndim != 4 or images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 [n, C, H, W], got {images.dtype} {tuple(images.shape)}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must be [n={images.shape[0]}], got {tuple(labels.shape)}")
    if warps < 1 or digits_per_batch < 1:
        raise ValueError(f"warps and digits_per_batch must be >= 1, got {warps} and {digits_per_batch}")
    n = images.shape[0]
    gen = torch.Generator().manual_seed(seed)
    hom = homnist_test_homographies(n * warps, config, gen)
    for start in range(0, n, digits_per_batch):
        digit = torch.arange(start, min(n, start + digits_per_batch)).repeat_interleave(warps)
        h = hom[start * warps : start * warps + len(digit)]
        x = images[digit].float() / 255.0
        out = (warp(x, h) * 255.0).round().clamp(0, 255).to(torch.uint8)
        yield {"image": out, "label": labels[digit].clone(), "digit": digit, "homography": h}


def build_homnist_test_set(
    images: torch.Tensor,
    labels: torch.Tensor,
    warps: int = HOMNIST_WARPS,
    seed: int = 0,
    config: HomnistSamplerConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The whole homNIST-style test set in memory: (uint8 ``[n * warps, C, H, W]``, labels, digit indices).

    Full MNIST (10,000 digits x 32 warps of 40x40) is 512 MB; use :func:`iter_homnist_test_set`
    to stream it instead.
    """
    parts = list(iter_homnist_test_set(images, labels, warps, seed, config))
    return (
        torch.cat([p["image"] for p in parts]),
        torch.cat([p["label"] for p in parts]),
        torch.cat([p["digit"] for p in parts]),
    )


def load_homnist_mat(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The published homNIST test set (``homNIST_test.mat``) as (uint8 ``[n, 1, H, W]``, int64 labels ``[n]``).

    Read with ``scipy.io.loadmat`` (MATLAB v5 files; no pickle). ``img_data`` is float in [0, 1]
    (as the official loader assumes: it multiplies by 255) or uint8, shaped ``[n, H, W]`` or
    ``[n, H, W, 1]``; ``labels`` any shape holding ``n`` integers in 0..9.
    """
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such homNIST .mat file")
    data = loadmat(str(path))
    missing = [k for k in (MAT_IMAGE_KEY, MAT_LABEL_KEY) if k not in data]
    if missing:
        found = sorted(k for k in data if not k.startswith("__"))
        raise ValueError(f"{path}: missing key(s) {', '.join(missing)}; the file holds {', '.join(found) or 'nothing'}")
    img = np.asarray(data[MAT_IMAGE_KEY])
    if img.ndim == 4 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim != 3:
        raise ValueError(f"{path}: {MAT_IMAGE_KEY} must be [n, H, W] or [n, H, W, 1], got shape {img.shape}")
    if img.dtype == np.uint8:
        pixels = img
    elif np.issubdtype(img.dtype, np.floating):
        lo, hi = float(img.min(initial=0.0)), float(img.max(initial=0.0))
        if lo < -1e-6 or hi > 1.0 + 1e-6:
            raise ValueError(f"{path}: float {MAT_IMAGE_KEY} must lie in [0, 1], found values in [{lo}, {hi}]")
        pixels = np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    else:
        raise ValueError(f"{path}: {MAT_IMAGE_KEY} must be float in [0, 1] or uint8, got dtype {img.dtype}")
    labels = np.asarray(data[MAT_LABEL_KEY]).reshape(-1)
    if labels.shape[0] != img.shape[0]:
        raise ValueError(f"{path}: {img.shape[0]} images but {labels.shape[0]} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9 or not np.all(labels == np.round(labels))):
        raise ValueError(f"{path}: labels must be integers in 0..9, found {labels.min()}..{labels.max()}")
    return torch.from_numpy(np.ascontiguousarray(pixels)).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def save_homnist_mat(path: str | Path, images: torch.Tensor, labels: torch.Tensor) -> Path:
    """Write uint8 grey images ``[n, 1, H, W]`` and labels in the layout :func:`load_homnist_mat` reads."""
    from scipy.io import savemat

    if images.ndim != 4 or images.shape[1] != 1 or images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 [n, 1, H, W], got {images.dtype} {tuple(images.shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = images[:, 0].numpy().astype(np.float32) / 255.0
    savemat(str(path), {MAT_IMAGE_KEY: pixels, MAT_LABEL_KEY: labels.numpy().astype(np.int32)}, do_compression=True)
    return path


def protocol_digits(
    source: str, size: int, max_train: int | None = None, max_test_digits: int | None = None
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Clean ``(train images, labels), (test images, labels)`` of ``source`` for the classification protocols.

    :func:`worldmodel.data.homography.load_digit_images` at side ``size``, each split cut to its
    first ``max_train`` / ``max_test_digits`` digits when given.
    """
    train_x, train_y = load_digit_images(source, "train", size)
    test_x, test_y = load_digit_images(source, "test", size)
    return (train_x[:max_train], train_y[:max_train]), (test_x[:max_test_digits], test_y[:max_test_digits])


def warped_test_batches(
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    size: int,
    mat_path: str | None = None,
    warps: int = HOMNIST_WARPS,
    seed: int = 1234,
    walk: HomnistSamplerConfig | None = None,
    max_test_digits: int | None = None,
    source: str = "digits",
) -> tuple[Iterator[tuple[torch.Tensor, torch.Tensor]], dict[str, Any]]:
    """The warped test set of the classification protocols, as ``(images, labels)`` batches and its description.

    The published ``homNIST_test.mat`` when ``mat_path`` is given (its first ``max_test_digits *
    warps`` images; their side must be ``size``), else ``test_x`` warped ``warps`` times each by
    :func:`iter_homnist_test_set` with ``seed`` and ``walk``. Every classifier tested through this
    function (representation heads, the raw-pixel reference) reads the same images.
    """
    if mat_path is not None:
        warped_x, warped_y = load_homnist_mat(mat_path)
        if max_test_digits is not None:
            warped_x, warped_y = warped_x[: max_test_digits * warps], warped_y[: max_test_digits * warps]
        if tuple(warped_x.shape[-2:]) != (size, size):
            raise ValueError(f"{mat_path}: images are {tuple(warped_x.shape[-2:])}, expected {size}x{size}")
        return iter([(warped_x, warped_y)]), {"kind": "homNIST_test.mat", "path": str(mat_path)}
    walk = walk or HomnistSamplerConfig()
    batches = ((b["image"], b["label"]) for b in iter_homnist_test_set(test_x, test_y, warps, seed, walk))
    return batches, {"kind": "generated", "warps": warps, "seed": seed, "sampler": asdict(walk), "source": source}
