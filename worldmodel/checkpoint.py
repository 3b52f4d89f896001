"""Checkpoints as safetensors + JSON: written atomically, read without unpickling.

A *checkpoint* is a directory::

    step_00001000/
        config.json              what the checkpoint is: learner, model config, step, file digests, ...
        model.safetensors        the learner's ``state_dict`` (weights only)
        train_state.safetensors  optional: optimizer tensors and RNG states (uint8 tensors)
        train_state.json         optional: step counters, optimizer structure and scalars

A training *run directory* keeps its checkpoints under ``checkpoints/step_XXXXXXXX``; every
function that takes a checkpoint path also accepts a run directory (or its ``checkpoints``
folder) and then uses the newest complete checkpoint.

Atomicity: a checkpoint is written into a temporary directory beside its final name, every file
is fsynced, and the directory is renamed into place (``os.replace`` of a directory is atomic on
POSIX), so a kill at any moment leaves either the old set of checkpoints or the new one. Every
file's size and SHA-256 are recorded in ``config.json`` so that truncated or corrupted files are
reported clearly instead of loading garbage.

Nested Python state (an optimizer ``state_dict``) is split by :func:`pack_state` into flat tensors
(for safetensors) and a JSON structure that refers to them; :func:`unpack_state` inverts it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from worldmodel.atomic import atomic_write_json, file_sha256, fsync_dir, fsync_file

#: Value of ``config.json["format"]`` in every checkpoint written here.
CHECKPOINT_FORMAT = "worldmodel-checkpoint"
#: Version of the layout; bumped on incompatible changes.
CHECKPOINT_VERSION = 1

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TRAIN_TENSORS_FILE = "train_state.safetensors"
TRAIN_JSON_FILE = "train_state.json"
CHECKPOINTS_DIR = "checkpoints"

_STEP_DIR = re.compile(r"^step_(\d{8,})$")


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupted or of an unknown format."""


# --------------------------------------------------------------------------------------------
# nested state <-> flat tensors + JSON


def pack_state(obj: Any, prefix: str = "") -> tuple[dict[str, torch.Tensor], Any]:
    """Split nested state into ``(tensors, structure)``.

    ``tensors`` maps generated names to tensors; ``structure`` is JSON-serialisable and holds
    every non-tensor value, with ``{"__tensor__": name}`` where a tensor was. Dicts with
    non-string keys and tuples are tagged so that :func:`unpack_state` restores them exactly.
    """
    tensors: dict[str, torch.Tensor] = {}

    def walk(x: Any, path: str) -> Any:
        if isinstance(x, torch.Tensor):
            tensors[path] = x.detach()
            return {"__tensor__": path}
        if isinstance(x, Mapping):
            if all(isinstance(k, str) for k in x):
                return {"__dict__": {k: walk(v, f"{path}.{k}" if path else k) for k, v in x.items()}}
            items = []
            for k, v in x.items():
                if not isinstance(k, (int, str, float, bool)) and k is not None:
                    raise TypeError(f"cannot serialise dict key {k!r} of type {type(k).__name__}")
                items.append([k, walk(v, f"{path}.{k}" if path else str(k))])
            return {"__items__": items}
        if isinstance(x, tuple):
            return {"__tuple__": [walk(v, f"{path}.{i}") for i, v in enumerate(x)]}
        if isinstance(x, list):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(x)]
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise TypeError(f"cannot serialise {type(x).__name__} at {path or '<root>'} into a checkpoint")

    structure = walk(obj, prefix)
    return tensors, structure


