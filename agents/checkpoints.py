"""Resumable checkpoints of an agent run: atomic directories and a manifest naming the latest.

A run's ``checkpoints/`` folder::

    checkpoints/
      step_000026624/       one complete checkpoint (written as .tmp-step_000026624, then renamed)
        model.zip           SB3's model (its own format, with pickled objects: our own files only)
        vecnormalize.json   VecNormalize statistics, when the run normalises (plain JSON, no pickle)
        replay_buffer.npz   off-policy replay buffer (numpy arrays, loaded with allow_pickle=False);
                            only the latest checkpoint keeps one
      latest.json           manifest: the latest *complete* checkpoint, written atomically after it

A process killed at any moment leaves either the previous manifest or the new one, each naming
a directory that is complete; half-written ``.tmp-*`` directories are removed on resume.

SB3's own ``VecNormalize.save`` and ``save_replay_buffer`` pickle whole objects; the toolkit never
unpickles what it does not have to, so the statistics are JSON and the buffer is ``.npz`` here.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.artifacts import write_json_atomic
from worldmodel.atomic import fsync_dir, fsync_file

if TYPE_CHECKING:  # SB3 is imported where it is used, so that importing the constants stays light
    from stable_baselines3.common.running_mean_std import RunningMeanStd
    from stable_baselines3.common.vec_env import VecEnv, VecNormalize

CHECKPOINT_DIR = "checkpoints"
MANIFEST_FILE = "latest.json"
CHECKPOINT_MODEL = "model.zip"
VECNORMALIZE_FILE = "vecnormalize.json"
REPLAY_BUFFER_FILE = "replay_buffer.npz"
_FORMAT = "wm-agent-checkpoint-1"
_VECNORM_FORMAT = "wm-vecnormalize-1"
#: Replay-buffer arrays saved (``None`` ones, e.g. next_observations when memory-optimised, are skipped).
_BUFFER_ARRAYS: tuple[str, ...] = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


@dataclass(frozen=True)
class Checkpoint:
    """One complete checkpoint, as the manifest names it."""

    step: int
    """Env steps (``model.num_timesteps``) at which it was written."""
    path: Path
    """Its directory."""
    wall_s: float
    """Seconds the run had trained (and evaluated) when it was written, over all its sessions."""
    resumed_from: tuple[int, ...] = field(default_factory=tuple)
    """Steps of the checkpoints earlier sessions of this run resumed from."""

    @property
    def model_path(self) -> Path:
        """The SB3 model zip."""
        return self.path / CHECKPOINT_MODEL

    @property
    def vecnormalize_path(self) -> Path | None:
        """The VecNormalize statistics, if the run normalises."""
        p = self.path / VECNORMALIZE_FILE
        return p if p.is_file() else None

    @property
    def replay_buffer_path(self) -> Path | None:
        """The replay buffer, if one was saved with this checkpoint."""
        p = self.path / REPLAY_BUFFER_FILE
        return p if p.is_file() else None


def step_dir_name(step: int) -> str:
    """Directory name of the checkpoint at ``step`` (zero-padded, so names sort by step)."""
    return f"step_{int(step):09d}"


# --- VecNormalize statistics -------------------------------------------------------------------


def _rms_to_dict(rms: RunningMeanStd) -> dict[str, Any]:
    return {
        "mean": np.asarray(rms.mean, dtype=np.float64).tolist(),
        "var": np.asarray(rms.var, dtype=np.float64).tolist(),
        "count": float(rms.count),
    }


def _rms_from_dict(values: dict[str, Any], shape: tuple[int, ...], what: str) -> RunningMeanStd:
    from stable_baselines3.common.running_mean_std import RunningMeanStd

    mean = np.asarray(values["mean"], dtype=np.float64)
    var = np.asarray(values["var"], dtype=np.float64)
    if mean.shape != tuple(shape) or var.shape != tuple(shape):
        raise ValueError(f"{what}: saved statistics have shape {mean.shape}, the env's observations {tuple(shape)}")
    rms = RunningMeanStd(shape=tuple(shape))
    rms.mean, rms.var, rms.count = mean, var, float(values["count"])
    return rms


def vecnormalize_state(venv: VecNormalize) -> dict[str, Any]:
    """The statistics and settings of a ``VecNormalize`` as plain JSON values."""
    if isinstance(getattr(venv, "obs_rms", None), dict):
        raise ValueError(
            "VecNormalize over Dict observations is not supported (the toolkit normalises vector modes only)"
        )
    return {
        "format": _VECNORM_FORMAT,
        "norm_obs": bool(venv.norm_obs),
        "norm_reward": bool(venv.norm_reward),
        "clip_obs": float(venv.clip_obs),
        "clip_reward": float(venv.clip_reward),
        "gamma": float(venv.gamma),
        "epsilon": float(venv.epsilon),
        "obs_rms": _rms_to_dict(venv.obs_rms) if venv.norm_obs else None,
        "ret_rms": _rms_to_dict(venv.ret_rms),
    }


def save_vecnormalize(path: str | Path, venv: VecNormalize) -> None:
    """Write ``venv``'s statistics to ``path`` as JSON (atomically)."""
    write_json_atomic(path, vecnormalize_state(venv))


