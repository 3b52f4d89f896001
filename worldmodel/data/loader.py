"""Torch data loaders over scene datasets: GQN batches and NISO view pairs.

All randomness (scene order, number of context views K, which views, frame skips) is drawn in
the main process by a batch sampler from ``(seed, epoch, rank, batch number)``; workers only read
the views they are told to. So batches are identical for any ``num_workers`` and reproducible
for a given seed and epoch. Images leave the workers as uint8; convert them on the device with
:func:`worldmodel.data.transfer.to_device`.

Epochs: each pass over a loader uses the sampler's current epoch and then advances it by one,
so ``for epoch in ...: for batch in loader`` sees fresh draws; ``loader.set_epoch(e)`` makes the
next pass use epoch ``e`` (call it every epoch, as with ``DistributedSampler``, to be explicit).

Distributed training: when ``torch.distributed`` is initialised (or ``distributed=True``), scenes
are split across ranks with ``torch.utils.data.DistributedSampler`` (disjoint per epoch; with
``drop_last=False`` it pads by repeating a few scenes, as torch does); ``batch_size`` is per rank.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from envs.camera import relative_transform
from worldmodel.data.reader import SceneDataset

#: Largest number of context views used by public GQN ports, per scene family (key: a substring
#: of the dataset's source); the default ``max_context`` (capped at views - 1).
GQN_CONTEXT_DEFAULTS: dict[str, int] = {"jaco": 7, "maze": 20, "rooms": 5, "shepard": 15}
#: Largest frame skip supported by pair loaders (as ``worldmodel.models.niso_config.MAX_PAIR_SKIP``).
MAX_SKIP = 20
#: Last word of the seed of the rank-independent per-batch stream (``shared`` in ``draw``).
SHARED_STREAM = 0x5EED


def _open(data: str | Path | SceneDataset) -> SceneDataset:
    return data if isinstance(data, SceneDataset) else SceneDataset(data)


def default_max_context(source: str, views: int) -> int:
    """The port-standard context size for ``source``, at most ``views - 1``."""
    for key, k in GQN_CONTEXT_DEFAULTS.items():
        if key in source:
            return max(1, min(k, views - 1))
    return max(1, views - 1)


# ----------------------------------------------------------------------------- samplers


class SceneBatchSampler(Sampler[list[tuple]]):
    """Yields batches of sample specs (tuples) built from a per-epoch scene order.

    Subclasses implement :meth:`draw`, turning a batch of scene indices and a batch-specific
    random generator into the specs the dataset reads.

    Args:
        num_scenes: scenes in the dataset.
        batch_size: samples per batch (per rank).
        shuffle: random scene order each epoch (else 0, 1, 2, ...).
        seed: base seed of every random draw.
        drop_last: drop the last incomplete batch.
        num_replicas, rank: split scenes across ranks with a ``DistributedSampler``; ``None``
            means a single process.
    """

    def __init__(
        self,
        num_scenes: int,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_scenes < 1:
            raise ValueError("the dataset holds no scenes")
        self.num_scenes = int(num_scenes)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        self.rank = 0 if rank is None else int(rank)
        self.scene_sampler: DistributedSampler | None = None
        if num_replicas is not None:
            self.scene_sampler = DistributedSampler(
                range(self.num_scenes),
                num_replicas=num_replicas,
                rank=self.rank,
                shuffle=self.shuffle,
                seed=self.seed,
                drop_last=self.drop_last,
            )
        if len(self) == 0:
            raise ValueError(
                f"no full batch: {self._scenes_per_rank()} scenes per rank < batch_size {batch_size} with "
                "drop_last=True"
            )

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Make the next pass use ``epoch`` (passes then advance it by one), starting at batch
        ``start_batch`` of it (a mid-epoch resume: the skipped batches are never drawn or read)."""
        if not 0 <= int(start_batch) <= len(self):
            raise ValueError(f"start_batch must be in 0..{len(self)} (batches per epoch), got {start_batch}")
        self.epoch = int(epoch)
        self.start_batch = int(start_batch)

    def _scenes_per_rank(self) -> int:
        return len(self.scene_sampler) if self.scene_sampler is not None else self.num_scenes

    def scene_order(self, epoch: int) -> list[int]:
        """This rank's scene indices for ``epoch``."""
        if self.scene_sampler is not None:
            self.scene_sampler.set_epoch(epoch)
            return list(self.scene_sampler)
        if not self.shuffle:
            return list(range(self.num_scenes))
        g = torch.Generator()
        g.manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_scenes, generator=g).tolist()

    def __len__(self) -> int:
        n = self._scenes_per_rank()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[list[tuple]]:
        epoch, start = self.epoch, getattr(self, "start_batch", 0)
        self.epoch, self.start_batch = self.epoch + 1, 0
        order = self.scene_order(epoch)
        for b in range(start, len(self)):
            scenes = order[b * self.batch_size : (b + 1) * self.batch_size]
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, self.rank, b]))
            shared = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, b, SHARED_STREAM]))
            yield self.draw(scenes, rng, shared)

    def draw(
        self, scenes: Sequence[int], rng: np.random.Generator, shared: np.random.Generator
    ) -> list[tuple]:  # pragma: no cover
        """Sample specs of one batch: per-scene choices from ``rng`` (this rank's stream), per-batch
        choices every rank must make alike from ``shared`` (drawn from seed, epoch and batch only)."""
        raise NotImplementedError


