"""Reading datasets: :class:`SceneDataset`, random access to scenes through memory maps.

Opening a dataset always validates the manifest (format name, version, counts) and, for every
listed file, its presence, byte size and ``.npy`` header (shape and dtype), and by default a
*sampled* hash of a few fixed-position blocks recorded at write time (``check="sample"``: a few
page reads per file, see :func:`~worldmodel.data.format.sample_digest`). The full sha256 of
every file is checked only when asked (``verify=True``) or by ``wm data verify``, because hashing
a large dataset at every open would cost a full read. Every failure raises
:class:`~worldmodel.data.format.DatasetError` naming the file and what differs; nothing is skipped.

This module never imports torch (the torch side is :mod:`worldmodel.data.loader`).
"""

from __future__ import annotations

import bisect
import json
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from worldmodel.data.format import (
    DatasetError,
    check_file,
    check_level,
    describe_progress,
    extra_role,
    manifest_path,
    read_manifest,
)


class SceneDataset:
    """Random access to the scenes of a dataset directory.

    ``ds[i]`` returns ``dict(frames=uint8 [V,H,W,3], cameras=float32 [V,5], index=int)`` where
    ``index`` is the scene's global index (its generator index for collected data).

    Args:
        root: dataset directory (with ``manifest.json``).
        verify_checksums: the older name of ``verify`` (either one turns the full check on).
        allow_incomplete: open a dataset whose collection has not finished, or one part of a
            sharded collection; by default both are errors, so no scene goes missing unnoticed.
        max_open_shards: how many shards keep their memory maps open at once (an LRU cache;
            each map holds a file descriptor).
        verify: hash every file at open and compare with the manifest's sha256 (slow: reads
            the whole dataset once); same as ``check="full"``.
        check: how each file is checked at open: ``"size"`` (existence, byte size, ``.npy``
            header), ``"sample"`` (default: also the sampled-block hash, for manifests that
            record one) or ``"full"`` (also the whole-file sha256).
    """

    def __init__(
        self,
        root: str | Path,
        verify_checksums: bool = False,
        allow_incomplete: bool = False,
        max_open_shards: int = 64,
        *,
        verify: bool = False,
        check: str = "sample",
    ) -> None:
        self.root = Path(root)
        level = "full" if (verify or verify_checksums) else check_level(check)
        self.manifest = read_manifest(self.root)
        m = self.manifest
        if not m["complete"] and not allow_incomplete:
            raise DatasetError(
                f"{manifest_path(self.root)}: dataset is incomplete ({describe_progress(m)}); "
                "finish it by rerunning the same collect/import command, merge its shard parts with "
                "`wm data merge`, or open it with allow_incomplete=True"
            )
        part = (m.get("collection") or {}).get("shard")
        if part and not allow_incomplete:
            raise DatasetError(
                f"{manifest_path(self.root)}: this is only part {part} of a sharded collection (incomplete as a "
                "dataset); join all parts with `wm data merge PARTS... --out DIR`, or open it with "
                "allow_incomplete=True"
            )
        self.views = int(m["views"])
        self.size = int(m["size"])
        self.extras: dict[str, dict[str, Any]] = dict(m.get("extras") or {})
        self._shards: list[dict[str, Any]] = m["shards"]
        for shard in self._shards:
            self._check_shard(shard, level)
        self._starts = np.cumsum([0] + [int(s["count"]) for s in self._shards]).tolist()
        self.max_open_shards = int(max_open_shards)
        self._maps: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._meta: dict[int, list[dict[str, Any]]] = {}

    # ------------------------------------------------------------------ validation

    def _check_shard(self, shard: dict[str, Any], level: str) -> None:
        n, files = int(shard["count"]), shard["files"]
        expected = {
            "frames": ([n, self.views, self.size, self.size, 3], "uint8"),
            "cameras": ([n, self.views, 5], "float32"),
        }
        for name, spec in self.extras.items():
            expected[extra_role(name)] = ([n, *spec["shape"]], spec["dtype"])
        for role, (shape, dtype) in expected.items():
            entry = files.get(role)
            if entry is None:
                raise DatasetError(f"{manifest_path(self.root)}: shard unit {shard['unit']} lists no {role!r} file")
            if entry.get("shape") != shape or entry.get("dtype") != dtype:
                raise DatasetError(
                    f"{self.root / entry['path']}: manifest mismatch: entry says "
                    f"{entry.get('dtype')}{entry.get('shape')}, the dataset's counts and sizes need {dtype}{shape}"
                )
        for entry in files.values():
            check_file(self.root, entry, level)

    # ------------------------------------------------------------------ access

    def __len__(self) -> int:
        return self._starts[-1]

    def locate(self, i: int) -> tuple[int, int]:
        """``(shard position, row in shard)`` of scene ``i`` (0 <= i < len)."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"scene {i} out of range for a dataset of {n} scenes ({self.root})")
        i = int(i) % n
        pos = bisect.bisect_right(self._starts, i) - 1
        return pos, i - self._starts[pos]

    def _arrays(self, pos: int) -> dict[str, np.ndarray]:
        maps = self._maps.get(pos)
        if maps is not None:
            self._maps.move_to_end(pos)
            return maps
        maps = {}
        for role, entry in self._shards[pos]["files"].items():
            if role == "meta":
                continue
            path = self.root / entry["path"]
            try:
                maps[role] = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as err:
                raise DatasetError(f"{path}: cannot map shard file ({err})") from None
        self._maps[pos] = maps
        while len(self._maps) > self.max_open_shards:
            self._maps.popitem(last=False)
        return maps

    def global_index(self, i: int) -> int:
        """Global (generator) index of scene ``i``."""
        pos, row = self.locate(i)
        return int(self._shards[pos].get("first_index", self._starts[pos])) + row

    def __getitem__(self, i: int) -> dict[str, Any]:
        pos, row = self.locate(i)
        a = self._arrays(pos)
        return {
            "frames": np.array(a["frames"][row]),
            "cameras": np.array(a["cameras"][row]),
            "index": int(self._shards[pos].get("first_index", self._starts[pos])) + row,
        }

    def read_views(self, i: int, views: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Only the chosen views of scene ``i``: ``(frames [k,H,W,3], cameras [k,5])``.

        Reads just those views from disk (a 300-view maze scene need not be read whole).
        """
        pos, row = self.locate(i)
        a = self._arrays(pos)
        idx = np.asarray(views, dtype=np.int64)
        return np.asarray(a["frames"][row, idx]), np.asarray(a["cameras"][row, idx])

    def cameras(self, i: int) -> np.ndarray:
        """All camera poses ``[V,5]`` of scene ``i``."""
        pos, row = self.locate(i)
        return np.array(self._arrays(pos)["cameras"][row])

    def read_extras(self, i: int) -> dict[str, np.ndarray]:
        """Per-scene extra arrays of scene ``i`` (e.g. ``"map"`` for mazes); empty if none."""
        pos, row = self.locate(i)
        a = self._arrays(pos)
        return {name: np.array(a[extra_role(name)][row]) for name in self.extras}

    def metadata(self, i: int) -> dict[str, Any]:
        """The metadata dict of scene ``i`` (source, seed, index, domain parameters, ...)."""
        pos, row = self.locate(i)
        meta = self._meta.get(pos)
        if meta is None:
            entry = self._shards[pos]["files"]["meta"]
            path = self.root / entry["path"]
            try:
                meta = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
                raise DatasetError(f"{path}: cannot read scene metadata ({err})") from None
            if not isinstance(meta, list) or len(meta) != int(self._shards[pos]["count"]):
                raise DatasetError(f"{path}: metadata does not hold {self._shards[pos]['count']} scene entries")
            self._meta[pos] = meta
        return meta[row]

    @property
    def info(self) -> dict[str, Any]:
        """Summary: source, scenes, views, size, bytes, shards, complete, seed, options, ..."""
        m = self.manifest
        collection = m.get("collection") or {}
        return {
            "path": str(self.root),
            "version": m["version"],
            "source": m["source"],
            "scenes": m["scenes"],
            "scenes_planned": m["scenes_planned"],
            "complete": m["complete"],
            "views": self.views,
            "size": self.size,
            "shards": len(self._shards),
            "shard_size": m.get("shard_size"),
            "bytes": m.get("bytes", 0),
            "seed": collection.get("seed"),
            "options": collection.get("options", {}),
            "extras": self.extras,
            "viewpoint_order": m.get("viewpoint_order", "ports"),
            "shard_spec": collection.get("shard"),
        }

    # ------------------------------------------------------------------ pickling

    def __getstate__(self) -> dict[str, Any]:
        # Memory maps must not travel to DataLoader workers (pickling one copies its data);
        # each process reopens them lazily.
        state = self.__dict__.copy()
        state["_maps"] = OrderedDict()
        state["_meta"] = {}
        return state

    def close(self) -> None:
        """Drop open memory maps (they also close when the dataset is garbage-collected)."""
        self._maps.clear()

    def __repr__(self) -> str:
        return f"SceneDataset({str(self.root)!r}, scenes={len(self)}, views={self.views}, size={self.size})"
