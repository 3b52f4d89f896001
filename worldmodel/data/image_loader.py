"""Loaders of single images: the ``image`` loader kind over scene datasets, and rendered factor data.

* :func:`make_image_loader` (the ``image`` kind of the data contract): one view per scene per
  epoch, the view drawn from ``(seed, epoch, rank, batch)`` like the other scene loaders::

      image  uint8 [B,H,W,3]   camera float32 [B,5]   view int64 [B]   index int64 [B]

  (:func:`worldmodel.data.transfer.to_device` turns ``image`` into float ``[B,3,H,W]`` and adds
  the 7-d ``viewpoint``).
* :class:`FactorImageLoader`: batches of an indexed image set such as
  :class:`worldmodel.data.shapes.ShapesDataset` (rendered on demand) or
  :class:`worldmodel.data.shapes.DSpritesNpz`::

      image uint8 [B,C,H,W] (0..255, channel-first)   factors int64 [B,F]   index int64 [B]

* :func:`factor_run_data`: train/validation loaders of such a set for the training engine.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from worldmodel.data.loader import SceneBatchSampler, _loader, _open, _ranks
from worldmodel.data.reader import SceneDataset


class ImageBatchSampler(SceneBatchSampler):
    """Per scene one view uniform in ``0..views-1``; spec ``(scene, view)``."""

    def __init__(self, num_scenes: int, batch_size: int, views: int, **kwargs: Any) -> None:
        if views < 1:
            raise ValueError(f"views must be >= 1, got {views}")
        self.views = int(views)
        super().__init__(num_scenes, batch_size, **kwargs)

    def draw(self, scenes: Sequence[int], rng: np.random.Generator, shared: np.random.Generator) -> list[tuple]:
        return [(int(s), int(rng.integers(0, self.views))) for s in scenes]


class SingleViews(torch.utils.data.Dataset):
    """Reads whole batches of single views: specs ``(scene, view)`` -> stacked numpy arrays."""

    def __init__(self, scenes: SceneDataset) -> None:
        self.scenes = scenes

    def __getitem__(self, specs: Sequence[tuple]) -> dict[str, np.ndarray]:
        reads = [self.scenes.read_views(scene, [view]) for scene, view in specs]
        return {
            "image": np.stack([f[0] for f, _ in reads]),
            "camera": np.stack([c[0] for _, c in reads]).astype(np.float32),
            "view": np.array([v for _, v in specs], dtype=np.int64),
            "index": np.array([self.scenes.global_index(s) for s, _ in specs], dtype=np.int64),
        }


def make_image_loader(
    data: str | Path | SceneDataset,
    batch_size: int,
    seed: int = 0,
    num_workers: int = 0,
    shuffle: bool = True,
    distributed: bool = False,
    drop_last: bool = True,
    views_per_scene: int | None = None,
    num_replicas: int | None = None,
    rank: int | None = None,
    pin_memory: bool = False,
    **loader_kwargs: Any,
):
    """A loader of single views of a scene dataset (the ``image`` kind; see the module doc).

    Arguments as in :func:`worldmodel.data.loader.make_gqn_loader`.
    """
    ds = _open(data)
    views = ds.views if views_per_scene is None else int(views_per_scene)
    if not 1 <= views <= ds.views:
        raise ValueError(f"views_per_scene must be in 1..{ds.views} for this dataset, got {views_per_scene}")
    replicas, r = _ranks(distributed, num_replicas, rank)
    sampler = ImageBatchSampler(
        len(ds), batch_size, views, shuffle=shuffle, seed=seed, drop_last=drop_last, num_replicas=replicas, rank=r
    )
    return _loader(SingleViews(ds), sampler, num_workers, pin_memory, loader_kwargs)


class IndexedImages(Protocol):
    """An image set addressed by flat index (``ShapesDataset``, ``DSpritesNpz``)."""

    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]

    def __len__(self) -> int: ...  # pragma: no cover

    def images(self, indices: np.ndarray) -> np.ndarray:  # pragma: no cover
        """``uint8 [n, C, H, W]`` of flat indices."""
        ...

    def factors_of(self, indices: np.ndarray) -> np.ndarray:  # pragma: no cover
        """``int64 [n, F]`` of flat indices."""
        ...


class FactorImageLoader:
    """Batches of an :class:`IndexedImages` set over a fixed list of indices (see the module doc).

    Deterministic per ``(seed, epoch)``; under ``torch.distributed`` each rank takes a disjoint
    share of every epoch's permutation; the last partial batch is dropped.
    """

    def __init__(
        self,
        dataset: IndexedImages,
        indices: np.ndarray,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if rank is None or world_size is None:
            dist = torch.distributed
            rank, world_size = (
                (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
            )
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size, self.seed, self.shuffle = int(batch_size), int(seed), bool(shuffle)
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = 0
        if len(self) == 0:
            raise ValueError(
                f"{len(self.indices)} images are too few for batch_size {batch_size} x {self.world_size} ranks"
            )

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass use ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.indices) // self.world_size // self.batch_size

    def order(self, epoch: int) -> np.ndarray:
        """This rank's indices for ``epoch`` (a permutation share, or the fixed order without shuffling)."""
        idx = self.indices
        if self.shuffle:
            idx = idx[np.random.default_rng(np.random.SeedSequence([self.seed, epoch])).permutation(len(idx))]
        per_rank = len(idx) // self.world_size
        return idx[self.rank * per_rank : (self.rank + 1) * per_rank]

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        order = self.order(self.epoch)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield {
                "image": torch.from_numpy(np.ascontiguousarray(self.dataset.images(idx))),
                "factors": torch.from_numpy(self.dataset.factors_of(idx)),
                "index": torch.from_numpy(idx.copy()),
            }


def factor_run_data(
    dataset: IndexedImages, batch_per_rank: int, seed: int, val_fraction: float = 0.05, source: str = "shapes"
):
    """Train/validation loaders of an indexed image set for the training engine.

    The validation images are the first ``round(val_fraction * n)`` of a fixed permutation
    (seed 0, the same for every run, so held-out curves are comparable); training uses the rest.
    """
    from worldmodel.train.data import RunData

    n = len(dataset)
    perm = np.random.default_rng(0).permutation(n)
    n_val = int(round(val_fraction * n)) if val_fraction > 0 else 0
    train = FactorImageLoader(dataset, perm[n_val:], batch_per_rank, seed=seed)
    val = (
        FactorImageLoader(dataset, perm[:n_val], min(batch_per_rank, n_val), seed=seed + 1, shuffle=False)
        if n_val
        else None
    )
    channels, size, _ = dataset.observation_shape
    summary = {
        "source": source,
        "images": n,
        "factor_names": list(dataset.factor_names),
        "factor_sizes": list(dataset.factor_sizes),
    }
    info = {
        "train": {**summary, "split": "train", "count": n - n_val},
        "val": None if val is None else {**summary, "split": "val", "count": n_val},
        "image_size": int(size),
        "channels": int(channels),
        "source": source,
    }
    return RunData(train, val, info)
