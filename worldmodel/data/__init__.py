"""Multi-view scene datasets: collection, on-disk format, reading, loaders, GQN import.

* :mod:`worldmodel.data.format`  - manifest schema, file naming, checks (``DatasetError``)
* :mod:`worldmodel.data.writer`  - shard and dataset writers (atomic, resumable)
* :mod:`worldmodel.data.reader`  - :class:`SceneDataset` (memory-mapped random access)
* :mod:`worldmodel.data.collect` - parallel, resumable, shardable collection from ``envs.scenes``
* :mod:`worldmodel.data.merge` / :mod:`~worldmodel.data.verify` / :mod:`~worldmodel.data.show`
* :mod:`worldmodel.data.tfrecord` / :mod:`~worldmodel.data.gqn_import` - DeepMind gqn-datasets
* :mod:`worldmodel.data.loader` / :mod:`~worldmodel.data.transfer` - torch loaders (GQN, pairs)

Only the loader and transfer modules import torch; importing this package imports nothing
heavy (names below load on first use). The format is specified in ``docs/dataset_format.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> "module" (same attribute name) or "module:attribute". ``collect`` is exported as
#: ``collect_dataset``: a package attribute named like its submodule ``worldmodel.data.collect``
#: would be shadowed by the module once that is imported (``from worldmodel.data import collect``
#: would then return the module).
_EXPORTS = {
    "SceneDataset": "worldmodel.data.reader",
    "DatasetError": "worldmodel.data.format",
    "write_scenes": "worldmodel.data.writer",
    "CollectConfig": "worldmodel.data.collect",
    "collect_dataset": "worldmodel.data.collect:collect",
    "merge_datasets": "worldmodel.data.merge",
    "verify_dataset": "worldmodel.data.verify",
    "make_gqn_loader": "worldmodel.data.loader",
    "make_pair_loader": "worldmodel.data.loader",
    "to_device": "worldmodel.data.transfer",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'worldmodel.data' has no attribute {name!r}")
    module, _, attr = _EXPORTS[name].partition(":")
    value = getattr(importlib.import_module(module), attr or name)
    globals()[name] = value
    return value


__all__ = sorted(_EXPORTS)