def load_vecnormalize(path: str | Path, venv: VecNormalize) -> None:
    """Put the statistics saved by :func:`save_vecnormalize` into ``venv`` (settings must match)."""
    with open(path, encoding="utf-8") as f:
        state = json.load(f)
    if state.get("format") != _VECNORM_FORMAT:
        raise ValueError(f"{path}: not a VecNormalize statistics file of this toolkit (format {state.get('format')!r})")
    for key in ("norm_obs", "norm_reward"):
        if bool(state[key]) != bool(getattr(venv, key)):
            raise ValueError(f"{path}: saved with {key}={state[key]}, but the env has {key}={getattr(venv, key)}")
    if venv.norm_obs:
        venv.obs_rms = _rms_from_dict(state["obs_rms"], venv.observation_space.shape, str(path))
    venv.ret_rms = _rms_from_dict(state["ret_rms"], (), str(path))


# --- replay buffer -----------------------------------------------------------------------------


def _buffer_items(buffer: Any) -> dict[str, np.ndarray]:
    """Name -> array of the filled part of a (Dict)ReplayBuffer (Dict keys as ``observations/<key>``)."""
    n = buffer.buffer_size if buffer.full else buffer.pos
    items: dict[str, np.ndarray] = {}
    for name in _BUFFER_ARRAYS:
        value = getattr(buffer, name, None)
        if value is None:
            continue
        if isinstance(value, dict):
            for key, arr in value.items():
                items[f"{name}/{key}"] = arr[:n]
        else:
            items[name] = value[:n]
    return items


def save_replay_buffer(path: str | Path, buffer: Any) -> None:
    """Write the filled part of an SB3 ``ReplayBuffer``/``DictReplayBuffer`` as an ``.npz``."""
    items = _buffer_items(buffer)
    meta = {
        "pos": int(buffer.pos),
        "full": bool(buffer.full),
        "buffer_size": int(buffer.buffer_size),
        "n_envs": int(buffer.n_envs),
    }
    with open(path, "wb") as f:
        np.savez(f, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **items)


def load_replay_buffer(path: str | Path, buffer: Any) -> int:
    """Fill ``buffer`` (already allocated by the model) from :func:`save_replay_buffer`'s file.

    Returns the number of transitions (per env) restored. Raises ``ValueError`` when the saved
    buffer does not fit (other size, env count or observation shapes).
    """
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(bytes(data["__meta__"]).decode())
        if meta["buffer_size"] != buffer.buffer_size or meta["n_envs"] != buffer.n_envs:
            raise ValueError(
                f"{path}: saved replay buffer has size {meta['buffer_size']} x {meta['n_envs']} envs, "
                f"the model's {buffer.buffer_size} x {buffer.n_envs}"
            )
        expected = _buffer_items(buffer)  # views of the target arrays (shape [:n] of the current fill)
        names = {k for k in data.files if k != "__meta__"}
        targets = {k for k in expected} | names
        n = meta["buffer_size"] if meta["full"] else meta["pos"]
        for name in sorted(targets):
            base, _, key = name.partition("/")
            target = getattr(buffer, base, None)
            if isinstance(target, dict):
                target = target.get(key)
            if target is None or name not in names:
                raise ValueError(
                    f"{path}: replay buffer array {name!r} is missing on one side (saved: {sorted(names)})"
                )
            saved = data[name]
            if saved.shape[1:] != target.shape[1:] or saved.shape[0] != n:
                raise ValueError(
                    f"{path}: replay buffer array {name!r} has shape {saved.shape}, expected ({n}, *{target.shape[1:]})"
                )
            target[:n] = saved
        buffer.pos = int(meta["pos"])
        buffer.full = bool(meta["full"])
    return n


