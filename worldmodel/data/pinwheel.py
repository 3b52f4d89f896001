"""The pinwheel 2-d data set of the paper's clustering experiment, and a loader of point batches.

Follows R. P. Adams' ``pinwheel.m`` as called by the official code
(``pinwheel(radial_std=0.1, tangential_std=0.3, num_classes=4, num_per_class=100, rate=0.25)``,
so 400 points, train and test drawn alike): Gaussian blobs at (1, 0) with standard deviation
``tangential_std`` along x and ``radial_std`` along y (the Matlab code's ``diag([tangential_std
radial_std])``, kept as it is), each point then turned by ``arm angle + rate * exp(x)`` (row
vector times ``[[cos, -sin], [sin, cos]]``, as in the Matlab code).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

PINWHEEL_SOURCE = "pinwheel"


@dataclass(frozen=True)
class PinwheelSpec:
    """Parameters of a pinwheel draw (defaults: the paper's ``pinwheel_small``)."""

    radial_std: float = 0.1
    """Matlab argument ``radial_std`` (applied along y before the turn)."""
    tangential_std: float = 0.3
    """Matlab argument ``tangential_std`` (applied along x before the turn)."""
    num_classes: int = 4
    """Number of arms."""
    num_per_class: int = 100
    """Points per arm."""
    rate: float = 0.25
    """Radians turned per exp(x)."""


def make_pinwheel(spec: PinwheelSpec = PinwheelSpec(), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(points float32 [N, 2], labels int64 [N])`` with ``N = num_classes * num_per_class``."""
    if spec.num_classes < 1 or spec.num_per_class < 1:
        raise ValueError(f"num_classes and num_per_class must be >= 1, got {spec.num_classes}, {spec.num_per_class}")
    rng = np.random.default_rng(seed)
    n = spec.num_classes * spec.num_per_class
    rads = np.linspace(0.0, 2 * np.pi, spec.num_classes + 1)[:-1]
    feats = rng.standard_normal((n, 2)) * np.array([spec.tangential_std, spec.radial_std]) + np.array([1.0, 0.0])
    labels = np.repeat(np.arange(spec.num_classes), spec.num_per_class)
    angles = rads[labels] + spec.rate * np.exp(feats[:, 0])
    c, s = np.cos(angles), np.sin(angles)
    x, y = feats[:, 0], feats[:, 1]
    points = np.stack([x * c + y * s, -x * s + y * c], axis=1)  # [x y] @ [[c, -s], [s, c]]
    return points.astype(np.float32), labels.astype(np.int64)


class PointLoader:
    """Batches ``{"points": float32 [B, D], "label": int64 [B], "index": int64 [B]}`` of a fixed point set.

    Deterministic per ``(seed, epoch)``; under ``torch.distributed`` each rank takes a disjoint
    share of every epoch's permutation; the last partial batch is dropped.
    """

    def __init__(
        self,
        points: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if points.ndim != 2 or len(labels) != len(points):
            raise ValueError(f"points must be [N, D] with one label each, got {points.shape} and {len(labels)} labels")
        if rank is None or world_size is None:
            dist = torch.distributed
            rank, world_size = (
                (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
            )
        self.points, self.labels = torch.from_numpy(points), torch.from_numpy(labels)
        self.batch_size, self.seed, self.shuffle = int(batch_size), int(seed), bool(shuffle)
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = 0
        if len(self) == 0:
            raise ValueError(f"{len(points)} points are too few for batch_size {batch_size} x {self.world_size} ranks")

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass use ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.points) // self.world_size // self.batch_size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        n = len(self.points)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch))
        else:
            order = torch.arange(n)
        per_rank = n // self.world_size
        order = order[self.rank * per_rank : (self.rank + 1) * per_rank]
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield {"points": self.points[idx], "label": self.labels[idx], "index": idx.clone()}


def pinwheel_run_data(batch_per_rank: int, seed: int, with_val: bool = True, spec: PinwheelSpec = PinwheelSpec()):
    """Train/test loaders of the pinwheel for the training engine (train and test drawn alike, other seeds).

    Returns a :class:`worldmodel.train.data.RunData` (``info["image_size"]`` is None: not images).
    """
    from worldmodel.train.data import RunData

    train_pts, train_lab = make_pinwheel(spec, seed=2 * seed)
    train = PointLoader(train_pts, train_lab, batch_per_rank, seed=seed)
    val = None
    if with_val:
        test_pts, test_lab = make_pinwheel(spec, seed=2 * seed + 1)
        val = PointLoader(test_pts, test_lab, min(batch_per_rank, len(test_pts)), seed=seed + 1, shuffle=False)
    summary = {"source": PINWHEEL_SOURCE, "points": len(train_pts), **spec.__dict__}
    info = {
        "train": summary,
        "val": None if val is None else {**summary, "split": "test"},
        "image_size": None,
        "point_dim": 2,
        "source": PINWHEEL_SOURCE,
    }
    return RunData(train, val, info)