class GQNBatchSampler(SceneBatchSampler):
    """Per batch: one K in ``1..max_context``; per scene: K context views + 1 query, all distinct.

    A spec is ``(scene, (v_1, ..., v_K, v_query))``.
    """

    def __init__(self, num_scenes: int, batch_size: int, views: int, max_context: int, **kwargs: Any) -> None:
        if not 1 <= max_context <= views - 1:
            raise ValueError(f"max_context must be in 1..{views - 1} (views per scene - 1), got {max_context}")
        self.views = int(views)
        self.max_context = int(max_context)
        super().__init__(num_scenes, batch_size, **kwargs)

    def draw(self, scenes: Sequence[int], rng: np.random.Generator, shared: np.random.Generator) -> list[tuple]:
        # K from the rank-independent stream: under DDP every rank runs the same K, so no rank
        # waits at the gradient all-reduce for one that drew a larger context
        k = int(shared.integers(1, self.max_context + 1))
        return [(int(s), tuple(int(v) for v in rng.choice(self.views, size=k + 1, replace=False))) for s in scenes]


class PairBatchSampler(SceneBatchSampler):
    """Per scene: a skip k uniform in ``skips`` (inclusive) and a start view a; spec ``(scene, a, a + k)``."""

    def __init__(self, num_scenes: int, batch_size: int, views: int, skips: tuple[int, int], **kwargs: Any) -> None:
        lo, hi = (int(s) for s in skips)
        if not 0 <= lo <= hi <= min(MAX_SKIP, views - 1):
            raise ValueError(
                f"skips must be an inclusive range (lo, hi) with 0 <= lo <= hi <= {min(MAX_SKIP, views - 1)} "
                f"(at most {MAX_SKIP} and views per scene - 1), got {skips}"
            )
        self.views = int(views)
        self.skips = (lo, hi)
        super().__init__(num_scenes, batch_size, **kwargs)

    def draw(self, scenes: Sequence[int], rng: np.random.Generator, shared: np.random.Generator) -> list[tuple]:
        out = []
        for s in scenes:
            k = int(rng.integers(self.skips[0], self.skips[1] + 1))
            a = int(rng.integers(0, self.views - k))
            out.append((int(s), a, a + k))
        return out


# ----------------------------------------------------------------------------- datasets


class GQNViews(Dataset):
    """Reads whole GQN batches: ``batch[specs]`` for specs ``(scene, views)`` -> dict of stacked numpy arrays."""

    def __init__(self, scenes: SceneDataset) -> None:
        self.scenes = scenes

    def __getitem__(self, specs: Sequence[tuple]) -> dict[str, np.ndarray]:
        reads = [self.scenes.read_views(scene, views) for scene, views in specs]
        frames = np.stack([f for f, _ in reads])
        cameras = np.stack([c for _, c in reads])
        return {
            "context_frames": frames[:, :-1],
            "context_cameras": cameras[:, :-1],
            "query_frame": frames[:, -1],
            "query_camera": cameras[:, -1],
            "index": np.array([self.scenes.global_index(scene) for scene, _ in specs], dtype=np.int64),
        }


class PairViews(Dataset):
    """Reads whole pair batches: specs ``(scene, a, b)`` -> two views and the pose of b in a's camera frame."""

    def __init__(self, scenes: SceneDataset) -> None:
        self.scenes = scenes

    def __getitem__(self, specs: Sequence[tuple]) -> dict[str, np.ndarray]:
        reads = [self.scenes.read_views(scene, [a, b]) for scene, a, b in specs]
        frames = np.stack([f for f, _ in reads])
        cameras = np.stack([c for _, c in reads])
        return {
            "frame_a": frames[:, 0],
            "frame_b": frames[:, 1],
            "camera_a": cameras[:, 0],
            "camera_b": cameras[:, 1],
            "relative": relative_transform(cameras[:, 0], cameras[:, 1]),  # vectorised over the batch
            "skip": np.array([b - a for _, a, b in specs], dtype=np.int64),
            "index": np.array([self.scenes.global_index(scene) for scene, _, _ in specs], dtype=np.int64),
        }


