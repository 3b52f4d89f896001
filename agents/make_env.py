"""Build the vectorised env stack an agent trains on, for each observation mode.

=========  ========================  ==================================================
obs        env created with          stack
=========  ========================  ==================================================
pixels     ``obs="pixels"``          VecEnv(Monitor(env)) -> VecTransposeImage (CHW uint8)
repr       ``obs="pixels+viewpoint"``  VecEnv(Monitor(env)) -> EncoderVecEnvWrapper (float)
state      ``obs="state"``           VecEnv(Monitor(env))
=========  ========================  ==================================================

The encoder lives only in the main process (the wrapper sits above the VecEnv), so
``SubprocVecEnv`` workers never hold a copy of the model. Scripts that use
``vec_env="subproc"`` need an ``if __name__ == "__main__":`` guard (forkserver/spawn start).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import gymnasium as gym
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.preprocessing import (
    is_image_space,
    is_image_space_channels_first,
)
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    SubprocVecEnv,
    VecEnv,
    VecTransposeImage,
)

from agents.config import AGENT_OBS_MODES, AGGREGATES, ENV_OBS, VEC_ENVS
from agents.wrappers import EncoderVecEnvWrapper
from envs.spaces import check_choice
from worldmodel.encoders import FrozenEncoder


def build_single_env(env_id: str, env_obs: str, env_kwargs: dict[str, Any], monitor_file: "str | None" = None) -> gym.Env:
    """One Monitor-wrapped env (module level so SubprocVecEnv can pickle it by reference)."""
    import envs  # noqa: F401  (registers the wm/ ids in worker processes too)

    env = gym.make(env_id, obs=env_obs, **env_kwargs)
    return Monitor(env, filename=monitor_file)


def resolve_encoder(encoder: "FrozenEncoder | str | None", device: "str | None" = None) -> "FrozenEncoder | None":
    """A FrozenEncoder from an instance or a checkpoint directory (``None`` stays ``None``)."""
    if encoder is None or isinstance(encoder, FrozenEncoder):
        return encoder
    from worldmodel import load_encoder

    return load_encoder(str(encoder), device=device)


def make_env(
    env_id: str,
    obs: str = "pixels",
    encoder: "FrozenEncoder | str | None" = None,
    n_envs: int = 1,
    seed: "int | None" = 0,
    vec_env: str = "dummy",
    env_kwargs: "dict[str, Any] | None" = None,
    append_viewpoint: bool = False,
    context_views: int = 1,
    aggregate: str = "sum",
    monitor_dir: "str | None" = None,
    start_method: "str | None" = None,
    device: "str | None" = None,
) -> VecEnv:
    """Build ``n_envs`` copies of ``env_id`` wrapped for an agent observing ``obs``.

    Args:
        env_id: Gymnasium id (``wm/JacoReach-v0``, ``wm/Maze-v0`` or any ``module:id``).
        obs: ``pixels``, ``repr`` or ``state``.
        encoder: FrozenEncoder or checkpoint directory; required for ``repr`` only.
        n_envs: number of parallel envs.
        seed: sub-env ``i`` is reset with ``seed + i`` first (``None``: unseeded).
        vec_env: ``dummy`` (in process) or ``subproc`` (one process per env).
        env_kwargs: extra ``gymnasium.make`` arguments (``camera``, ``size``, ``domain`` ...);
            ``obs`` is set here and must not be in it. For ``repr`` the image ``size``
            defaults to the encoder's input size.
        append_viewpoint, context_views, aggregate: see :class:`agents.wrappers.EncoderVecEnvWrapper`.
        monitor_dir: write Monitor CSVs there (``None``: keep episode stats in memory only).
        start_method: multiprocessing start method for ``subproc`` (SB3's default when ``None``).
        device: device for an encoder loaded from a checkpoint path.
    """
    check_choice("obs mode", obs, AGENT_OBS_MODES)
    check_choice("vec_env", vec_env, VEC_ENVS)
    check_choice("aggregate", aggregate, AGGREGATES)
    if n_envs < 1:
        raise ValueError(f"n_envs must be >= 1, got {n_envs}")
    kwargs = dict(env_kwargs or {})
    if "obs" in kwargs:
        raise ValueError("env_kwargs must not contain 'obs': it is set from the agent's obs mode")
    if obs == "repr":
        if encoder is None:
            raise ValueError("obs='repr' needs an encoder (a FrozenEncoder or a checkpoint directory)")
        encoder = resolve_encoder(encoder, device)
        kwargs.setdefault("size", encoder.image_size)
    elif encoder is not None:
        raise ValueError(f"an encoder is only used with obs='repr', not obs={obs!r}")

    fns: list[Callable[[], gym.Env]] = []
    for i in range(n_envs):
        monitor_file = None if monitor_dir is None else f"{monitor_dir}/env{i}"
        fns.append(functools.partial(build_single_env, env_id, ENV_OBS[obs], kwargs, monitor_file))
    venv: VecEnv = DummyVecEnv(fns) if vec_env == "dummy" else SubprocVecEnv(fns, start_method=start_method)
    if seed is not None:
        venv.seed(seed)  # applied at the next reset; SB3 models seed their own action-space sampling

    if obs == "pixels":
        space = venv.observation_space
        if not is_image_space(space, check_channels=False):
            venv.close()
            raise ValueError(f"{env_id} with obs='pixels' gives {space}, not a uint8 image space")
        if not is_image_space_channels_first(space):
            venv = VecTransposeImage(venv)
    elif obs == "repr":
        try:
            venv = EncoderVecEnvWrapper(
                venv, encoder, append_viewpoint=append_viewpoint, context_views=context_views, aggregate=aggregate
            )
        except Exception:
            venv.close()
            raise
    return venv
