"""What produced a run: resolved config, seed, package versions, command line, machine.

Every training run (learners here, agents elsewhere) writes ``run.json`` into its output
directory with :func:`write_run_metadata`, so that a result can always be traced back to the
exact settings and software that made it. Torch-free: versions are read from installed
distribution metadata, not by importing the packages.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

RUN_FILE = "run.json"

#: Distributions whose versions are recorded by default.
DEFAULT_PACKAGES: tuple[str, ...] = (
    "worldmodel-toolkit",
    "torch",
    "numpy",
    "mujoco",
    "gymnasium",
    "safetensors",
    "tensorboard",
    "stable-baselines3",
    "pot",
    "rliable",
)


def package_versions(packages: Iterable[str] = DEFAULT_PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (``None`` when not installed)."""
    out: dict[str, str | None] = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_revision(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the source tree holding ``path``."""
    cwd = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            ).stdout.strip()
        )
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def _torch_runtime() -> dict[str, Any]:
    """CUDA/cuDNN details, only if torch is already imported (never imports it)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return {}
    info: dict[str, Any] = {"cuda": torch.version.cuda, "threads": torch.get_num_threads()}
    try:
        if torch.cuda.is_available():
            info["cudnn"] = torch.backends.cudnn.version()
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # pragma: no cover - broken driver setups
        pass
    return info


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, paths, tuples and numpy scalars as plain JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    return obj


def collect_run_metadata(config: Any, seed: int, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The dict written by :func:`write_run_metadata`."""
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seed": int(seed),
        "config": to_jsonable(config),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else [],
        "versions": {"python": platform.python_version(), **package_versions()},
        "runtime": _torch_runtime(),
        "git": git_revision(),
        "host": {"hostname": socket.gethostname(), "platform": platform.platform(), "cpus": os.cpu_count()},
        **({"extra": to_jsonable(extra)} if extra else {}),
    }


def write_run_metadata(
    run_dir: str | os.PathLike[str],
    config: Any,
    seed: int,
    extra: Mapping[str, Any] | None = None,
    filename: str = RUN_FILE,
) -> Path:
    """Write ``run.json`` (resolved config, seed, versions, command, git, host) atomically.

    Args:
        run_dir: output directory of the run (created).
        config: the resolved configuration (a dataclass or JSON-like mapping).
        seed: the run's base seed.
        extra: anything else worth recording (dataset info, world size, ...).
        filename: name of the file inside ``run_dir``.
    """
    from worldmodel.atomic import atomic_write_json

    path = Path(run_dir) / filename
    atomic_write_json(path, collect_run_metadata(config, seed, extra))
    return path


def read_run_metadata(run_dir: str | os.PathLike[str], filename: str = RUN_FILE) -> dict[str, Any]:
    """Read back ``run.json``; raises ``FileNotFoundError`` / ``ValueError`` with the path."""
    path = Path(run_dir) / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {run_dir} is not a run directory")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