# --- checkpoints -------------------------------------------------------------------------------


def checkpoint_root(run_dir: str | Path) -> Path:
    """``<run_dir>/checkpoints``."""
    return Path(run_dir) / CHECKPOINT_DIR


def write_checkpoint(
    run_dir: str | Path,
    model: Any,
    wall_s: float,
    resumed_from: tuple[int, ...] = (),
    with_replay_buffer: bool = True,
) -> Checkpoint:
    """Save ``model`` (+ VecNormalize statistics, + replay buffer) as the run's latest checkpoint.

    The files go to a temporary directory that is renamed when complete; then the manifest is
    replaced atomically; then older checkpoints' replay buffers are deleted (only the latest is
    needed to resume, and they are the large files).
    """
    root = checkpoint_root(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    step = int(model.num_timesteps)
    name = step_dir_name(step)
    tmp = root / f".tmp-{name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    files = [CHECKPOINT_MODEL]
    model.save(str(tmp / CHECKPOINT_MODEL))
    vecnorm = vec_normalize_of(model.get_env())
    if vecnorm is not None:
        save_vecnormalize(tmp / VECNORMALIZE_FILE, vecnorm)
        files.append(VECNORMALIZE_FILE)
    if with_replay_buffer and getattr(model, "replay_buffer", None) is not None:
        save_replay_buffer(tmp / REPLAY_BUFFER_FILE, model.replay_buffer)
        files.append(REPLAY_BUFFER_FILE)
    for f in files:
        fsync_file(tmp / f)
    final = root / name
    if final.exists():  # a checkpoint of the same step from a session that was killed before its manifest
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(root)
    ckpt = Checkpoint(step=step, path=final, wall_s=float(wall_s), resumed_from=tuple(int(s) for s in resumed_from))
    write_json_atomic(
        root / MANIFEST_FILE,
        {
            "format": _FORMAT,
            "step": step,
            "dir": name,
            "files": files,
            "wall_s": round(float(wall_s), 3),
            "resumed_from": list(ckpt.resumed_from),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    for other in root.glob("step_*"):
        if other != final and (other / REPLAY_BUFFER_FILE).is_file():
            (other / REPLAY_BUFFER_FILE).unlink()
    return ckpt


def latest_checkpoint(run_dir: str | Path) -> Checkpoint | None:
    """The checkpoint the manifest names, or ``None`` when there is none (or it is unusable).

    Leftover ``.tmp-*`` directories of a session killed while writing are removed.
    """
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return None
    for tmp in root.glob(".tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    manifest = root / MANIFEST_FILE
    if not manifest.is_file():
        return None
    with open(manifest, encoding="utf-8") as f:
        data = json.load(f)
    if data.get("format") != _FORMAT:
        return None
    path = root / data["dir"]
    if not all((path / name).is_file() for name in data.get("files", [CHECKPOINT_MODEL])):
        return None
    return Checkpoint(
        step=int(data["step"]),
        path=path,
        wall_s=float(data.get("wall_s", 0.0)),
        resumed_from=tuple(int(s) for s in data.get("resumed_from", ())),
    )


def vec_normalize_of(venv: VecEnv | None) -> VecNormalize | None:
    """The ``VecNormalize`` layer of a wrapper stack (``None`` if there is none)."""
    from stable_baselines3.common.vec_env import unwrap_vec_normalize

    return None if venv is None else unwrap_vec_normalize(venv)
