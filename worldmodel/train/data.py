"""Datasets and loaders for a training run: train/validation split and the learner's loader kind.

The validation split is ``val_data`` when given, else the last ``val_fraction`` of the training
dataset's scenes (a contiguous tail: for collected data, the highest generator indices).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worldmodel.data.format import MANIFEST_NAME
from worldmodel.data.reader import SceneDataset


class SceneSubset(SceneDataset):
    """Some scenes of a :class:`SceneDataset`, with the same reading API (a split of a dataset).

    Subclasses ``SceneDataset`` only so that the loaders accept it; every read is delegated to
    the parent dataset's public methods with the index mapped.
    """

    def __init__(self, base: SceneDataset, indices: Sequence[int]) -> None:  # noqa: D107 - no super().__init__
        self.base = base
        self.indices = [int(i) for i in indices]
        if not self.indices:
            raise ValueError(f"empty subset of {base.root}")
        self.root, self.manifest, self.views, self.size = base.root, base.manifest, base.views, base.size
        self.extras = base.extras

    def __len__(self) -> int:
        return len(self.indices)

    def _map(self, i: int) -> int:
        n = len(self.indices)
        if not -n <= i < n:
            raise IndexError(f"scene {i} out of range for a subset of {n} scenes of {self.root}")
        return self.indices[i]

    def locate(self, i: int) -> tuple[int, int]:
        return self.base.locate(self._map(i))

    def global_index(self, i: int) -> int:
        return self.base.global_index(self._map(i))

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.base[self._map(i)]

    def read_views(self, i: int, views: Any):
        return self.base.read_views(self._map(i), views)

    def cameras(self, i: int):
        return self.base.cameras(self._map(i))

    def read_extras(self, i: int):
        return self.base.read_extras(self._map(i))

    def metadata(self, i: int) -> dict[str, Any]:
        return self.base.metadata(self._map(i))

    @property
    def info(self) -> dict[str, Any]:
        info = dict(self.base.info)
        info.update(scenes=len(self), subset=f"{self.indices[0]}..{self.indices[-1]} ({len(self)} scenes)")
        return info

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__.copy()

    def close(self) -> None:
        self.base.close()

    def __repr__(self) -> str:
        return f"SceneSubset({self.base!r}, {len(self)} scenes)"


@dataclass
class RunData:
    """The datasets and loaders of one run."""

    train_loader: Any
    val_loader: Any
    info: dict[str, Any]


def _world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def split(
    dataset: SceneDataset, val_fraction: float, min_train: int, world_size: int = 1
) -> tuple[SceneDataset, SceneDataset | None]:
    """``(train, val)``: the last ``round(val_fraction * n)`` scenes held out (at least one per
    process; ``val`` is None if ``val_fraction`` is 0)."""
    n = len(dataset)
    if val_fraction <= 0:
        return dataset, None
    n_val = max(world_size, int(round(val_fraction * n)))
    if n - n_val < min_train:
        raise ValueError(
            f"{dataset.root}: {n} scenes leave {n - n_val} for training after holding out {n_val} "
            f"(val_fraction={val_fraction}), fewer than the per-process batch of {min_train}; "
            "collect more scenes, lower --batch-size or --val-fraction, or pass --val-data"
        )
    return SceneSubset(dataset, range(n - n_val)), SceneSubset(dataset, range(n - n_val, n))


def make_loader(
    kind: str,
    data: SceneDataset,
    batch_size: int,
    seed: int,
    shuffle: bool,
    num_workers: int,
    options: dict[str, Any],
    pin_memory: bool = False,
) -> Any:
    """A loader of the data contract: ``kind`` 'gqn', 'pair' or 'image'."""
    from worldmodel.data import loader as loaders
    from worldmodel.data.image_loader import make_image_loader

    factories = {"gqn": loaders.make_gqn_loader, "pair": loaders.make_pair_loader, "image": make_image_loader}
    if kind not in factories:
        raise ValueError(f"unknown loader kind {kind!r}; valid values: {', '.join(map(repr, factories))}")
    return factories[kind](
        data,
        batch_size=batch_size,
        seed=seed,
        num_workers=num_workers,
        shuffle=shuffle,
        drop_last=True,
        pin_memory=pin_memory,
        **options,
    )


def verify_run_datasets(data: str, val_data: str | None) -> list[str]:
    """Check every byte (sha256) of a run's scene datasets (``wm train --verify``); returns those checked.

    Paths that are not dataset directories (e.g. NISO's ``--data digits``) are left to the
    learner. Raises :class:`~worldmodel.data.format.DatasetError` naming the first bad shard file.
    """
    checked = []
    for path in (data, val_data):
        if path and (Path(path) / MANIFEST_NAME).is_file():
            SceneDataset(path, verify=True).close()
            checked.append(str(path))
    return checked


def build_run_data(
    kind: str,
    data: str,
    val_data: str | None,
    val_fraction: float,
    batch_per_rank: int,
    seed: int,
    num_workers: int,
    options: dict[str, Any],
    pin_memory: bool = False,
) -> RunData:
    """Open the datasets, split off validation and build both loaders (per-rank batch size).

    Opening checks every shard file's size, header and sampled hash (``SceneDataset``'s default
    check); ``wm train --verify`` adds the full sha256 beforehand (:func:`verify_run_datasets`).
    """
    if not data:
        raise ValueError("no training data: pass --data DIR (a dataset written by `wm data collect`)")
    full = SceneDataset(data)
    world = _world_size()
    if val_data:
        train, val = full, SceneDataset(val_data)
        if len(val) < world:
            raise ValueError(f"--val-data {val_data} holds {len(val)} scenes, fewer than the {world} processes")
    else:
        train, val = split(full, val_fraction, batch_per_rank, world)
    train_loader = make_loader(kind, train, batch_per_rank, seed, True, num_workers, options, pin_memory)
    val_loader = None
    if val is not None:
        per_rank = max(1, len(val) // world)
        val_loader = make_loader(kind, val, min(batch_per_rank, per_rank), seed + 1, False, 0, options, pin_memory)
    info = {
        "train": {**_summary(train), "path": str(data)},
        "val": None if val is None else {**_summary(val), "path": str(val_data or data)},
        "image_size": int(full.size),
        "views": int(full.views),
        "source": full.info.get("source"),
    }
    return RunData(train_loader, val_loader, info)


def _summary(ds: SceneDataset) -> dict[str, Any]:
    info = ds.info
    return {
        "scenes": len(ds),
        "views": ds.views,
        "size": ds.size,
        "source": info.get("source"),
        **({"subset": info["subset"]} if "subset" in info else {}),
    }
