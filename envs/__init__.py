"""Gymnasium environments rendered with MuJoCo from moving cameras.

Importing this package registers ``wm/JacoReach-v1`` (the reach task of the studies),
``wm/JacoReach-v0`` (the first release's task, kept unchanged) and ``wm/Maze-v0`` with Gymnasium and
sets ``MUJOCO_GL=egl`` when unset. It never imports torch.

Every registered spec has ``max_episode_steps`` (Gymnasium's ``TimeLimit``): v1 100 steps, v0 200
(its ``episode_length`` default), Maze 500 (its ``max_steps`` default); the envs also end their
episodes themselves at their own length, so the two agree at the defaults.

The public classes resolve lazily (``from envs import MazeEnv``): importing the package loads
only MuJoCo and the registrations.
"""

import importlib
from typing import Any

from envs.rendering import configure_gl_backend, import_mujoco

configure_gl_backend()
import_mujoco()  # fail early, with an install hint, when the GL backend cannot load

from gymnasium.envs.registration import register, registry  # noqa: E402

ENV_IDS: tuple[str, ...] = ("wm/JacoReach-v1", "wm/JacoReach-v0", "wm/Maze-v0")

if "wm/JacoReach-v1" not in registry:
    # 100 control steps of 0.04 s; the env follows a max_episode_steps given to gym.make.
    register(id="wm/JacoReach-v1", entry_point="envs.jaco_v1:JacoReachV1Env", max_episode_steps=100)
if "wm/JacoReach-v0" not in registry:
    register(id="wm/JacoReach-v0", entry_point="envs.jaco:JacoReachEnv", max_episode_steps=200)
if "wm/Maze-v0" not in registry:
    register(id="wm/Maze-v0", entry_point="envs.maze:MazeEnv", max_episode_steps=500)

#: public name -> module that defines it.
_EXPORTS: dict[str, str] = {
    "JacoReachV1Env": "envs.jaco_v1",
    "JacoReachEnv": "envs.jaco",
    "MazeEnv": "envs.maze",
    "OrbitRig": "envs.camera",
    "RenderingUnavailableError": "envs.rendering",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'envs' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = sorted(["ENV_IDS", *_EXPORTS])
