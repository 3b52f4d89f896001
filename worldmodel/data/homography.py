"""Homography-warped digits: an offline stand-in for homNIST, the real MNIST IDX reader, and pairs.

homNIST (Neural Isometries, Mitchel et al. 2024) pads MNIST to 40x40 and warps each image by a
random homography ``H = expm(sum_i c_i B_i)`` over a basis ``B_1..B_8`` of ``sl(3)`` with
``c_i ~ N(0, s_i^2)``, ``s = (0.15, 0.35, 0.17, 0.35, 0.15, 0.17, 0.15, 0.15)``; bilinear
sampling, zeros outside. This module reproduces that protocol on two sources:

* ``"digits"``: the 1,797 8x8 digits bundled with scikit-learn (no download), upsampled and
  padded to 40x40 (an offline stand-in: far fewer and blurrier digits than MNIST);
* an MNIST directory holding the four IDX files (``train-images-idx3-ubyte[.gz]``, ...), parsed
  by hand (a big-endian header and raw bytes: no dependency needed).

Coordinates: homogeneous ``(x, y, 1)`` with ``x`` the column and ``y`` the row, both normalised to
``[-1, 1]`` across the image (pixel centres at the ends, ``align_corners=True``). The warped image
is ``(H . img)(p) = img(H p)`` (the sampling convention of the original code), so warping by
``H^-1`` undoes a warp by ``H`` wherever the content stayed in frame.
"""

from __future__ import annotations

import functools
import gzip
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

#: Standard deviations of the sl(3) coefficients of homNIST, in the order of :data:`SL3_BASIS`.
HOMOGRAPHY_SIGMAS: tuple[float, ...] = (0.15, 0.35, 0.17, 0.35, 0.15, 0.17, 0.15, 0.15)

#: Sources :func:`load_digit_images` understands besides an MNIST directory.
DIGIT_SOURCES: tuple[str, ...] = ("digits",)
SPLITS: tuple[str, ...] = ("train", "test")


def _sl3_basis() -> torch.Tensor:
    """The 8 traceless basis matrices ``E_ij`` (``i != j``) and ``E_ii - I/3`` (``i = 1, 2``)."""
    basis = []
    for i in range(3):
        for j in range(3):
            if (i, j) == (2, 2):
                continue
            m = torch.zeros(3, 3, dtype=torch.float64)
            m[i, j] = 1.0
            if i == j:
                m -= torch.eye(3, dtype=torch.float64) / 3.0
            basis.append(m)
    return torch.stack(basis)


#: ``[8, 3, 3]`` basis of sl(3): scale-x, shear xy, translate-x, shear yx, scale-y, translate-y,
#: perspective-x, perspective-y (acting on ``(x, y, 1)``).
SL3_BASIS: torch.Tensor = _sl3_basis()


def sample_coefficients(
    n: int, generator: torch.Generator | None = None, sigmas: tuple[float, ...] = HOMOGRAPHY_SIGMAS, scale: float = 1.0
) -> torch.Tensor:
    """``[n, 8]`` float64 coefficients ``c_i ~ N(0, (scale * s_i)^2)``."""
    if len(sigmas) != SL3_BASIS.shape[0]:
        raise ValueError(f"sigmas must have {SL3_BASIS.shape[0]} values (one per sl(3) generator), got {len(sigmas)}")
    s = torch.tensor(sigmas, dtype=torch.float64) * scale
    return torch.randn(n, len(sigmas), generator=generator, dtype=torch.float64) * s


def homography_matrices(coefficients: torch.Tensor) -> torch.Tensor:
    """``H = expm(sum_i c_i B_i)`` for coefficients ``[n, 8]`` -> ``[n, 3, 3]`` float64 (det 1)."""
    c = torch.as_tensor(coefficients, dtype=torch.float64)
    if c.ndim != 2 or c.shape[1] != SL3_BASIS.shape[0]:
        raise ValueError(f"coefficients must be [n, {SL3_BASIS.shape[0]}], got {tuple(c.shape)}")
    algebra = torch.einsum("ni,ijk->njk", c, SL3_BASIS)
    return torch.linalg.matrix_exp(algebra)