def unpack_state(structure: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Inverse of :func:`pack_state`."""

    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            if "__tensor__" in x:
                name = x["__tensor__"]
                if name not in tensors:
                    raise CheckpointError(f"checkpoint state refers to tensor {name!r} that is missing")
                return tensors[name]
            if "__dict__" in x:
                return {k: walk(v) for k, v in x["__dict__"].items()}
            if "__items__" in x:
                return {k: walk(v) for k, v in x["__items__"]}
            if "__tuple__" in x:
                return tuple(walk(v) for v in x["__tuple__"])
            raise CheckpointError(f"unknown entry in checkpoint state: keys {sorted(x)}")
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x

    return walk(structure)


# --------------------------------------------------------------------------------------------
# safetensors I/O with clear errors


def _save_tensors(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    # safetensors wants contiguous CPU tensors that share no memory: clone to be safe.
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    save_file(flat, str(path))
    fsync_file(path)


def load_tensors(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a safetensors file; raises :class:`CheckpointError` if it is truncated or corrupted."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {path} does not exist")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(
            f"{path}: cannot read safetensors file ({path.stat().st_size} bytes): it is truncated or corrupted ({err})"
        ) from err


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {path} does not exist")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON, the file is truncated or corrupted ({err})") from err


def _verify(directory: Path, config: Mapping[str, Any], name: str) -> None:
    """Check a file's size and digest against those recorded in ``config.json``."""
    record = config.get("files", {}).get(name)
    path = directory / name
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {directory} is missing {name}")
    if record is None:
        return
    size = path.stat().st_size
    if size != record["bytes"]:
        raise CheckpointError(
            f"{path}: size {size} bytes differs from the {record['bytes']} recorded in {CONFIG_FILE}: "
            "the file is truncated or was replaced"
        )
    digest = file_sha256(path)
    if digest != record["sha256"]:
        raise CheckpointError(
            f"{path}: SHA-256 {digest[:12]}... differs from the one recorded in {CONFIG_FILE}: the file is corrupted"
        )


# --------------------------------------------------------------------------------------------
# locating checkpoints


def step_dir_name(step: int) -> str:
    """Directory name of the checkpoint at ``step``."""
    return f"step_{int(step):08d}"


def _complete(p: Path) -> bool:
    return p.is_dir() and (p / CONFIG_FILE).is_file() and (p / MODEL_FILE).is_file()


def interrupted_overwrites(root: str | os.PathLike[str]) -> dict[str, Path]:
    """Checkpoints a kill left between the two renames of a same-step overwrite.

    :func:`save_checkpoint` replaces an existing ``step_X`` by renaming it to ``.trash-step_X-*``
    and then the finished ``.tmp-step_X-*`` to ``step_X``. A kill between the two leaves no
    ``step_X``; both copies are complete. Returns ``{"step_X": the copy to use}``: the new one
    (the temp dir) when complete, else the old one.
    """
    root = Path(root)
    if not root.is_dir():
        return {}
    found: dict[str, Path] = {}
    for prefix in (".trash-", ".tmp-"):  # later prefixes win: the new copy over the old one
        for p in sorted(root.glob(f"{prefix}step_*-*")):
            name = p.name[len(prefix) :].rsplit("-", 1)[0]
            if _STEP_DIR.match(name) and not (root / name).exists() and _complete(p):
                found[name] = p
    return found


def repair_interrupted_overwrites(root: str | os.PathLike[str]) -> list[Path]:
    """Rename each copy found by :func:`interrupted_overwrites` back to its ``step_X`` name (only
    the run's writer calls this; readers use the copies in place). Returns the repaired paths."""
    repaired = []
    for name, copy in interrupted_overwrites(root).items():
        final = Path(root) / name
        os.replace(copy, final)
        repaired.append(final)
    if repaired:
        fsync_dir(Path(root))
    return repaired


def list_checkpoints(run_or_dir: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoints of a run (or of a ``checkpoints`` folder), oldest first.

    A checkpoint caught mid-overwrite by a kill is listed by the path of its complete copy (see
    :func:`interrupted_overwrites`), so it is never lost to a reader."""
    root = Path(run_or_dir)
    if (root / CHECKPOINTS_DIR).is_dir():
        root = root / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and _complete(p):
            found.append((int(m.group(1)), p))
    for name, copy in interrupted_overwrites(root).items():
        found.append((int(_STEP_DIR.match(name).group(1)), copy))
    return [p for _, p in sorted(found)]


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The checkpoint directory that ``path`` names.

    ``path`` may be a checkpoint directory, its ``config.json`` or ``model.safetensors``, a run
    directory or a ``checkpoints`` folder (then the newest complete checkpoint is used).
    """
    p = Path(path)
    if p.is_file() and p.name in (CONFIG_FILE, MODEL_FILE):
        p = p.parent
    if not p.exists():
        raise FileNotFoundError(f"checkpoint path {p} does not exist")
    if (p / MODEL_FILE).is_file() or ((p / CONFIG_FILE).is_file() and not (p / CHECKPOINTS_DIR).is_dir()):
        return p
    found = list_checkpoints(p)
    if not found:
        raise FileNotFoundError(
            f"{p} holds no checkpoint: expected {MODEL_FILE} + {CONFIG_FILE}, or a run directory with "
            f"{CHECKPOINTS_DIR}/step_*"
        )
    return found[-1]


def read_checkpoint_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint (see :func:`resolve_checkpoint` for accepted paths).

    The returned dict has at least ``format``, ``version``, ``learner``, ``model`` (the model
    config) and ``step``; ``checkpoint_dir`` is added with the resolved directory.
    """
    directory = resolve_checkpoint(path)
    config = _read_json(directory / CONFIG_FILE)
    if not isinstance(config, dict) or config.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{directory / CONFIG_FILE}: not a worldmodel checkpoint config (expected format {CHECKPOINT_FORMAT!r})"
        )
    if int(config.get("version", -1)) > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{directory}: checkpoint version {config.get('version')} is newer than this toolkit supports "
            f"({CHECKPOINT_VERSION})"
        )
    for key in ("learner", "model"):
        if key not in config:
            raise CheckpointError(f"{directory / CONFIG_FILE}: missing key {key!r}")
    config["checkpoint_dir"] = str(directory)
    _fill_legacy_defaults(config)
    return config


def _fill_legacy_defaults(config: dict[str, Any]) -> None:
    """Model-config fields the checkpoint predates get the learner's legacy values (so it loads
    as the architecture it was trained with, not as a newer default)."""
    from worldmodel.models.registry import get_learner

    try:
        spec = get_learner(str(config["learner"]))
    except (KeyError, ValueError):
        return  # an unknown learner is reported by whoever builds it
    model = config["model"]
    if isinstance(model, dict):
        for name, value in spec.legacy_defaults.items():
            model.setdefault(name, value)


# --------------------------------------------------------------------------------------------
# saving and loading


def save_checkpoint(
    directory: str | os.PathLike[str],
    model_state: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    train_state: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory atomically and return its path.

    Args:
        directory: final checkpoint directory (its parent is created). An existing directory of
            that name is replaced.
        model_state: the learner's ``state_dict()``.
        config: JSON-serialisable description; must contain ``learner`` and ``model``. ``format``,
            ``version`` and ``files`` are added.
        train_state: optional nested state for resuming (optimizer ``state_dict``, counters, RNG
            states as uint8 tensors, ...): tensors go to ``train_state.safetensors``, the rest
            to ``train_state.json``.
    """
    final = Path(directory)
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    for key in ("learner", "model"):
        if key not in config:
            raise ValueError(f"checkpoint config must contain {key!r}")
    repair_interrupted_overwrites(parent)  # a kill mid-overwrite last time: restore that checkpoint first
    tmp = parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _save_tensors(tmp / MODEL_FILE, model_state)
        files = {}
        if train_state is not None:
            tensors, structure = pack_state(dict(train_state))
            _save_tensors(tmp / TRAIN_TENSORS_FILE, tensors)
            atomic_write_json(tmp / TRAIN_JSON_FILE, structure)
        for name in (MODEL_FILE, TRAIN_TENSORS_FILE, TRAIN_JSON_FILE):
            if (tmp / name).is_file():
                files[name] = {"bytes": (tmp / name).stat().st_size, "sha256": file_sha256(tmp / name)}
        meta = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **dict(config), "files": files}
        meta.pop("checkpoint_dir", None)
        atomic_write_json(tmp / CONFIG_FILE, meta)
        fsync_dir(tmp)
        if final.exists():
            trash = parent / f".trash-{final.name}-{uuid.uuid4().hex[:8]}"
            os.replace(final, trash)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
        fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load_model_state(
    path: str | os.PathLike[str], device: str | torch.device = "cpu", verify: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, config)`` of a checkpoint; checks sizes and digests unless ``verify=False``."""
    config = read_checkpoint_config(path)
    directory = Path(config["checkpoint_dir"])
    if verify:
        _verify(directory, config, MODEL_FILE)
    return load_tensors(directory / MODEL_FILE, device=device), config


def load_train_state(path: str | os.PathLike[str], verify: bool = True) -> dict[str, Any]:
    """The nested resume state saved with a checkpoint (tensors on the CPU)."""
    config = read_checkpoint_config(path)
    directory = Path(config["checkpoint_dir"])
    for name in (TRAIN_TENSORS_FILE, TRAIN_JSON_FILE):
        if not (directory / name).is_file():
            raise CheckpointError(f"checkpoint {directory} has no resume state ({name} is missing)")
        if verify:
            _verify(directory, config, name)
    tensors = load_tensors(directory / TRAIN_TENSORS_FILE)
    return unpack_state(_read_json(directory / TRAIN_JSON_FILE), tensors)


def prune_checkpoints(run_or_dir: str | os.PathLike[str], keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints (and leftover temp dirs)."""
    root = Path(run_or_dir)
    if (root / CHECKPOINTS_DIR).is_dir():
        root = root / CHECKPOINTS_DIR
    repair_interrupted_overwrites(root)  # before the leftovers below are deleted
    found = list_checkpoints(root)
    old = found[: max(0, len(found) - max(1, keep))]
    for p in old:
        trash = p.parent / f".trash-{p.name}-{uuid.uuid4().hex[:8]}"
        os.replace(p, trash)  # rename first: a kill mid-delete leaves no half checkpoint
        shutil.rmtree(trash, ignore_errors=True)
    for p in root.glob(".t*-step_*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
