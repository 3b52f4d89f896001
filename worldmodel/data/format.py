"""The on-disk dataset format: manifest schema, file naming, atomic writes and checks.

A dataset is a directory::

    DIR/manifest.json                      format name, version, counts, per-shard file entries
    DIR/shards/shard-000042.frames.npy     uint8   [n, V, H, W, 3]
    DIR/shards/shard-000042.cameras.npy    float32 [n, V, 5]  (x, y, z, yaw, pitch)
    DIR/shards/shard-000042.meta.json      list of n per-scene metadata dicts
    DIR/shards/shard-000042.extra-map.npy  optional per-scene arrays stacked [n, ...]

A shard is valid only once its files have been renamed to their final names *and* it is
listed in ``manifest.json`` (with byte sizes, sha256 checksums and a *sampled* hash of a few fixed-position
blocks, see :func:`sample_digest`). Everything else in ``shards/`` is an unfinished leftover.
See ``docs/dataset_format.md`` for the full spec.

This module never imports torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

# Crash-safe writes and hashing are shared with the rest of the toolkit (re-exported here).
from worldmodel.atomic import atomic_write_bytes, fsync_dir
from worldmodel.atomic import file_sha256 as sha256_file

__all__ = ["atomic_write_bytes", "fsync_dir", "sha256_file", "DatasetError"]

FORMAT_NAME = "wm-multiview-scenes"
"""Value of the manifest's ``format`` field."""
FORMAT_VERSION = 1
"""Version written by this code; readers refuse any other (see ``SUPPORTED_VERSIONS``)."""
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)
MANIFEST_NAME = "manifest.json"
SHARD_DIR = "shards"
LOCK_NAME = ".lock"
#: Keys every manifest must carry.
REQUIRED_KEYS: tuple[str, ...] = (
    "format",
    "version",
    "source",
    "views",
    "size",
    "scenes",
    "scenes_planned",
    "units_planned",
    "complete",
    "shards",
)
#: Shard file roles: frames, cameras, meta, and ``extra-<name>`` for per-scene extra arrays.
CORE_ROLES: tuple[str, ...] = ("frames", "cameras", "meta")
#: Fixed length of the .npy headers we write (a multiple of numpy's 64-byte alignment), so a
#: header can be rewritten in place once the scene count is known (see writer.NpyStreamWriter).
NPY_HEADER_BYTES = 128
#: Blocks hashed by the cheap per-file check (:func:`sample_digest`): the first, the last and
#: evenly spaced ones between (fixed positions, so any reader can recompute them).
SAMPLE_BLOCKS = 8
#: Bytes per sampled block (one page): a file up to ``SAMPLE_BLOCKS * SAMPLE_BLOCK_BYTES`` is hashed whole.
SAMPLE_BLOCK_BYTES = 4096
#: How thoroughly a committed file is checked: ``"size"`` (existence, byte size, ``.npy``
#: header), ``"sample"`` (also the sampled-block hash, when the manifest records one) or
#: ``"full"`` (also the sha256 of the whole file).
CHECK_LEVELS: tuple[str, ...] = ("size", "sample", "full")
_EXTRA_NAME = re.compile(r"^[A-Za-z0-9_]+$")


class DatasetError(ValueError):
    """A dataset directory or one of its files is missing, malformed, truncated or corrupt.

    The message always names the offending file.
    """


# ----------------------------------------------------------------------------- naming


def shard_stem(unit: int) -> str:
    """Base name of the files of work unit ``unit`` (``shard-000042``)."""
    return f"shard-{int(unit):06d}"


def shard_file(unit: int, role: str) -> str:
    """Path, relative to the dataset root, of one file of a shard."""
    ext = "json" if role == "meta" else "npy"
    return f"{SHARD_DIR}/{shard_stem(unit)}.{role}.{ext}"


def extra_role(name: str) -> str:
    """File role of the per-scene extra array ``name`` (must be ``[A-Za-z0-9_]+``)."""
    if not _EXTRA_NAME.match(name):
        raise ValueError(f"extra array name {name!r} must match [A-Za-z0-9_]+ (it becomes part of a file name)")
    return f"extra-{name}"


# ----------------------------------------------------------------------------- npy headers


