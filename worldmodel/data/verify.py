"""Whole-dataset checks (``wm data verify``): manifest, counts, sizes, headers, checksums.

Unlike opening a :class:`~worldmodel.data.reader.SceneDataset`, which stops at the first
problem, :func:`verify_dataset` checks every file and reports every problem, each naming its
file. An incomplete dataset (a collection or import that has not finished) is reported as
:attr:`VerifyReport.incomplete`, naming the missing units, unless partial datasets are
accepted (``allow_partial=True``, then it is a warning). This module never imports torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worldmodel.data.format import (
    SHARD_DIR,
    DatasetError,
    check_file,
    describe_missing,
    describe_progress,
    extra_role,
    manifest_path,
    read_manifest,
)


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_dataset`."""

    root: str
    """Dataset directory checked."""
    problems: list[str] = field(default_factory=list)
    """One line per bad file (each starts with the file's path)."""
    warnings: list[str] = field(default_factory=list)
    """Things that do not make the dataset invalid (stray files; incompleteness when partial datasets are allowed)."""
    incomplete: str | None = None
    """Why the dataset is incomplete (progress and the missing units), or None; unset when ``allow_partial``."""
    files_checked: int = 0
    """Number of listed files checked."""
    bytes_checked: int = 0
    """Bytes hashed (0 when checksums were skipped)."""

    @property
    def files_ok(self) -> bool:
        """True when every listed file is whole and consistent (the dataset may still be incomplete)."""
        return not self.problems

    @property
    def ok(self) -> bool:
        """True when no problem was found and the dataset is complete (or partial datasets were allowed)."""
        return not self.problems and self.incomplete is None


def verify_dataset(
    root: str | Path, checksums: bool = True, progress: bool = False, allow_partial: bool = False
) -> VerifyReport:
    """Check every listed file of dataset ``root``; never raises for a bad dataset.

    Args:
        root: dataset directory.
        checksums: hash every file and compare with the manifest's sha256 (reads everything).
        progress: show a tqdm bar over shards.
        allow_partial: accept an incomplete dataset (reported as a warning, not in
            :attr:`VerifyReport.incomplete`).
    """
    from tqdm import tqdm

    root = Path(root)
    report = VerifyReport(str(root))
    try:
        manifest = read_manifest(root)
    except DatasetError as err:
        report.problems.append(str(err))
        return report
    if not manifest["complete"]:
        why = (
            f"{manifest_path(root)}: incomplete: {describe_progress(manifest)}; {describe_missing(manifest)} "
            "(rerun the same collect/import command to finish it)"
        )
        if allow_partial:
            report.warnings.append(why)
        else:
            report.incomplete = why
    part = (manifest.get("collection") or {}).get("shard")
    if part and manifest["complete"]:
        report.warnings.append(
            f"{manifest_path(root)}: part {part} of a sharded collection, complete as a part; "
            "join all parts with `wm data merge` before training on it"
        )
    views, size = int(manifest["views"]), int(manifest["size"])
    extras: dict[str, Any] = manifest.get("extras") or {}
    listed: set[str] = set()
    for shard in tqdm(manifest["shards"], desc="verify", unit="shard", disable=not progress):
        n = int(shard["count"])
        need = {"frames": [n, views, size, size, 3], "cameras": [n, views, 5]}
        need.update({extra_role(k): [n, *v["shape"]] for k, v in extras.items()})
        for role, shape in need.items():
            entry = shard["files"].get(role)
            if entry is None:
                report.problems.append(f"{manifest_path(root)}: shard unit {shard['unit']} lists no {role!r} file")
            elif entry.get("shape") != shape:
                report.problems.append(
                    f"{root / entry['path']}: manifest mismatch: entry shape {entry.get('shape')}, counts need {shape}"
                )
        for role, entry in shard["files"].items():
            listed.add(entry["path"])
            report.files_checked += 1
            try:
                check_file(root, entry, checksums)
                if checksums:
                    report.bytes_checked += int(entry["bytes"])
                if role == "meta":
                    _check_meta(root / entry["path"], n)
            except DatasetError as err:
                report.problems.append(str(err))
    shard_dir = root / SHARD_DIR
    if shard_dir.is_dir():
        stray = sorted(f"{SHARD_DIR}/{p.name}" for p in shard_dir.iterdir() if f"{SHARD_DIR}/{p.name}" not in listed)
        for rel in stray:
            report.warnings.append(
                f"{root / rel}: not listed in the manifest (leftover of an interrupted run; ignored)"
            )
    return report


def _check_meta(path: Path, count: int) -> None:
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: scene metadata is not valid JSON ({err})") from None
    if not isinstance(meta, list) or len(meta) != count:
        raise DatasetError(f"{path}: scene metadata must list {count} scenes")