def sample_homographies(
    n: int, generator: torch.Generator | None = None, sigmas: tuple[float, ...] = HOMOGRAPHY_SIGMAS, scale: float = 1.0
) -> torch.Tensor:
    """``n`` random homNIST homographies ``[n, 3, 3]`` (float64)."""
    return homography_matrices(sample_coefficients(n, generator, sigmas, scale))


def warp(images: torch.Tensor, homographies: torch.Tensor) -> torch.Tensor:
    """Warp a batch: ``out(p) = images(H p)``; bilinear, zeros outside; one batched ``grid_sample``.

    Args:
        images: float ``[B, C, H, W]``.
        homographies: ``[B, 3, 3]`` (any float dtype; applied in float64 then cast).
    """
    if images.ndim != 4:
        raise ValueError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}")
    hom = torch.as_tensor(homographies, dtype=torch.float64, device=images.device)
    if hom.shape != (images.shape[0], 3, 3):
        raise ValueError(f"homographies must be [B={images.shape[0]}, 3, 3], got {tuple(hom.shape)}")
    h, w = images.shape[-2:]
    ys = torch.linspace(-1.0, 1.0, h, dtype=torch.float64, device=images.device)
    xs = torch.linspace(-1.0, 1.0, w, dtype=torch.float64, device=images.device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack((gx, gy, torch.ones_like(gx)), dim=-1).reshape(-1, 3)  # [HW, 3]
    mapped = points @ hom.transpose(1, 2)  # [B, HW, 3]
    z = mapped[..., 2:]
    # Points mapped to (or past) the plane at infinity fall outside the image.
    z = torch.where(z.abs() < 1e-8, torch.full_like(z, 1e-8), z)
    grid = (mapped[..., :2] / z).reshape(-1, h, w, 2).to(images.dtype)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


# ----------------------------------------------------------------------------- sources


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (MNIST's format; ``.gz`` allowed) into a numpy array.

    Header: two zero bytes, a type code (``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16,
    ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64), the number of dimensions, then one
    big-endian uint32 per dimension; the data follow, big-endian.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    types = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in types:
        raise ValueError(
            f"{path}: unknown IDX type code 0x{raw[2]:02x}; valid: {', '.join(f'0x{t:02x}' for t in types)}"
        )
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(types[raw[2]])
    offset = 4 + 4 * ndim
    expected = offset + math.prod(dims) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"{path}: IDX header promises {expected} bytes for shape {dims}, file has {len(raw)}")
    return np.frombuffer(raw, dtype=dtype, offset=offset).reshape(dims).astype(dtype.newbyteorder("="))


def _find_idx(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(
        f"{root}: no {stem}[.gz] (an MNIST directory holds train-/t10k- images and labels IDX files)"
    )


def load_mnist(root: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Real MNIST from IDX files in ``root``: (uint8 ``[n, 28, 28]``, int64 labels ``[n]``)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(map(repr, SPLITS))}")
    root = Path(root)
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(_find_idx(root, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find_idx(root, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{root}: MNIST {split} images {images.shape} and labels {labels.shape} do not match")
    return images.astype(np.uint8), labels.astype(np.int64)


def _pad_to(images: torch.Tensor, size: int) -> torch.Tensor:
    h, w = images.shape[-2:]
    if h > size or w > size:
        raise ValueError(f"cannot pad {h}x{w} digits to {size}x{size}")
    top, left = (size - h) // 2, (size - w) // 2
    return F.pad(images, (left, size - w - left, top, size - h - top))


@functools.lru_cache(maxsize=1)
def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (values 0..16) and labels, read once per process."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images, targets = bunch.images.astype(np.float32), bunch.target.astype(np.int64)
    images.flags.writeable = False
    targets.flags.writeable = False
    return images, targets


def load_digit_images(
    source: str, split: str = "train", size: int = 40, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean, centred digits as uint8 ``[n, 1, size, size]`` and labels int64 ``[n]``.

    Args:
        source: ``"digits"`` (scikit-learn's bundled 8x8 digits, split 80/20 into train/test with
            a fixed permutation) or a directory with the MNIST IDX files.
        split: ``"train"`` or ``"test"``.
        size: output side; MNIST's 28x28 is padded to it (homNIST: 40); the 8x8 digits are
            upsampled by 3 (bilinear, ``24 * size / 40`` pixels) before padding so that they
            cover the canvas as MNIST does.
        seed: permutation seed of the train/test split of ``"digits"``.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(map(repr, SPLITS))}")
    if source == "digits":
        images, targets = _sklearn_digits()
        order = np.random.default_rng(seed).permutation(len(targets))
        n_train = int(round(0.8 * len(order)))
        idx = order[:n_train] if split == "train" else order[n_train:]
        small = torch.from_numpy(images[idx].astype(np.float32) / 16.0).unsqueeze(1)
        inner = max(8, int(round(24 * size / 40)))
        big = F.interpolate(small, size=(inner, inner), mode="bilinear", align_corners=False).clamp(0.0, 1.0)
        return (_pad_to(big, size) * 255.0).round().to(torch.uint8), torch.from_numpy(targets[idx].astype(np.int64))
    root = Path(source)
    if not root.is_dir():
        raise ValueError(f"unknown digit source {source!r}; valid: 'digits' or a directory with the MNIST IDX files")
    images, labels = load_mnist(root, split)
    x = torch.from_numpy(images).unsqueeze(1)
    if x.shape[-1] > size:
        x = F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False).round().to(torch.uint8)
    return _pad_to(x, size), torch.from_numpy(labels)


def warped_test_set(
    images: torch.Tensor, seed: int = 0, sigmas: tuple[float, ...] = HOMOGRAPHY_SIGMAS, batch: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """homNIST's test protocol: each image warped once by its own random homography.

    Returns (uint8 images like ``images``, homographies ``[n, 3, 3]`` float64); deterministic in ``seed``.
    """
    gen = torch.Generator().manual_seed(seed)
    hom = sample_homographies(images.shape[0], gen, sigmas)
    out = torch.empty_like(images)
    for start in range(0, images.shape[0], batch):
        sl = slice(start, start + batch)
        out[sl] = (warp(images[sl].float() / 255.0, hom[sl]) * 255.0).round().clamp(0, 255).to(torch.uint8)
    return out, hom


# ----------------------------------------------------------------------------- pairs


@dataclass
class HomographyPairConfig:
    """Pairs ``(x, H x)`` of homography-warped digits for NISO training."""

    source: str = "digits"
    """``"digits"`` (offline stand-in) or a directory with the MNIST IDX files."""
    split: str = "train"
    """Which split the digits come from (``"train"`` or ``"test"``)."""
    size: int = 40
    """Image side in pixels (homNIST: 40)."""
    batch_size: int = 16
    """Pairs per batch (paper: 16)."""
    sigma_scale: float = 1.0
    """Multiplier of the homNIST coefficient standard deviations."""
    warp_both: bool = False
    """Warp the first image too (by an independent homography); homNIST pairs clean with warped."""
    channels: int = 1
    """1 (grey) or 3 (grey repeated into RGB, for encoders that expect colour)."""
    seed: int = 0
    """Seed of the shuffling and of the homographies (combined with the epoch)."""


class HomographyPairLoader:
    """Iterable of batches of homography pairs, deterministic per ``(seed, epoch)``.

    Each batch is a dict of CPU tensors in the pair-loader layout of the data contract:
    ``frame_a``, ``frame_b`` uint8 ``[B, H, W, C]``, plus ``homography`` float32 ``[B, 3, 3]``
    (``frame_b(p) = frame_a'(H p)`` where ``frame_a'`` is the clean digit), ``label`` and
    ``index`` (the digit's position in its split) int64 ``[B]``. An epoch visits every digit once (last partial batch
    dropped). Under ``torch.distributed`` (or with ``rank``/``world_size`` given) each rank takes a disjoint
    share of every epoch's permutation.
    """

    def __init__(self, config: HomographyPairConfig, rank: int | None = None, world_size: int | None = None) -> None:
        if config.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {config.channels}")
        if config.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {config.batch_size}")
        self.config = config
        self.images, self.labels = load_digit_images(config.source, config.split, config.size)
        if rank is None or world_size is None:
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
            else:
                rank, world_size = 0, 1
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = 0
        if len(self) == 0:
            raise ValueError(
                f"{len(self.labels)} digits are too few for batch_size {config.batch_size} x {self.world_size} ranks"
            )

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch (reshuffles and redraws the homographies deterministically)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.labels) // self.world_size // self.config.batch_size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        cfg = self.config
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.labels), generator=gen)
        per_rank = len(order) // self.world_size
        order = order[self.rank * per_rank : (self.rank + 1) * per_rank]
        for b in range(len(self)):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            yield self.make_batch(idx, gen)

    def make_batch(self, idx: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The batch for digit indices ``idx`` with homographies drawn from ``generator``."""
        cfg = self.config
        clean = self.images[idx].float() / 255.0
        hom = sample_homographies(len(idx), generator, scale=cfg.sigma_scale)
        if cfg.warp_both:
            first = sample_homographies(len(idx), generator, scale=cfg.sigma_scale)
            a = warp(clean, first)
            b = warp(clean, hom)
            # b = clean(H p) and a = clean(G p)  =>  b(p) = a(G^-1 H p)
            hom = torch.linalg.solve(first, hom)
        else:
            a = clean
            b = warp(clean, hom)
        return {
            "frame_a": _to_uint8_hwc(a, cfg.channels),
            "frame_b": _to_uint8_hwc(b, cfg.channels),
            "homography": hom.float(),
            "label": self.labels[idx].clone(),
            "index": idx.clone(),
        }


def _to_uint8_hwc(x: torch.Tensor, channels: int) -> torch.Tensor:
    x = (x * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return x.expand(-1, -1, -1, channels).contiguous() if channels != x.shape[-1] else x.contiguous()


def is_digit_source(data: str | Path | None) -> bool:
    """True if ``data`` names homography digits: ``"digits"`` or a directory with MNIST IDX files."""
    if data is None or str(data) == "":
        return False
    if str(data) in DIGIT_SOURCES:
        return True
    root = Path(data)
    if not root.is_dir() or (root / "manifest.json").is_file():
        return False
    try:
        _find_idx(root, "train-images-idx3-ubyte")
    except FileNotFoundError:
        return False
    return True


def homography_run_data(
    data: str,
    batch_per_rank: int,
    seed: int,
    size: int | None = None,
    sigma_scale: float = 1.0,
    channels: int = 1,
    with_val: bool = True,
):
    """Train/validation loaders of homography pairs for the training engine.

    Training pairs come from the train split (fresh homographies every epoch); validation pairs
    from the test split with fixed draws (``set_epoch(0)`` always yields the same batches).

    Returns:
        a :class:`worldmodel.train.data.RunData` whose ``info`` holds ``image_size``.
    """
    from worldmodel.train.data import RunData

    size = 40 if size is None else int(size)
    common = dict(source=str(data), size=size, batch_size=batch_per_rank, sigma_scale=sigma_scale, channels=channels)
    train = HomographyPairLoader(HomographyPairConfig(split="train", seed=seed, **common))
    val = HomographyPairLoader(HomographyPairConfig(split="test", seed=seed + 1, **common)) if with_val else None
    summary = {"source": str(data), "size": size, "channels": channels, "sigma_scale": sigma_scale}
    info = {
        "train": {**summary, "split": "train", "digits": int(len(train.labels))},
        "val": None if val is None else {**summary, "split": "test", "digits": int(len(val.labels))},
        "image_size": size,
        "channels": channels,
        "source": "homography-digits" if str(data) in DIGIT_SOURCES else "homography-mnist",
    }
    return RunData(train, val, info)