def npy_header(shape: Iterable[int], dtype: np.dtype) -> bytes:
    """A version-1.0 ``.npy`` header of exactly ``NPY_HEADER_BYTES`` bytes (C order)."""
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in shape)
    body = f"{{'descr': {np.lib.format.dtype_to_descr(dtype)!r}, 'fortran_order': False, 'shape': {shape!r}, }}"
    prefix = b"\x93NUMPY\x01\x00"
    room = NPY_HEADER_BYTES - len(prefix) - 2 - 1  # 2: header-length field, 1: final newline
    if len(body) > room:
        raise ValueError(f"shape {shape} too long for a {NPY_HEADER_BYTES}-byte npy header")
    text = body.ljust(room) + "\n"
    return prefix + (len(text)).to_bytes(2, "little") + text.encode("latin1")


def read_npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, data_offset)`` of a ``.npy`` file; ``DatasetError`` naming it if unreadable."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise ValueError(f"unsupported npy version {version}")
            offset = fh.tell()
    except FileNotFoundError:
        raise DatasetError(f"{path}: shard file is missing") from None
    except (ValueError, OSError, SyntaxError) as err:
        raise DatasetError(f"{path}: not a readable .npy file ({err})") from None
    if fortran:
        raise DatasetError(f"{path}: Fortran-ordered arrays are not part of the format")
    return tuple(int(s) for s in shape), np.dtype(dtype), offset


# ----------------------------------------------------------------------------- manifest


def manifest_path(root: Path) -> Path:
    """Where the manifest of dataset ``root`` lives."""
    return Path(root) / MANIFEST_NAME


def read_manifest(root: str | Path) -> dict[str, Any]:
    """Load and validate the manifest of ``root`` (format, version, required keys, counts).

    Raises :class:`DatasetError` naming the manifest file for anything wrong.
    """
    root = Path(root)
    path = manifest_path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset directory does not exist")
    if not path.is_file():
        raise DatasetError(
            f"{path}: manifest is missing; {root} is not a dataset directory (or its collection never "
            "finished a shard: rerun the same `wm data collect` command)"
        )
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: manifest is not valid JSON ({err})") from None
    if not isinstance(manifest, dict):
        raise DatasetError(f"{path}: manifest must be a JSON object")
    if manifest.get("format") != FORMAT_NAME:
        raise DatasetError(f"{path}: format is {manifest.get('format')!r}, expected {FORMAT_NAME!r}")
    version = manifest.get("version")
    if version not in SUPPORTED_VERSIONS:
        raise DatasetError(
            f"{path}: unknown dataset format version {version!r}; this reader supports "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))} (upgrade worldmodel or re-create the dataset)"
        )
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise DatasetError(f"{path}: manifest lacks required keys {missing}")
    shards = manifest["shards"]
    if not isinstance(shards, list):
        raise DatasetError(f"{path}: 'shards' must be a list")
    units = [s.get("unit") for s in shards]
    if len(set(units)) != len(units):
        raise DatasetError(f"{path}: manifest lists a shard unit twice")
    total = sum(int(s.get("count", -1)) for s in shards)
    if total != manifest["scenes"]:
        raise DatasetError(
            f"{path}: manifest mismatch: shards hold {total} scenes but 'scenes' says {manifest['scenes']}"
        )
    if bool(manifest["complete"]) != (len(shards) == manifest["units_planned"]):
        raise DatasetError(
            f"{path}: manifest mismatch: {len(shards)} of {manifest['units_planned']} shards listed but "
            f"'complete' is {manifest['complete']}"
        )
    if manifest["complete"] and manifest["scenes_planned"] != total:
        raise DatasetError(
            f"{path}: manifest mismatch: complete with {total} scenes but {manifest['scenes_planned']} planned"
        )
    for s in shards:
        for role in CORE_ROLES:
            if role not in s.get("files", {}):
                raise DatasetError(f"{path}: shard unit {s.get('unit')} has no {role!r} file entry")
    return manifest


def write_manifest(root: str | Path, manifest: dict[str, Any]) -> None:
    """Atomically (re)write the manifest, recomputing ``scenes``, ``bytes`` and ``complete``.

    A dataset is complete when all ``units_planned`` shards are listed. Datasets with
    variable-size shards (``shard_size`` null: imports, one shard per input file) number their
    scenes consecutively in unit order and learn ``scenes_planned`` when complete.
    """
    shards = sorted(manifest["shards"], key=lambda s: s["unit"])
    manifest["shards"] = shards
    manifest["scenes"] = sum(s["count"] for s in shards)
    manifest["bytes"] = sum(f["bytes"] for s in shards for f in s["files"].values())
    manifest["complete"] = len(shards) == manifest["units_planned"]
    if manifest.get("shard_size") is None:
        first = 0
        for s in shards:
            s["first_index"] = first
            first += s["count"]
        if manifest["complete"]:
            manifest["scenes_planned"] = manifest["scenes"]
    atomic_write_bytes(manifest_path(Path(root)), dumps_manifest(manifest).encode())