def to_tensors(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Numpy batch -> CPU tensors with the same dtypes (uint8 stays uint8)."""
    return {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in batch.items()}


class SceneLoader(DataLoader):
    """A ``DataLoader`` over whole-batch specs from a :class:`SceneBatchSampler`; adds :meth:`set_epoch`.

    Each worker reads one whole batch at a time (vectorised relative transforms, one IPC
    transfer per batch).
    """

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Make the next pass over the loader use ``epoch``, from batch ``start_batch`` on."""
        self.sampler.set_epoch(epoch, start_batch)

    @property
    def batch_specs(self) -> SceneBatchSampler:
        """The batch sampler (its ``max_context``, ``skips``, ``epoch``, ...)."""
        return self.sampler


def _ranks(distributed: bool, num_replicas: int | None, rank: int | None) -> tuple[int | None, int | None]:
    import torch.distributed as dist

    if num_replicas is not None or rank is not None:
        if num_replicas is None or rank is None or not 0 <= rank < num_replicas:
            raise ValueError(
                f"give both num_replicas and rank with 0 <= rank < num_replicas, got {num_replicas}, {rank}"
            )
        return int(num_replicas), int(rank)
    initialised = dist.is_available() and dist.is_initialized()
    if initialised:
        return dist.get_world_size(), dist.get_rank()
    if distributed:
        raise ValueError(
            "distributed=True needs torch.distributed initialised (torchrun) or explicit num_replicas and rank"
        )
    return None, None


def _loader(
    dataset: Dataset, sampler: SceneBatchSampler, num_workers: int, pin_memory: bool, loader_kwargs: dict[str, Any]
) -> SceneLoader:
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    # batch_size=None: the sampler's items are whole batches, read and stacked by the dataset.
    return SceneLoader(
        dataset,
        sampler=sampler,
        batch_size=None,
        num_workers=num_workers,
        collate_fn=to_tensors,
        pin_memory=pin_memory,
        **loader_kwargs,
    )


def make_gqn_loader(
    data: str | Path | SceneDataset,
    batch_size: int,
    max_context: int | None = None,
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
) -> SceneLoader:
    """A loader of GQN batches (dicts of CPU tensors)::

        context_frames uint8 [B,K,H,W,3]   context_cameras float32 [B,K,5]
        query_frame    uint8 [B,H,W,3]     query_camera    float32 [B,5]
        index          int64 [B]           (global scene index)

    K is drawn uniformly in ``1..max_context`` once per batch; the K + 1 views of a scene are
    drawn without replacement.

    Args:
        data: dataset directory or an open :class:`SceneDataset`.
        batch_size: scenes per batch (per rank).
        max_context: largest K; ``None``: the GQN-port value for the source (rooms 5, jaco 7,
            maze 20, Shepard-Metzler 15), at most views - 1.
        seed: base seed; with the epoch it fixes every batch.
        num_workers: DataLoader worker processes (batches do not depend on it).
        shuffle: random scene order per epoch.
        distributed: split scenes across ranks (automatic when torch.distributed is initialised).
        drop_last: drop the last incomplete batch.
        views_per_scene: use only the first N views of each scene (``None``: all).
        num_replicas, rank: explicit rank layout (otherwise read from torch.distributed).
        pin_memory: pin batches (for asynchronous host-to-GPU copies).
        loader_kwargs: passed to ``torch.utils.data.DataLoader`` (e.g. ``persistent_workers``).
    """
    ds = _open(data)
    views = ds.views if views_per_scene is None else int(views_per_scene)
    if not 2 <= views <= ds.views:
        raise ValueError(f"views_per_scene must be in 2..{ds.views} for this dataset, got {views_per_scene}")
    k = default_max_context(ds.info["source"], views) if max_context is None else int(max_context)
    replicas, r = _ranks(distributed, num_replicas, rank)
    sampler = GQNBatchSampler(
        len(ds), batch_size, views, k, shuffle=shuffle, seed=seed, drop_last=drop_last, num_replicas=replicas, rank=r
    )
    return _loader(GQNViews(ds), sampler, num_workers, pin_memory, loader_kwargs)


def make_pair_loader(
    data: str | Path | SceneDataset,
    batch_size: int,
    skips: tuple[int, int] = (1, 3),
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
) -> SceneLoader:
    """A loader of view pairs ``(psi, T psi)`` for NISO (dicts of CPU tensors)::

        frame_a uint8 [B,H,W,3]   frame_b uint8 [B,H,W,3]
        camera_a float32 [B,5]    camera_b float32 [B,5]
        relative float32 [B,4,4]  (= envs.camera.relative_transform(camera_a, camera_b))
        skip int64 [B]            index int64 [B]

    where view b = a + k along the scene's ordered views, k uniform in the inclusive range
    ``skips`` (within 0..MAX_SKIP and below the views per scene). Other arguments as in :func:`make_gqn_loader`.
    """
    ds = _open(data)
    views = ds.views if views_per_scene is None else int(views_per_scene)
    if not 1 <= views <= ds.views:
        raise ValueError(f"views_per_scene must be in 1..{ds.views} for this dataset, got {views_per_scene}")
    replicas, r = _ranks(distributed, num_replicas, rank)
    sampler = PairBatchSampler(
        len(ds),
        batch_size,
        views,
        tuple(skips),
        shuffle=shuffle,
        seed=seed,
        drop_last=drop_last,
        num_replicas=replicas,
        rank=r,
    )
    return _loader(PairViews(ds), sampler, num_workers, pin_memory, loader_kwargs)
