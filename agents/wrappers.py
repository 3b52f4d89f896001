"""Frozen encoders as observation wrappers: agents see features instead of pixels.

Two wrappers share one implementation:

* :class:`EncoderVecEnvWrapper` (Stable-Baselines3 ``VecEnvWrapper``) encodes the frames of all
  sub-environments in one batched forward pass on the encoder's device (one model, never copied
  into worker processes, so it works unchanged over ``DummyVecEnv`` and ``SubprocVecEnv``), and
  also encodes ``infos[i]["terminal_observation"]`` in the same pass.
* :class:`EncoderObservationWrapper` (Gymnasium ``ObservationWrapper``) does the same for one env.

Input observations are either a uint8 image Box (``[H,W,3]`` or ``[3,H,W]``) or a Dict holding
one (``pixels``) and the 5-d camera viewpoint (``viewpoint``), as the toolkit's envs produce with
``obs="pixels+viewpoint"``. With a plain image Box the viewpoint is read from ``info["viewpoint"]``.

Options:

* ``append_viewpoint``: append the current view's 7-d viewpoint ``(x, y, z, cos yaw, sin yaw,
  cos pitch, sin pitch)`` to the features.
* ``context_views=K``: aggregate the representations of the last K views of the current episode
  (``aggregate="sum"`` as GQN sums ``r`` over its context, or ``"mean"``). The window restarts
  at every episode boundary: the first observation of an episode never sees frames of the
  previous one, and a terminal observation aggregates the frames of its own episode only.

The encoder is a :class:`worldmodel.encoders.FrozenEncoder`: eval mode, no gradients; nothing
here ever trains it.

:class:`ViewpointVecEnvWrapper` is the ``pixels+viewpoint`` agent's view of the same Dict
observation: the frames stay, the 5-d viewpoint becomes the 7-d form above (cos/sin are
continuous where a raw yaw jumps from pi to -pi, and it is what the GQN encoder and
``append_viewpoint`` receive).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from envs.camera import viewpoint7
from worldmodel.encoders import FrozenEncoder

AGGREGATES: tuple[str, ...] = ("sum", "mean")
VIEWPOINT7_LOW = np.array([-10.0, -10.0, -10.0, -1.0, -1.0, -1.0, -1.0], dtype=np.float32)
VIEWPOINT7_HIGH = -VIEWPOINT7_LOW


class ViewHistory:
    """The last K view features of each of ``n_envs`` episodes, aggregated by sum or mean.

    A ring buffer ``[n_envs, K, D]``: slots not yet filled in the current episode hold zeros, so
    the sum needs no mask and the mean divides by the number of views seen (at most K).
    """

    def __init__(self, n_envs: int, context_views: int, feature_dim: int, aggregate: str = "sum") -> None:
        if context_views < 1:
            raise ValueError(f"context_views must be >= 1, got {context_views}")
        if aggregate not in AGGREGATES:
            raise ValueError(f"unknown aggregate {aggregate!r}; valid values: {', '.join(map(repr, AGGREGATES))}")
        self.k = int(context_views)
        self.aggregate = aggregate
        self._buf = np.zeros((n_envs, self.k, feature_dim), dtype=np.float32)
        self._count = np.zeros(n_envs, dtype=np.int64)

    def clear(self, mask: np.ndarray | None = None) -> None:
        """Forget the views of all envs (``mask=None``) or of the envs where ``mask`` is true."""
        if mask is None:
            self._buf[:] = 0.0
            self._count[:] = 0
        else:
            mask = np.asarray(mask, dtype=bool)
            self._buf[mask] = 0.0
            self._count[mask] = 0

    def push(self, features: np.ndarray) -> np.ndarray:
        """Add one view per env (``[n_envs, D]``) and return the aggregates ``[n_envs, D]``."""
        rows = np.arange(self._buf.shape[0])
        self._buf[rows, self._count % self.k] = features
        self._count += 1
        return self._reduce(self._buf, self._count)

    def peek(self, env: int, feature: np.ndarray) -> np.ndarray:
        """The aggregate env ``env`` would have after adding ``feature``, without storing it."""
        window = self._buf[env : env + 1].copy()
        count = self._count[env : env + 1] + 1
        window[0, (count[0] - 1) % self.k] = feature
        return self._reduce(window, count)[0]

    def _reduce(self, window: np.ndarray, count: np.ndarray) -> np.ndarray:
        total = window.sum(axis=1)
        if self.aggregate == "mean":
            total /= np.minimum(count, self.k)[:, None].astype(np.float32)
        return total


def feature_space(encoder: FrozenEncoder, append_viewpoint: bool = False) -> spaces.Box:
    """The float32 Box of the wrapped observations (features, then the 7-d viewpoint if asked)."""
    lo, hi = encoder.feature_bounds()
    low = np.full(encoder.feature_dim, lo, dtype=np.float32)
    high = np.full(encoder.feature_dim, hi, dtype=np.float32)
    if append_viewpoint:
        low = np.concatenate([low, VIEWPOINT7_LOW])
        high = np.concatenate([high, VIEWPOINT7_HIGH])
    return spaces.Box(low, high, dtype=np.float32)


def _image_size(space: spaces.Box, where: str) -> int:
    """Side length of a square uint8 RGB image Box (channel-last or channel-first)."""
    shape = tuple(space.shape)
    if space.dtype != np.uint8 or len(shape) != 3 or 3 not in (shape[0], shape[-1]):
        raise ValueError(
            f"{where}: expected a uint8 image space [H,W,3] or [3,H,W], got {space}; "
            "make the env with obs='pixels' or obs='pixels+viewpoint'"
        )
    h, w = (shape[0], shape[1]) if shape[-1] == 3 else (shape[1], shape[2])
    if h != w:
        raise ValueError(f"{where}: expected square images, got {h}x{w}")
    return int(h)


def check_input_space(
    space: spaces.Space, encoder: FrozenEncoder, pixels_key: str = "pixels", viewpoint_key: str = "viewpoint"
) -> bool:
    """Check that an env's observation space can feed ``encoder``.

    Returns whether the viewpoint is part of the observation (Dict with ``viewpoint_key``);
    otherwise it is read from ``info["viewpoint"]``. Raises ``ValueError`` naming the problem
    (``TypeError`` if ``encoder`` is not a FrozenEncoder).
    """
    if not isinstance(encoder, FrozenEncoder):
        raise TypeError(
            "encoder must be a worldmodel.encoders.FrozenEncoder (see worldmodel.load_encoder), got "
            f"{type(encoder).__name__}"
        )
    if isinstance(space, spaces.Dict):
        if pixels_key not in space.spaces:
            raise ValueError(
                f"Dict observation has no {pixels_key!r} key (keys: {', '.join(space.spaces)}); "
                "make the env with obs='pixels+viewpoint'"
            )
        size = _image_size(space.spaces[pixels_key], f"observation[{pixels_key!r}]")
        in_obs = viewpoint_key in space.spaces
    elif isinstance(space, spaces.Box):
        size = _image_size(space, "observation")
        in_obs = False
    else:
        raise ValueError(
            f"cannot encode observations of space {space}; expected an image Box or a Dict with {pixels_key!r}"
        )
    if size != encoder.image_size:
        raise ValueError(
            f"the {encoder.name} encoder takes {encoder.image_size}x{encoder.image_size} images but the env "
            f"produces {size}x{size}; make the env with size={encoder.image_size}"
        )
    return in_obs


class _ObservationEncoder:
    """The part both wrappers share: split observations, encode a batch, aggregate, assemble."""

    def __init__(
        self,
        encoder: FrozenEncoder,
        n_envs: int,
        append_viewpoint: bool,
        context_views: int,
        aggregate: str,
        pixels_key: str,
        viewpoint_key: str,
        viewpoint_in_obs: bool,
    ) -> None:
        self.encoder = encoder.eval()  # FrozenEncoder.train() always stays in eval mode; make it so now
        self.append_viewpoint = append_viewpoint
        self.pixels_key = pixels_key
        self.viewpoint_key = viewpoint_key
        self.viewpoint_in_obs = viewpoint_in_obs
        self.needs_viewpoint = encoder.uses_viewpoint or append_viewpoint
        self.history = ViewHistory(n_envs, context_views, encoder.feature_dim, aggregate)

    def split(self, obs: Any, info: dict | None) -> tuple[np.ndarray, np.ndarray | None]:
        """``(frame, viewpoint)`` of one observation (viewpoint from the obs or from ``info``)."""
        if isinstance(obs, dict):
            frame = np.asarray(obs[self.pixels_key])
            if self.viewpoint_in_obs:
                return frame, np.asarray(obs[self.viewpoint_key], dtype=np.float32)
        else:
            frame = np.asarray(obs)
        if not self.needs_viewpoint:
            return frame, None
        if info is None or self.viewpoint_key not in info:
            raise ValueError(
                f"the {self.encoder.name} encoder needs the camera viewpoint, but the observation has no "
                f"{self.viewpoint_key!r} key and info has none either; make the env with obs='pixels+viewpoint'"
            )
        return frame, np.asarray(info[self.viewpoint_key], dtype=np.float32)

    def encode(self, frames: Sequence[np.ndarray], viewpoints: Sequence[np.ndarray | None]) -> np.ndarray:
        """Features ``[B, D]`` of B single frames in one forward pass."""
        batch = np.stack(frames)
        vps = None if viewpoints[0] is None or not self.encoder.uses_viewpoint else np.stack(viewpoints)
        return self.encoder.encode_numpy(batch, vps)

    def assemble(self, features: np.ndarray, viewpoints: Sequence[np.ndarray | None]) -> np.ndarray:
        """Final observations: aggregated features, then the 7-d viewpoints if asked."""
        out = np.asarray(features, dtype=np.float32)
        if self.append_viewpoint:
            out = np.concatenate([out, viewpoint7(np.stack(viewpoints)).reshape(out.shape[0], 7)], axis=-1)
        return out.astype(np.float32, copy=False)


def _innermost(venv: VecEnv) -> VecEnv:
    """The base VecEnv under any VecEnvWrappers (the one that fills ``reset_infos``)."""
    while isinstance(venv, VecEnvWrapper):
        venv = venv.venv
    return venv


def _index_obs(obs: VecEnvObs, i: int) -> Any:
    if isinstance(obs, dict):
        return {k: v[i] for k, v in obs.items()}
    return obs[i]


class EncoderVecEnvWrapper(VecEnvWrapper):
    """Replace every sub-env's image observation by frozen-encoder features (batched).

    Args:
        venv: vectorised env whose observations are images or Dict(pixels, viewpoint).
        encoder: the frozen encoder; runs on its own device, once per step for all sub-envs.
        append_viewpoint: append the current view's 7-d viewpoint to the features.
        context_views: aggregate the last K views of the current episode (K=1: current view only).
        aggregate: ``"sum"`` (GQN's context aggregation) or ``"mean"`` over the K views.
        pixels_key: Dict key of the image.
        viewpoint_key: Dict (or info) key of the 5-d viewpoint.
    """

    def __init__(
        self,
        venv: VecEnv,
        encoder: FrozenEncoder,
        append_viewpoint: bool = False,
        context_views: int = 1,
        aggregate: str = "sum",
        pixels_key: str = "pixels",
        viewpoint_key: str = "viewpoint",
    ) -> None:
        in_obs = check_input_space(venv.observation_space, encoder, pixels_key, viewpoint_key)
        self._core = _ObservationEncoder(
            encoder, venv.num_envs, append_viewpoint, context_views, aggregate, pixels_key, viewpoint_key, in_obs
        )
        super().__init__(venv, observation_space=feature_space(encoder, append_viewpoint))

    @property
    def encoder(self) -> FrozenEncoder:
        """The frozen encoder (shared by all sub-envs)."""
        return self._core.encoder

    def reset(self) -> np.ndarray:
        """Reset all sub-envs; every episode's view window starts empty."""
        obs = self.venv.reset()
        reset_infos = list(_innermost(self.venv).reset_infos)
        self.reset_infos = reset_infos
        pairs = [
            self._core.split(_index_obs(obs, i), reset_infos[i] if i < len(reset_infos) else None)
            for i in range(self.num_envs)
        ]
        frames, vps = [p[0] for p in pairs], [p[1] for p in pairs]
        self._core.history.clear()
        agg = self._core.history.push(self._core.encode(frames, vps))
        return self._core.assemble(agg, vps)

    def step_wait(self) -> VecEnvStepReturn:
        """Step all sub-envs and encode current and terminal frames in one forward pass."""
        obs, rewards, dones, infos = self.venv.step_wait()
        dones = np.asarray(dones, dtype=bool)
        reset_infos = list(_innermost(self.venv).reset_infos)
        self.reset_infos = reset_infos
        frames, vps = [], []
        for i in range(self.num_envs):
            # After an auto-reset, the current obs is the new episode's first: its info is reset_infos[i].
            info = reset_infos[i] if dones[i] and i < len(reset_infos) else infos[i]
            f, v = self._core.split(_index_obs(obs, i), info)
            frames.append(f)
            vps.append(v)
        terminal = [i for i in np.flatnonzero(dones) if "terminal_observation" in infos[i]]
        t_frames, t_vps = [], []
        for i in terminal:
            f, v = self._core.split(infos[i]["terminal_observation"], infos[i])
            t_frames.append(f)
            t_vps.append(v)
        feats = self._core.encode(frames + t_frames, vps + t_vps)
        current, final = feats[: self.num_envs], feats[self.num_envs :]
        for j, i in enumerate(terminal):
            agg = self._core.history.peek(int(i), final[j])
            infos[i]["terminal_observation"] = self._core.assemble(agg[None], [t_vps[j]])[0]
        self._core.history.clear(dones)
        agg = self._core.history.push(current)
        return self._core.assemble(agg, vps), rewards, dones, infos


class EncoderObservationWrapper(gym.ObservationWrapper):
    """Single-env twin of :class:`EncoderVecEnvWrapper` for users outside SB3's VecEnv.

    Same arguments (with ``env`` a Gymnasium env); the view window restarts at every ``reset``.
    """

    def __init__(
        self,
        env: gym.Env,
        encoder: FrozenEncoder,
        append_viewpoint: bool = False,
        context_views: int = 1,
        aggregate: str = "sum",
        pixels_key: str = "pixels",
        viewpoint_key: str = "viewpoint",
    ) -> None:
        super().__init__(env)
        in_obs = check_input_space(env.observation_space, encoder, pixels_key, viewpoint_key)
        self._core = _ObservationEncoder(
            encoder, 1, append_viewpoint, context_views, aggregate, pixels_key, viewpoint_key, in_obs
        )
        self.observation_space = feature_space(encoder, append_viewpoint)
        self._info: dict | None = None

    @property
    def encoder(self) -> FrozenEncoder:
        """The frozen encoder."""
        return self._core.encoder

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Reset the env and start an empty view window."""
        obs, info = self.env.reset(seed=seed, options=options)
        self._core.history.clear()
        self._info = info
        return self.observation(obs), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Step the env and encode its new observation."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._info = info
        return self.observation(obs), reward, terminated, truncated, info

    def observation(self, observation: Any) -> np.ndarray:
        """Encode one observation and add it to the episode's view window."""
        frame, vp = self._core.split(observation, self._info)
        agg = self._core.history.push(self._core.encode([frame], [vp]))
        return self._core.assemble(agg, [vp])[0]


class ViewpointVecEnvWrapper(VecEnvWrapper):
    """Dict(pixels, viewpoint 5-d) -> Dict(pixels, viewpoint 7-d), also in ``terminal_observation``.

    The 7-d form is ``(x, y, z, cos yaw, sin yaw, cos pitch, sin pitch)``
    (:func:`envs.camera.viewpoint7`); the image passes through unchanged.

    Args:
        venv: vectorised env with a Dict observation holding ``viewpoint_key`` (5-d Box).
        viewpoint_key: Dict key of the viewpoint.
    """

    def __init__(self, venv: VecEnv, viewpoint_key: str = "viewpoint") -> None:
        space = venv.observation_space
        if not isinstance(space, spaces.Dict) or viewpoint_key not in space.spaces:
            raise ValueError(
                f"ViewpointVecEnvWrapper needs a Dict observation with a {viewpoint_key!r} key, got {space}; "
                "make the env with obs='pixels+viewpoint'"
            )
        if tuple(space.spaces[viewpoint_key].shape) != (5,):
            raise ValueError(
                f"observation[{viewpoint_key!r}] must be the 5-d viewpoint, got {space.spaces[viewpoint_key]}"
            )
        self.viewpoint_key = viewpoint_key
        new = dict(space.spaces)
        new[viewpoint_key] = spaces.Box(VIEWPOINT7_LOW, VIEWPOINT7_HIGH, dtype=np.float32)
        super().__init__(venv, observation_space=spaces.Dict(new))

    def _convert(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = dict(obs)
        out[self.viewpoint_key] = viewpoint7(np.asarray(obs[self.viewpoint_key], dtype=np.float32))
        return out

    def reset(self) -> VecEnvObs:
        """Reset all sub-envs; viewpoints in the 7-d form."""
        return self._convert(self.venv.reset())

    def step_wait(self) -> VecEnvStepReturn:
        """Step all sub-envs; current and terminal observations with 7-d viewpoints."""
        obs, rewards, dones, infos = self.venv.step_wait()
        for info in infos:
            if "terminal_observation" in info:
                info["terminal_observation"] = self._convert(info["terminal_observation"])
        return self._convert(obs), rewards, dones, infos