def dumps_manifest(manifest: dict[str, Any]) -> str:
    """Manifest JSON: header fields indented, one compact line per shard (diffable, small)."""
    head = {k: v for k, v in manifest.items() if k != "shards"}
    text = json.dumps(head, indent=1)[:-2]  # drop the closing "\n}"
    lines = [json.dumps(s, separators=(",", ":")) for s in manifest["shards"]]
    body = ",\n  ".join(lines)
    return f'{text},\n "shards": [\n  {body}\n ]\n}}\n' if lines else f'{text},\n "shards": []\n}}\n'


def describe_progress(manifest: dict[str, Any]) -> str:
    """``"12 of 40 scenes, 3 of 10 shards"`` for messages about (in)complete datasets."""
    planned = manifest.get("scenes_planned")
    scenes = (
        f"{manifest['scenes']} of {planned} scenes" if planned is not None else f"{manifest['scenes']} scenes so far"
    )
    return f"{scenes}, {len(manifest['shards'])} of {manifest['units_planned']} shards"


def missing_units(manifest: dict[str, Any]) -> list[int]:
    """Work units a (validated) manifest plans but does not list, in order.

    The planned units are ``0 .. units_total-1`` restricted to ``u % n == i`` for a ``--shard
    i/n`` part, else ``0 .. units_planned-1`` (collections and imports number units from 0).
    """
    listed = {int(s["unit"]) for s in manifest["shards"]}
    part = (manifest.get("collection") or {}).get("shard")
    if part:
        i, n = (int(x) for x in str(part).split("/"))
        planned = [u for u in range(int(manifest.get("units_total", 0))) if u % n == i]
    else:
        planned = list(range(int(manifest["units_planned"])))
    return [u for u in planned if u not in listed]


