"""Build the vectorised env stack an agent trains on, for each observation mode.

================  ============================  =====================================================================
obs               env created with              stack
================  ============================  =====================================================================
pixels            ``obs="pixels"``              VecEnv(Monitor(env)) [-> VecFrameStack] -> VecTransposeImage (CHW uint8)
pixels+viewpoint  ``obs="pixels+viewpoint"``    VecEnv(Monitor(env)) -> ViewpointVecEnvWrapper (7-d)
                                                [-> VecFrameStack] -> VecTransposeImage (Dict: CHW uint8, 7-d float)
repr              ``obs="pixels+viewpoint"``    VecEnv(Monitor(env)) -> EncoderVecEnvWrapper (float) [-> VecNormalize]
state             ``obs="state"``               VecEnv(Monitor(env)) [-> VecNormalize]
================  ============================  =====================================================================

The encoder lives only in the main process (the wrapper sits above the VecEnv), so
``SubprocVecEnv`` workers never hold a copy of the model. Scripts that use
``vec_env="subproc"`` (or ``"auto"``, which may pick it) need an ``if __name__ == "__main__":``
guard (forkserver/spawn start).

``VecNormalize`` (observations of the vector modes, and/or rewards of any mode) is added by
:func:`add_normalization`; its statistics are saved without pickle by :mod:`agents.checkpoints`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

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
    VecFrameStack,
    VecNormalize,
    VecTransposeImage,
)

from agents.config import (
    AGENT_OBS_MODES,
    AGGREGATES,
    AUTO_SUBPROC_MIN_CPUS,
    AUTO_SUBPROC_MODES,
    CPUS_PER_RUN_ENV,
    ENV_OBS,
    PIXEL_MODES,
    VEC_ENVS,
    VECTOR_MODES,
)
from agents.wrappers import EncoderVecEnvWrapper, ViewpointVecEnvWrapper
from envs.spaces import check_choice
from worldmodel.encoders import FrozenEncoder


def available_cpus() -> int:
    """CPUs this run may use: its affinity mask (e.g. a cluster job's cores), or less when a
    comparison grid running several runs at once set its share in ``WM_CPUS_PER_RUN``."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity
        cpus = os.cpu_count() or 1
    share = os.environ.get(CPUS_PER_RUN_ENV, "")
    if share:
        try:
            cpus = min(cpus, max(1, int(share)))
        except ValueError as err:
            raise ValueError(f"{CPUS_PER_RUN_ENV} must be a positive integer, got {share!r}") from err
    return cpus


def resolve_vec_env(vec_env: str, obs: str, n_envs: int, cpus: int | None = None) -> str:
    """``dummy`` or ``subproc``. ``auto``: subproc for the rendering modes (:data:`~agents.config.AUTO_SUBPROC_MODES`)
    when ``n_envs > 1`` and the run has at least :data:`~agents.config.AUTO_SUBPROC_MIN_CPUS` CPUs (``cpus``, default
    :func:`available_cpus`): rendering in the workers then overlaps the learner (measured faster); else dummy."""
    check_choice("vec_env", vec_env, VEC_ENVS)
    if vec_env != "auto":
        return vec_env
    cpus = available_cpus() if cpus is None else cpus
    parallel = n_envs > 1 and cpus >= AUTO_SUBPROC_MIN_CPUS
    return "subproc" if parallel and obs in AUTO_SUBPROC_MODES else "dummy"


def build_single_env(env_id: str, env_obs: str, env_kwargs: dict[str, Any], monitor_file: str | None = None) -> gym.Env:
    """One Monitor-wrapped env (module level so SubprocVecEnv can pickle it by reference)."""
    import envs  # noqa: F401  (registers the wm/ ids in worker processes too)

    env = gym.make(env_id, obs=env_obs, **env_kwargs)
    return Monitor(env, filename=monitor_file)


def resolve_encoder(encoder: FrozenEncoder | str | None, device: str | None = None) -> FrozenEncoder | None:
    """A FrozenEncoder from an instance or a checkpoint directory (``None`` stays ``None``)."""
    if encoder is None or isinstance(encoder, FrozenEncoder):
        return encoder
    from worldmodel import load_encoder

    return load_encoder(str(encoder), device=device)


def make_env(
    env_id: str,
    obs: str = "pixels",
    encoder: FrozenEncoder | str | None = None,
    n_envs: int = 1,
    seed: int | None = 0,
    vec_env: str = "dummy",
    env_kwargs: dict[str, Any] | None = None,
    append_viewpoint: bool = False,
    context_views: int = 1,
    aggregate: str = "sum",
    frame_stack: int = 1,
    monitor_dir: str | None = None,
    start_method: str | None = None,
    device: str | None = None,
) -> VecEnv:
    """Build ``n_envs`` copies of ``env_id`` wrapped for an agent observing ``obs``.

    Args:
        env_id: Gymnasium id (``wm/JacoReach-v1``, ``wm/Maze-v0`` or any ``module:id``).
        obs: ``pixels``, ``pixels+viewpoint``, ``repr`` or ``state``.
        encoder: FrozenEncoder or checkpoint directory; required for ``repr`` only.
        n_envs: number of parallel envs.
        seed: sub-env ``i`` is reset with ``seed + i`` first (``None``: unseeded).
        vec_env: ``dummy`` (in process), ``subproc`` (one process per env) or ``auto``
            (:func:`resolve_vec_env`).
        env_kwargs: extra ``gymnasium.make`` arguments (``camera``, ``size``, ``domain`` ...);
            ``obs`` is set here and must not be in it. For ``repr`` the image ``size``
            defaults to the encoder's input size.
        append_viewpoint, context_views, aggregate: see :class:`agents.wrappers.EncoderVecEnvWrapper`.
        frame_stack: pixels modes: stack the last K frames along the channels (``VecFrameStack``;
            the viewpoint of ``pixels+viewpoint`` is stacked too).
        monitor_dir: write Monitor CSVs there (``None``: keep episode stats in memory only).
        start_method: multiprocessing start method for ``subproc`` (SB3's default when ``None``).
        device: device for an encoder loaded from a checkpoint path.
    """
    check_choice("obs mode", obs, AGENT_OBS_MODES)
    vec_env = resolve_vec_env(vec_env, obs, n_envs)
    check_choice("aggregate", aggregate, AGGREGATES)
    if n_envs < 1:
        raise ValueError(f"n_envs must be >= 1, got {n_envs}")
    if frame_stack < 1:
        raise ValueError(f"frame_stack must be >= 1, got {frame_stack}")
    if frame_stack > 1 and obs not in PIXEL_MODES:
        raise ValueError(f"frame_stack applies to obs modes {', '.join(PIXEL_MODES)}, not obs={obs!r}")
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

    try:
        if obs in PIXEL_MODES:
            venv = _image_stack(venv, env_id, obs, frame_stack)
        elif obs == "repr":
            venv = EncoderVecEnvWrapper(
                venv, encoder, append_viewpoint=append_viewpoint, context_views=context_views, aggregate=aggregate
            )
    except Exception:
        venv.close()
        raise
    return venv


def _image_stack(venv: VecEnv, env_id: str, obs: str, frame_stack: int) -> VecEnv:
    """pixels / pixels+viewpoint: [7-d viewpoint ->] channel-first images [-> frame stack on channels]."""
    space = venv.observation_space
    if obs == "pixels+viewpoint":
        if not isinstance(space, gym.spaces.Dict) or "pixels" not in space.spaces or "viewpoint" not in space.spaces:
            raise ValueError(f"{env_id} with obs='pixels+viewpoint' gives {space}, not a Dict(pixels, viewpoint)")
        venv = ViewpointVecEnvWrapper(venv)
        image = venv.observation_space.spaces["pixels"]
    else:
        image = space
    if not is_image_space(image, check_channels=False):
        raise ValueError(f"{env_id} with obs={obs!r} gives {space}, not a uint8 image space")
    if not is_image_space_channels_first(image):
        venv = VecTransposeImage(venv)  # (Dict: only the image key is transposed)
    if frame_stack > 1:
        # Stacked after the transpose with explicit channel orders: SB3's automatic detection
        # guesses from the smallest axis, which is wrong for, e.g., 8 stacked 16 px frames.
        order: Any = "first" if obs == "pixels" else {"pixels": "first", "viewpoint": "last"}
        venv = VecFrameStack(venv, frame_stack, channels_order=order)
    return venv


def add_normalization(
    venv: VecEnv, obs: str, norm_obs: bool, norm_reward: bool, gamma: float = 0.99, evaluation: bool = False
) -> VecEnv:
    """Wrap ``venv`` in ``VecNormalize`` when asked (else return it unchanged).

    Observation normalisation is for the vector modes (:data:`~agents.config.VECTOR_MODES`);
    reward normalisation works for every mode. ``evaluation=True`` builds the evaluation env's
    twin of a normalised training env: ``training=False`` (statistics frozen; they are copied from
    the training env before each evaluation with ``sync_envs_normalization``) and
    ``norm_reward=False`` (returns are reported unnormalised).
    """
    if norm_obs and obs not in VECTOR_MODES:
        raise ValueError(f"observation normalisation applies to obs modes {', '.join(VECTOR_MODES)}, not obs={obs!r}")
    if not (norm_obs or norm_reward):
        return venv
    if evaluation:
        return VecNormalize(venv, training=False, norm_obs=norm_obs, norm_reward=False, gamma=gamma)
    return VecNormalize(venv, training=True, norm_obs=norm_obs, norm_reward=norm_reward, gamma=gamma)
