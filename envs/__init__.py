"""Gymnasium environments rendered with MuJoCo from moving cameras.

Importing this package registers ``wm/JacoReach-v1`` (the reach task of the studies),
``wm/JacoReach-v0`` (the first release's task, kept unchanged) and ``wm/Maze-v0`` with Gymnasium and
sets ``MUJOCO_GL=egl`` when unset. It never imports torch.
"""

from envs.rendering import configure_gl_backend, import_mujoco

configure_gl_backend()
import_mujoco()  # fail early, with an install hint, when the GL backend cannot load

from gymnasium.envs.registration import register, registry  # noqa: E402

ENV_IDS: tuple[str, ...] = ("wm/JacoReach-v1", "wm/JacoReach-v0", "wm/Maze-v0")

if "wm/JacoReach-v1" not in registry:
    # 100 control steps of 0.04 s; the env follows a max_episode_steps given to gym.make.
    register(id="wm/JacoReach-v1", entry_point="envs.jaco_v1:JacoReachV1Env", max_episode_steps=100)
if "wm/JacoReach-v0" not in registry:
    register(id="wm/JacoReach-v0", entry_point="envs.jaco:JacoReachEnv")
if "wm/Maze-v0" not in registry:
    register(id="wm/Maze-v0", entry_point="envs.maze:MazeEnv")

__all__ = ["ENV_IDS"]
