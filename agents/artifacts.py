"""Files an agent run leaves behind, and how they are written.

A run directory holds ``config.json`` (resolved config and hyperparameters), ``run.json``
(:mod:`worldmodel.run_metadata`: config, seed, versions, command, git, host, plus the encoder's
checksum), ``evaluations.csv``, ``progress.json``, TensorBoard logs in ``tb/``, the SB3 model
``model.zip`` and, written atomically and last, ``done.json``: a run is finished exactly when
its ``done.json`` exists. Atomic writes come from :mod:`worldmodel.atomic`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from worldmodel.atomic import atomic_write_json, atomic_write_text, file_sha256
from worldmodel.run_metadata import to_jsonable

DONE_FILE = "done.json"
CONFIG_FILE = "config.json"
EVALUATIONS_FILE = "evaluations.csv"
PROGRESS_FILE = "progress.json"
MODEL_FILE = "model.zip"
LOG_FILE = "train.log"
#: Columns of a run's evaluations.csv.
EVAL_COLUMNS: tuple[str, ...] = (
    "timesteps",
    "mean_return",
    "std_return",
    "mean_length",
    "success_rate",
    "episodes",
    "wall_s",
    "returns",
)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Atomic UTF-8 text write (temp file, fsync, rename)."""
    atomic_write_text(path, text)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Atomic JSON write; dataclasses, paths, numpy scalars become plain JSON, other objects ``repr``."""
    atomic_write_json(path, json_safe(obj))


def json_safe(value: Any) -> Any:
    """A JSON-serialisable copy (classes become their dotted names, unknown objects ``repr``)."""
    value = to_jsonable(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def write_csv_atomic(path: str | Path, columns: Iterable[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Atomic CSV write of dict rows with the given columns."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    atomic_write_text(path, buf.getvalue())


def read_json(path: str | Path) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def is_finished(run_dir: str | Path) -> bool:
    """Whether a run directory holds a finished run (its ``done.json`` marker)."""
    return (Path(run_dir) / DONE_FILE).is_file()


def encoder_checksum(checkpoint: str | Path) -> dict[str, str] | None:
    """``{"checkpoint": dir, "sha256": digest of model.safetensors}`` of an encoder checkpoint.

    ``checkpoint`` may be a checkpoint or run directory (the newest checkpoint is used, as
    :func:`worldmodel.load_encoder` does); ``None`` when no ``model.safetensors`` is found.
    """
    from worldmodel.checkpoint import MODEL_FILE as WEIGHTS
    from worldmodel.checkpoint import resolve_checkpoint

    try:
        directory = resolve_checkpoint(checkpoint)
    except FileNotFoundError:
        return None
    weights = directory / WEIGHTS
    if not weights.is_file():
        return None
    return {"checkpoint": str(directory), "sha256": file_sha256(weights)}
