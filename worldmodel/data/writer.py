"""Writing datasets: streamed shard files, atomic shard commits, a locked manifest.

* :class:`ShardWriter` writes one shard (one work unit) to temporary files and, on
  :meth:`ShardWriter.finish`, fsyncs and renames them to their final names and returns the
  shard's manifest entry (sizes and sha256 checksums).
* :class:`DatasetWriter` owns a dataset directory while it is being written: it takes an
  exclusive lock, creates or re-opens the manifest (refusing to resume a dataset made with
  other arguments), re-checks the committed shards on resume (a missing, resized or
  corrupt shard is dropped from the manifest so the caller re-generates it), removes
  leftovers of killed runs, and commits finished shards to the manifest atomically. A shard
  counts only once it is in the manifest.
* :func:`write_scenes` writes a whole dataset from an iterable of records in this process
  (tests, synthetic data, small conversions).

This module never imports torch.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from envs.scenes import SceneRecord
from worldmodel.data.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    LOCK_NAME,
    MANIFEST_NAME,
    SHARD_DIR,
    DatasetError,
    atomic_write_bytes,
    check_file,
    check_level,
    extra_role,
    file_entry,
    fsync_dir,
    manifest_path,
    npy_header,
    read_manifest,
    shard_file,
    versions,
    write_manifest,
)


def to_jsonable(obj: Any) -> Any:
    """``json.dumps`` default: numpy scalars/arrays and tuples become plain JSON values."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"metadata value of type {type(obj).__name__} is not JSON-serialisable: {obj!r}")


