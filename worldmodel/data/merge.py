"""Joining the parts of a sharded collection (``--shard i/n``) into one dataset.

Each part is a complete dataset directory for its work units. :func:`merge_datasets` checks
that the parts come from the same collection arguments, that together they cover every work
unit exactly once, verifies their files, and hard-links (or copies, across file systems) the
shard files into a new directory with one manifest. The result is identical, shard for
shard and checksum for checksum, to an unsharded collection with the same arguments. A killed
merge resumes like a collection (finished shards are skipped).

This module never imports torch.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from worldmodel.data.format import DatasetError, check_file, describe_progress, manifest_path, read_manifest
from worldmodel.data.writer import DatasetWriter


def _link_or_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".tmp-merge-{os.getpid()}-{dst.name}")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:  # other file system, or links not supported
        shutil.copyfile(src, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
    os.replace(tmp, dst)


def merge_datasets(
    parts: Sequence[str | Path], out: str | Path, verify_checksums: bool = True, progress: bool = True
) -> dict[str, Any]:
    """Merge the parts of a sharded collection into ``out``; returns the merged manifest.

    Raises :class:`~worldmodel.data.format.DatasetError` (naming the part or file) when parts
    are incomplete, disagree on the collection arguments, overlap or leave units uncovered.
    """
    from tqdm import tqdm

    if not parts:
        raise ValueError("merge: give at least one dataset part")
    manifests = [(Path(p), read_manifest(p)) for p in parts]
    base_path, base = manifests[0]

    def identity(m: dict[str, Any]) -> dict[str, Any]:
        c = dict(m.get("collection") or {})
        c.pop("shard", None)
        return c

    ref = identity(base)
    if not ref:
        raise DatasetError(
            f"{manifest_path(base_path)}: not a collected dataset (no 'collection' arguments to merge on)"
        )
    owner: dict[int, Path] = {}
    for path, m in manifests:
        if identity(m) != ref:
            raise DatasetError(
                f"{manifest_path(path)}: collected with other arguments than {base_path} "
                f"({identity(m)} vs {ref}); only parts of one `--shard i/n` collection can be merged"
            )
        if not m["complete"]:
            raise DatasetError(
                f"{manifest_path(path)}: part is incomplete ({describe_progress(m)}); "
                "finish it by rerunning its collect command first"
            )
        for s in m["shards"]:
            u = int(s["unit"])
            if u in owner:
                raise DatasetError(f"{manifest_path(path)}: shard unit {u} is also in {owner[u]} (parts overlap)")
            owner[u] = path
    units_total = int(base.get("units_total", len(owner)))
    missing = sorted(set(range(units_total)) - set(owner))
    if missing:
        raise DatasetError(
            f"merge: the parts leave {len(missing)} of {units_total} work units uncovered (first: {missing[:5]}); "
            "a part of the collection is missing"
        )
    keep = ("source", "generator", "views", "size", "shard_size", "units_total", "viewpoint_order")
    header = {k: base[k] for k in keep if k in base}
    header["scenes_planned"] = int(base.get("scenes_total", sum(m["scenes"] for _, m in manifests)))
    header["scenes_total"] = header["scenes_planned"]
    header["units_planned"] = units_total
    header["collection"] = {**ref, "shard": None}
    header["merged_from"] = [str(p) for p, _ in manifests]
    shards = sorted(((s, path) for path, m in manifests for s in m["shards"]), key=lambda t: t[0]["unit"])
    out = Path(out)
    with DatasetWriter(out, header, resume=True) as dw:
        done = dw.done_units
        for shard, path in tqdm(shards, desc="merge", unit="shard", disable=not progress):
            if int(shard["unit"]) in done:
                continue
            for entry in shard["files"].values():
                check_file(path, entry, verify_checksums)
                (out / entry["path"]).parent.mkdir(parents=True, exist_ok=True)
                _link_or_copy(path / entry["path"], out / entry["path"])
            dw.commit({**shard, "extras": base.get("extras", {})})
        return dw.manifest