def _ranges(values: list[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2, 5, 7-8"``."""
    out: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        out.append(str(values[i]) if i == j else f"{values[i]}-{values[j]}")
        i = j + 1
    return ", ".join(out)


def describe_missing(manifest: dict[str, Any], limit: int = 5) -> str:
    """What an incomplete dataset lacks: its missing units and, where known, their scenes or input files."""
    units = missing_units(manifest)
    if not units:
        return "no planned unit is missing"
    text = f"missing {len(units)} shard(s): units {_ranges(units)}"
    shard_size = manifest.get("shard_size")
    total = manifest.get("scenes_total", manifest.get("scenes_planned"))
    files = (manifest.get("collection") or {}).get("files")
    scenes: list[tuple[int, int]] = []
    if shard_size and total is not None:
        bounds = ((u * shard_size, min((u + 1) * shard_size, int(total)) - 1) for u in units)
        scenes = [(a, b) for a, b in bounds if a <= b]
    if scenes:
        shown = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in scenes[:limit])
        text += f" (scenes {shown}{', ...' if len(scenes) > limit else ''})"
    elif isinstance(files, list):
        names = [str(files[u]) for u in units if u < len(files)]
        text += f" (input files {', '.join(names[:limit])}{', ...' if len(names) > limit else ''})"
    return text


def sample_offsets(size: int, blocks: int = SAMPLE_BLOCKS, block_bytes: int = SAMPLE_BLOCK_BYTES) -> list[int]:
    """Start offsets of the blocks :func:`sample_digest` hashes in a file of ``size`` bytes.

    ``[0]`` (the whole file as one block) when the file is at most ``blocks * block_bytes``
    long; otherwise ``blocks`` offsets from 0 to ``size - block_bytes``, evenly spaced.
    """
    if blocks < 2 or block_bytes < 1:
        raise ValueError(f"sampled hash needs blocks >= 2 and block_bytes >= 1, got {blocks} and {block_bytes}")
    if size <= blocks * block_bytes:
        return [0]
    return [k * (size - block_bytes) // (blocks - 1) for k in range(blocks)]


def sample_digest(path: str | Path, blocks: int = SAMPLE_BLOCKS, block_bytes: int = SAMPLE_BLOCK_BYTES) -> str:
    """sha256 of a few fixed-position blocks of a file (the whole file when it is small).

    The digest covers the file's size and the bytes of each block from :func:`sample_offsets`
    (header and tail included), so it is cheap to recompute at every open (``blocks`` reads
    of ``block_bytes``) and catches truncation, headers, swapped or zero-filled files, but a
    flipped byte only when it lies in a sampled block; the full sha256 catches everything.
    """
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256(size.to_bytes(8, "little"))
    with open(path, "rb") as fh:
        offsets = sample_offsets(size, blocks, block_bytes)
        for offset in offsets:
            fh.seek(offset)
            h.update(fh.read(size if len(offsets) == 1 else block_bytes))
    return h.hexdigest()


def file_entry(root: Path, rel: str, shape: tuple[int, ...] | None = None, dtype: str | None = None) -> dict[str, Any]:
    """Manifest entry of a finished file: path, bytes, sha256, the sampled hash, and shape/dtype for arrays."""
    full = Path(root) / rel
    entry: dict[str, Any] = {"path": rel, "bytes": full.stat().st_size, "sha256": sha256_file(full)}
    entry["sample"] = {"blocks": SAMPLE_BLOCKS, "block_bytes": SAMPLE_BLOCK_BYTES, "sha256": sample_digest(full)}
    if shape is not None:
        entry["shape"] = list(shape)
        entry["dtype"] = str(np.dtype(dtype))
    return entry


def check_level(level: str) -> str:
    """``level`` if it is one of :data:`CHECK_LEVELS`, else a ``ValueError`` listing them."""
    if level not in CHECK_LEVELS:
        raise ValueError(f"unknown check level {level!r}; valid values: {', '.join(CHECK_LEVELS)}")
    return level


def check_file(root: Path, entry: dict[str, Any], checksum: bool | str) -> None:
    """Check one listed file: exists, size, npy header (shape/dtype), then sampled or full hash.

    ``checksum`` is a level of :data:`CHECK_LEVELS`, or a bool (``True``: ``"full"``, ``False``:
    ``"size"``). The sampled hash is skipped for entries written before it existed (no
    ``"sample"`` key). Raises :class:`DatasetError` naming the file and what differs.
    """
    level = ("full" if checksum else "size") if isinstance(checksum, bool) else check_level(checksum)
    path = Path(root) / entry["path"]
    if not path.is_file():
        raise DatasetError(f"{path}: shard file listed in the manifest is missing")
    size = path.stat().st_size
    if size != entry["bytes"]:
        kind = "truncated" if size < entry["bytes"] else "larger than recorded"
        raise DatasetError(f"{path}: shard file is {kind} ({size} bytes, manifest says {entry['bytes']})")
    if "shape" in entry:
        shape, dtype, offset = read_npy_header(path)
        if list(shape) != list(entry["shape"]) or str(dtype) != entry["dtype"]:
            raise DatasetError(
                f"{path}: array header {dtype}{list(shape)} does not match the manifest "
                f"({entry['dtype']}{entry['shape']})"
            )
        expected = offset + int(np.prod(shape)) * dtype.itemsize
        if size != expected:
            raise DatasetError(f"{path}: shard file is truncated ({size} bytes, its header needs {expected})")
    sample = entry.get("sample")
    if level == "sample" and isinstance(sample, dict):
        got = sample_digest(path, int(sample["blocks"]), int(sample["block_bytes"]))
        if got != sample["sha256"]:
            n = len(sample_offsets(size, int(sample["blocks"]), int(sample["block_bytes"])))
            blocks = f"{n} sampled blocks of {sample['block_bytes']} bytes differ"
            what = "the whole (small) file differs" if n == 1 else blocks
            raise DatasetError(
                f"{path}: checksum failure: {what} from the manifest's sample hash (the file is corrupt; "
                "`wm data verify` checks every byte)"
            )
    if level == "full" and sha256_file(path) != entry["sha256"]:
        raise DatasetError(f"{path}: checksum failure (sha256 differs from the manifest): the file is corrupt")


def versions() -> dict[str, str]:
    """Software that wrote a dataset (rendered pixels can differ between OpenGL backends and
    MuJoCo versions, so both are recorded)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "numpy": np.__version__, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "")}
    for dist in ("worldmodel-toolkit", "mujoco", "pillow"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out