class NpyStreamWriter:
    """Append equally-shaped items to a ``.npy`` file whose length is known only at the end.

    The header is written with a fixed length (``NPY_HEADER_BYTES``) and rewritten in place by
    :meth:`close` with the final count; numpy's own writers need the full array (or the final
    shape) up front, which would force a whole shard to be held in memory.
    """

    def __init__(self, path: Path, item_shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path = Path(path)
        self.item_shape = tuple(int(s) for s in item_shape)
        self.dtype = np.dtype(dtype)
        self.count = 0
        self._fh = open(self.path, "wb")
        self._fh.write(npy_header((0, *self.item_shape), self.dtype))

    def append(self, item: np.ndarray, what: str = "item") -> None:
        """Append one item; its shape and dtype must match the first."""
        item = np.asarray(item)
        if item.shape != self.item_shape or item.dtype != self.dtype:
            raise ValueError(
                f"{what}: expected {self.dtype}{list(self.item_shape)}, got {item.dtype}{list(item.shape)} "
                "(every scene of a dataset must have the same views, size and extra shapes)"
            )
        self._fh.write(np.ascontiguousarray(item).tobytes())
        self.count += 1

    def close(self) -> tuple[int, ...]:
        """Write the final header, flush and fsync; returns the array's shape."""
        shape = (self.count, *self.item_shape)
        self._fh.seek(0)
        self._fh.write(npy_header(shape, self.dtype))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        return shape

    def discard(self) -> None:
        """Close and delete the (unfinished) file."""
        if not self._fh.closed:
            self._fh.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


class ShardWriter:
    """Write the scenes of one work unit to temporary files, then commit them by rename.

    Args:
        root: dataset directory.
        unit: work-unit number (names the files ``shards/shard-<unit>.*``).
        first_index: global index of the shard's first scene.
    """

    def __init__(self, root: str | Path, unit: int, first_index: int) -> None:
        self.root = Path(root)
        self.unit = int(unit)
        self.first_index = int(first_index)
        (self.root / SHARD_DIR).mkdir(parents=True, exist_ok=True)
        # Temporary names start with a dot and never match a final name, so a torn file can
        # never be mistaken for a finished one; DatasetWriter removes them on resume.
        self._tag = f".tmp-{self.unit:06d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._arrays: dict[str, NpyStreamWriter] = {}
        self._meta: list[dict[str, Any]] = []
        self._extras: tuple[str, ...] | None = None

    def _tmp(self, role: str) -> Path:
        return self.root / SHARD_DIR / f"{self._tag}.{role}"

    def _put(self, role: str, array: np.ndarray, what: str) -> None:
        writer = self._arrays.get(role)
        if writer is None:
            writer = self._arrays[role] = NpyStreamWriter(self._tmp(role), array.shape, array.dtype)
        writer.append(array, what)

    @property
    def count(self) -> int:
        """Scenes added so far."""
        return len(self._meta)

    def add(self, record: SceneRecord) -> None:
        """Append one scene."""
        index = self.first_index + self.count
        extras = tuple(sorted(record.extras))
        if self._extras is None:
            self._extras = extras
        elif extras != self._extras:
            raise ValueError(
                f"scene {index}: extras {list(extras)} differ from the shard's first scene {list(self._extras)}"
            )
        self._put("frames", record.frames, f"scene {index} frames")
        self._put("cameras", record.cameras, f"scene {index} cameras")
        for name in extras:
            self._put(extra_role(name), np.asarray(record.extras[name]), f"scene {index} extra {name!r}")
        # Round-trip through JSON now so a bad value fails at its scene, not at commit.
        self._meta.append(json.loads(json.dumps(record.metadata, default=to_jsonable)))

    def finish(self) -> dict[str, Any]:
        """Finalise, fsync and rename the files; returns the shard's manifest entry."""
        if not self._meta:
            raise ValueError(f"shard {self.unit}: no scene was added")
        shapes = {role: w.close() for role, w in self._arrays.items()}
        meta_tmp = self._tmp("meta")
        atomic_write_bytes(meta_tmp, json.dumps(self._meta, default=to_jsonable).encode())
        files: dict[str, Any] = {}
        renames = [(self._tmp(role), role) for role in self._arrays] + [(meta_tmp, "meta")]
        for tmp, role in renames:
            rel = shard_file(self.unit, role)
            os.replace(tmp, self.root / rel)
        fsync_dir(self.root / SHARD_DIR)
        for role in self._arrays:
            files[role] = file_entry(
                self.root, shard_file(self.unit, role), shapes[role], str(self._arrays[role].dtype)
            )
        files["meta"] = file_entry(self.root, shard_file(self.unit, "meta"))
        extras = {
            name: {"shape": list(shapes[extra_role(name)][1:]), "dtype": str(self._arrays[extra_role(name)].dtype)}
            for name in self._extras or ()
        }
        return {
            "unit": self.unit,
            "first_index": self.first_index,
            "count": self.count,
            "files": files,
            "extras": extras,
        }

    def abort(self) -> None:
        """Delete the temporary files (after an error)."""
        for w in self._arrays.values():
            w.discard()
        try:
            self._tmp("meta").unlink()
        except FileNotFoundError:
            pass


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class DatasetWriter:
    """Exclusive, resumable writer of one dataset directory.

    Args:
        root: dataset directory (created if missing).
        header: manifest fields fixed at creation (``source``, ``views``, ``size``,
            ``scenes_planned``, ``shard_size``, ``collection`` (the arguments that define the
            content), ...).
        resume: allow re-opening an existing manifest whose ``collection`` equals
            ``header["collection"]``; otherwise an existing dataset is an error.
        recheck: how the committed shards of a resumed dataset are checked (a level of
            ``worldmodel.data.format.CHECK_LEVELS``: ``"size"``, ``"sample"`` (default) or
            ``"full"`` sha256). A shard with a missing or damaged file is removed from the
            manifest (its files deleted) and listed in :attr:`dropped`, so the caller's
            pending work includes it again: content is deterministic per unit, so a
            re-generated shard is byte-identical to the lost one.
    """

    def __init__(self, root: str | Path, header: dict[str, Any], resume: bool = True, recheck: str = "sample") -> None:
        self.root = Path(root)
        self.recheck = check_level(recheck)
        self.dropped: list[tuple[int, str]] = []
        """``(unit, reason)`` of every committed shard the resume found damaged and dropped."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_fh = open(self.root / LOCK_NAME, "a+")
        try:
            fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_fh.close()
            raise DatasetError(
                f"{self.root}: another process is writing this dataset (lock {LOCK_NAME} is held)"
            ) from None
        try:
            self.manifest = self._open(header, resume)
            self._recheck_committed()
            self._clean_leftovers()
        except BaseException:
            self.close()
            raise

    def _open(self, header: dict[str, Any], resume: bool) -> dict[str, Any]:
        if manifest_path(self.root).exists():
            manifest = read_manifest(self.root)
            if not resume:
                raise DatasetError(f"{manifest_path(self.root)}: a dataset already exists in {self.root}")
            old, new = manifest.get("collection"), header.get("collection")
            if old != new and not manifest["shards"]:
                return self._create(header)  # nothing committed yet: start over with the new arguments
            if old != new:
                diff = _describe_difference(old or {}, new or {})
                raise DatasetError(
                    f"{manifest_path(self.root)}: refusing to resume: this dataset was collected with other "
                    f"arguments ({diff}); use the original command or another --out directory"
                )
            return manifest
        unexpected = [p.name for p in self.root.iterdir() if p.name not in (SHARD_DIR, LOCK_NAME)]
        if unexpected:
            raise DatasetError(
                f"{self.root}: directory is not empty and has no {MANIFEST_NAME} (found {sorted(unexpected)[:5]}); "
                "choose an empty or new --out directory"
            )
        return self._create(header)

    def _create(self, header: dict[str, Any]) -> dict[str, Any]:
        manifest = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            **header,
            "scenes": 0,
            "complete": False,
            "bytes": 0,
            "extras": {},
            "created": _now(),
            "versions": versions(),
            "shards": [],
        }
        write_manifest(self.root, manifest)
        return manifest

    def _recheck_committed(self) -> None:
        """Drop committed shards whose files are missing or differ from the manifest (see ``recheck``)."""
        keep: list[dict[str, Any]] = []
        for shard in self.manifest["shards"]:
            try:
                for entry in shard["files"].values():
                    check_file(self.root, entry, self.recheck)
            except DatasetError as err:
                self.dropped.append((int(shard["unit"]), str(err)))
            else:
                keep.append(shard)
        if self.dropped:  # the manifest stops listing them first, then _clean_leftovers deletes their files
            self.manifest["shards"] = keep
            self.manifest["updated"] = _now()
            write_manifest(self.root, self.manifest)

    def _clean_leftovers(self) -> None:
        """Remove files of shards that never reached the manifest (torn or uncommitted)."""
        listed = {f["path"] for s in self.manifest["shards"] for f in s["files"].values()}
        shard_dir = self.root / SHARD_DIR
        if not shard_dir.is_dir():
            return
        for p in shard_dir.iterdir():
            if f"{SHARD_DIR}/{p.name}" not in listed and p.is_file():
                p.unlink()

    @property
    def done_units(self) -> set[int]:
        """Work units already committed."""
        return {int(s["unit"]) for s in self.manifest["shards"]}

    def commit(self, entry: dict[str, Any]) -> None:
        """Add a finished shard to the manifest (atomically rewritten)."""
        if entry["unit"] in self.done_units:
            raise DatasetError(f"{manifest_path(self.root)}: shard unit {entry['unit']} is already committed")
        frame_shape = entry["files"]["frames"]["shape"][1:]
        expected = [self.manifest["views"], self.manifest["size"], self.manifest["size"], 3]
        if frame_shape != expected:
            raise DatasetError(
                f"{self.root / entry['files']['frames']['path']}: frames are {frame_shape} per scene but the "
                f"dataset is {expected} (views, size, size, 3)"
            )
        extras = entry.pop("extras", {})
        if self.manifest["shards"] and self.manifest.get("extras", {}) != extras:
            raise DatasetError(
                f"{self.root / shard_file(entry['unit'], 'frames')}: extras {extras} differ from the dataset's "
                f"{self.manifest.get('extras')}"
            )
        self.manifest["extras"] = extras
        self.manifest["shards"].append(entry)
        self.manifest["updated"] = _now()
        write_manifest(self.root, self.manifest)

    def close(self) -> None:
        """Release the lock."""
        if not self._lock_fh.closed:
            fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_UN)
            self._lock_fh.close()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _describe_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(set(old) | set(new))
    parts = [f"{k}: {old.get(k)!r} then, {new.get(k)!r} now" for k in keys if old.get(k) != new.get(k)]
    return "; ".join(parts) or "unknown difference"


def write_scenes(
    root: str | Path,
    records: Iterable[SceneRecord],
    shard_size: int,
    source: str = "synthetic",
    scenes: int | None = None,
    collection: dict[str, Any] | None = None,
    **header: Any,
) -> Path:
    """Write ``records`` (in order, global indices 0..) as a complete dataset in ``root``.

    ``scenes`` is the number of records (needed up front for the manifest; a list's length is
    used when omitted). Views and size are taken from the first record.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    if scenes is None:
        records = list(records)
        scenes = len(records)
    iterator = iter(records)
    first = next(iterator, None)
    if first is None:
        raise ValueError("write_scenes: no records to write")
    views, size = int(first.frames.shape[0]), int(first.frames.shape[1])
    base = {
        "source": source,
        "views": views,
        "size": size,
        "scenes_planned": int(scenes),
        "units_planned": -(-int(scenes) // int(shard_size)),
        "shard_size": int(shard_size),
        "collection": collection if collection is not None else {"source": source, "scenes": int(scenes)},
        **header,
    }
    writer = DatasetWriter(root, base, resume=False)
    try:
        shard: ShardWriter | None = None
        try:
            for i, rec in enumerate(_chain(first, iterator)):
                if shard is None:
                    shard = ShardWriter(root, i // shard_size, i)
                shard.add(rec)
                if shard.count == shard_size:
                    writer.commit(shard.finish())
                    shard = None
            if shard is not None:
                writer.commit(shard.finish())
        except BaseException:
            if shard is not None:
                shard.abort()
            raise
    finally:
        writer.close()
    return Path(root)


def _chain(first: SceneRecord, rest: Iterable[SceneRecord]) -> Iterable[SceneRecord]:
    yield first
    yield from rest
