"""``wm/JacoReach-v0``: a 9-joint Jaco-style arm reaching a coloured sphere, seen by a moving camera.

v0 is kept unchanged for the datasets and results made with it; new work uses ``wm/JacoReach-v1``
(:mod:`envs.jaco_v1`: a frontal workspace, arm-only actions, a room, an expert), which subclasses
this environment through the task hooks below.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from envs import jaco_model as jm
from envs.camera import CameraPose, OrbitRig
from envs.domain import (
    DOMAIN_CHOICES,
    DOMAINS,
    Domain,
    camera_effects,
    episode_appearance,
    random_domain,
    resolve_domain,
)
from envs.rendering import OffscreenRenderer
from envs.spaces import CAMERA_MODES, CHANNEL_ORDERS, OBS_MODES, check_choice, check_finite_action, format_image
from envs.spaces import observation_space as make_observation_space

#: Length of the oracle state vector (see :class:`JacoReachEnv`).
STATE_DIM = 2 * jm.N_JOINTS + 9  # qpos 9 + qvel 9 + hand 3 + target 3 + (target - hand) 3

#: Reset option keys accepted by :meth:`JacoReachEnv.reset`.
RESET_OPTIONS: tuple[str, ...] = ("target", "qpos")

#: Value of the reward at ``distance = TARGET_RADIUS + reward_margin`` (DeepMind Control's default).
_VALUE_AT_MARGIN = 0.1
_GAUSS_SCALE = float(np.sqrt(-2.0 * np.log(_VALUE_AT_MARGIN)))


def reach_reward(distance: float, radius: float, margin: float) -> float:
    """Smooth tolerance of a distance: 1 inside ``radius``, a Gaussian tail beyond it.

    Equals ``0.1`` at ``radius + margin`` and tends to 0 further out (the shape of DeepMind
    Control's ``tolerance(..., sigmoid="gaussian")``), so it always lies in ``[0, 1]``.
    """
    if distance <= radius:
        return 1.0
    x = (distance - radius) / margin * _GAUSS_SCALE
    return float(np.exp(-0.5 * x * x))


class JacoReachEnv(gym.Env):
    """Reach a randomly placed sphere with a 9-joint Jaco-style arm (MuJoCo, primitive geoms).

    A 6-joint arm with a 3-finger hand stands on a floor; a coloured target sphere (radius
    5 cm) is placed uniformly inside the reachable workspace (0.25-0.55 m from the base axis,
    0.1-0.5 m above the floor) at every reset, and the arm starts from a random pose around a
    bent home pose. A camera orbiting the workspace provides the pixels.

    **Action space**: ``Box(-1, 1, (9,), float32)``: joint *velocity* commands, in the order
    base yaw, shoulder, elbow, forearm roll, wrist pitch, hand roll, finger 1-3. An action of
    ``+-1`` requests the joint's top speed (1.5 rad/s for arm joints, 2 rad/s for fingers);
    MuJoCo velocity servos (``kv``) track it. The arm is gravity-compensated, so action 0 holds
    the pose. Out-of-range actions are clipped to ``[-1, 1]``; NaN or inf raise ``ValueError``.
    One control step is 0.04 s: ``n_substeps = 4`` physics steps of 0.01 s.

    **Observation space** (``obs=``):

    * ``"pixels"``: ``Box(0, 255, (size, size, 3), uint8)`` (``channel_order="first"``: ``(3, size, size)``).
    * ``"state"``: ``Box(-inf, inf, (27,), float32)``: joint positions (9, rad), joint
      velocities (9, rad/s), hand position (3, m), target position (3, m), target - hand (3, m).
    * ``"pixels+viewpoint"``: ``Dict(pixels=<as above>, viewpoint=Box((5,), float32))`` with the
      camera's GQN viewpoint ``(x, y, z, yaw, pitch)`` (see :mod:`envs.camera`).

    **Camera** (``camera=``): ``"fixed"``: one pose for every episode and seed; ``"random"``:
    a new random pose on the orbit shell at each reset, still during the episode; ``"moving"``:
    random start, then the pose drifts every step along a smooth random orbit trajectory
    (:class:`envs.camera.OrbitRig`), always looking at the workspace centre. The default is
    ``"fixed"`` (the Jaco envs' task camera, so a policy on pixels has a stable view); ``wm/Maze-v0``
    defaults to ``"moving"`` because its camera is the agent's own first-person eye. The studies
    pass ``camera=`` explicitly.

    **Domain** (``domain=``): ``"sim"`` (default), ``"real"`` (shifted colours, floor, light and
    pixel noise), ``"real-hard"`` (``real`` plus per-episode field-of-view jitter of +-8 deg, a
    0.8 px blur, stronger noise and distractor colours on floor, walls and joints),
    ``"randomised"`` (a new :func:`envs.domain.random_domain` at each reset), or a
    :class:`envs.domain.Domain`. Domains are applied by recolouring the compiled model; every
    per-episode draw comes from the reset seed.

    **Paired rendering** (``paired_domain=``, off by default): the current state is rendered a
    second time in another domain, from the same camera pose, into ``info["paired_pixels"]``
    (same size and channel order as the observation), with ``info["paired_domain"]`` after reset.
    Observations, rewards and every random draw are unchanged by it. Pairs are for *evaluating*
    domain alignment (the same physical state in both domains); no method may train on them.

    **Reward**: ``reach_reward(distance(hand, target), 0.05, reward_margin)``: 1 while the hand
    (a point between the fingertips) is within 5 cm of the target centre, a smooth Gaussian
    tail beyond it that equals 0.1 at ``0.05 + reward_margin`` (default margin 0.5 m, so a random
    policy still sees signal). Always in ``[0, 1]``; the largest return is ``episode_length``.

    **Episode end**: ``terminated`` is always False; ``truncated`` is True after
    ``episode_length`` steps (default 200, i.e. 8 s). Stepping past it raises ``RuntimeError``.

    **Reset options**: ``{"target": (x, y, z)}`` places the target; ``{"qpos": 9 angles}`` sets
    the start pose (clipped to the joint limits). Other keys raise ``ValueError``.

    **Info** (reset and step): ``"viewpoint"``: float32 [5] camera viewpoint of the returned
    observation; ``"distance"``: hand-target distance (m); ``"is_success"`` (SB3's key): distance
    <= 5 cm; ``"success"``: the same (alias kept from the first release).
    After reset also ``"domain"``: the episode's :class:`Domain` as a dict.

    **Seeding**: everything random (start pose, target, camera path, randomised domain, pixel
    noise) comes from ``reset(seed=...)``; the same seed gives byte-identical observations.

    **Rendering**: ``render_mode="rgb_array"``: :meth:`render` returns the current camera image
    (clean, without pixel noise) at ``render_size`` (default ``size``) as uint8 ``[H, W, 3]``.
    The GL context is created lazily in the process that first renders, so the env can be
    pickled and sent to subprocesses before use; :meth:`close` releases it.

    **Attributes**: ``domain`` (the current episode's :class:`Domain`), ``viewpoint``,
    ``hand_position``, ``target_position``, :meth:`state`. Benchmark hooks: ``model``, ``data``,
    ``n_substeps`` and ``renderer`` (the observation's :class:`envs.rendering.OffscreenRenderer`,
    ``None`` until :meth:`ensure_renderer` or the first pixel observation creates it).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}

    #: Physics steps per control step (0.01 s each).
    n_substeps: int = 4
    #: Task hooks that ``wm/JacoReach-v1`` (:class:`envs.jaco_v1.JacoReachV1Env`) overrides.
    _room: bool = False
    _orbit = jm.ORBIT
    _fixed_azimuth: float = jm.FIXED_AZIMUTH
    _state_dim: int = STATE_DIM

    def __init__(
        self,
        camera: str = "fixed",
        obs: str = "pixels",
        size: int = 64,
        channel_order: str = "last",
        domain: str | Domain = "sim",
        render_mode: str | None = None,
        render_size: int | None = None,
        episode_length: int = 200,
        reward_margin: float = 0.5,
        target_marker: bool = False,
        paired_domain: str | Domain | None = None,
    ) -> None:
        self.camera_mode = check_choice("camera", camera, CAMERA_MODES)
        self.obs_mode = check_choice("obs", obs, OBS_MODES)
        self.channel_order = check_choice("channel_order", channel_order, CHANNEL_ORDERS)
        if render_mode is not None:
            check_choice("render_mode", render_mode, self.metadata["render_modes"])
        for name, value in (("domain", domain), ("paired_domain", paired_domain)):
            if value is not None and not isinstance(value, Domain):
                check_choice(name, value, DOMAIN_CHOICES)
        for name, value in (("size", size), ("render_size", size if render_size is None else render_size)):
            if not isinstance(value, (int, np.integer)) or value < 8:
                raise ValueError(f"{name} must be an integer >= 8 pixels, got {value!r}")
        if not isinstance(episode_length, (int, np.integer)) or episode_length < 1:
            raise ValueError(f"episode_length must be a positive integer, got {episode_length!r}")
        if not reward_margin > 0:
            raise ValueError(f"reward_margin must be > 0 metres, got {reward_margin!r}")

        self.render_mode = render_mode
        self.size = int(size)
        self.render_size = self.size if render_size is None else int(render_size)
        self.episode_length = int(episode_length)
        self.reward_margin = float(reward_margin)
        self._fixed_domain = resolve_domain(domain)  # None: randomised at every reset
        self.domain: Domain = self._fixed_domain or DOMAINS["sim"]

        self.target_marker = bool(target_marker)
        self.model = jm.build_model(self.domain, room=self._room, target_marker=self.target_marker)
        self.data = mujoco.MjData(self.model)
        self._ids = jm.JacoIds(self.model)
        self._base_fovy = float(self.model.vis.global_.fovy)
        self._pair: _PairedView | None = None
        if paired_domain is not None:
            self._pair = _PairedView(paired_domain, self._room, self.target_marker, self.size)
        self._hand = self.data.site_xpos[self._ids.hand_site]  # views: always current
        self._target = self.data.mocap_pos[self._ids.target_mocap]

        self.action_space = spaces.Box(-1.0, 1.0, shape=(self._n_actions(),), dtype=np.float32)
        self.observation_space = make_observation_space(self.obs_mode, self.size, self.channel_order, self._state_dim)
        self._needs_pixels = self.obs_mode != "state"

        self._rig = OrbitRig(self._orbit)
        self._pose: CameraPose = self._rig.reset(np.random.default_rng(0), randomise=False, azimuth=self._fixed_azimuth)
        self._viewpoint = self._pose.viewpoint()
        self._noise_rng = np.random.default_rng(0)
        self._ctrl = np.zeros(self.action_space.shape[0], dtype=np.float64)
        self._frame: np.ndarray | None = None  # clean image of the current step, if rendered
        self._frame_step = -1
        self._t = 0
        self._done = False
        self.renderer: OffscreenRenderer | None = None
        self._render_renderer: OffscreenRenderer | None = None

    # ------------------------------------------------------------------ rendering
    def ensure_renderer(self) -> OffscreenRenderer:
        """The observation renderer (``size`` x ``size``), created on first use in this process."""
        if self.renderer is None:
            self.renderer = OffscreenRenderer(self.model, self.size, self.size)
        return self.renderer

    def _render_frame(self) -> np.ndarray:
        """Clean image of the current state from the current pose (cached per step)."""
        if self._frame is None or self._frame_step != self._t:
            self._frame = self.ensure_renderer().render(self.data, self._pose)
            self._frame_step = self._t
        return self._frame

    def render(self) -> np.ndarray | None:
        """The current camera image, uint8 ``[render_size, render_size, 3]`` (no pixel noise)."""
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode; pass render_mode='rgb_array' to make().")
            return None
        if self.render_size == self.size:
            return self._render_frame().copy()
        if self._render_renderer is None:
            self._render_renderer = OffscreenRenderer(self.model, self.render_size, self.render_size)
        return self._render_renderer.render(self.data, self._pose)

    def close(self) -> None:
        """Release the GL contexts (the env may be used again: they are recreated lazily)."""
        for attr in ("renderer", "_render_renderer"):
            r = getattr(self, attr, None)
            if r is not None:
                r.close()
                setattr(self, attr, None)
        self._frame = None
        if getattr(self, "_pair", None) is not None:
            self._pair.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["renderer"] = state["_render_renderer"] = None  # GL contexts stay in their process
        state["_frame"] = None
        if state.get("_pair") is not None:
            state["_pair"] = state["_pair"].without_renderer()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        # Views into the unpickled data's arrays.
        self._hand = self.data.site_xpos[self._ids.hand_site]
        self._target = self.data.mocap_pos[self._ids.target_mocap]

    # ------------------------------------------------------------------ API
    @property
    def viewpoint(self) -> np.ndarray:
        """Current camera viewpoint ``(x, y, z, yaw, pitch)``, float32 [5] (a copy)."""
        return self._viewpoint.copy()

    @property
    def hand_position(self) -> np.ndarray:
        """Position of the hand point between the fingertips (m), float64 [3] (a copy)."""
        return self._hand.copy()

    @property
    def target_position(self) -> np.ndarray:
        """Centre of the target sphere (m), float64 [3] (a copy)."""
        return self._target.copy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = sorted(set(options) - set(RESET_OPTIONS))
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; valid keys: {', '.join(map(repr, RESET_OPTIONS))}")
        rng = self.np_random
        # Fixed number of draws whatever the modes, so a seed gives the same task in every mode.
        cam_seed, noise_seed, domain_seed = (int(s) for s in rng.integers(0, 2**63 - 1, size=3))

        domain_rng = np.random.default_rng(domain_seed)
        if self._fixed_domain is None:
            self.domain = random_domain(domain_rng)
            jm.apply_domain(self.model, self.domain, self._ids)
        elif self._fixed_domain.distractor_colours or self._fixed_domain.fovy_jitter_deg > 0:
            self.domain, fovy_offset = episode_appearance(self._fixed_domain, domain_rng)
            jm.apply_domain(self.model, self.domain, self._ids)
            self.model.vis.global_.fovy = self._base_fovy + fovy_offset
        self._noise_rng = np.random.default_rng(noise_seed)
        if self._pair is not None:
            self._pair.reset(np.random.default_rng([domain_seed, 1]), np.random.default_rng([noise_seed, 1]))

        mujoco.mj_resetData(self.model, self.data)
        target = self._sample_target(rng)
        if "target" in options:
            target = np.asarray(options["target"], dtype=np.float64).reshape(3)
        jm.place_target(self.data, self._ids, target)
        q = self._sample_qpos(rng)
        if "qpos" in options:
            q = np.clip(np.asarray(options["qpos"], dtype=np.float64).reshape(jm.N_JOINTS), *jm.JOINT_RANGES.T)
            self.data.qpos[:] = q
        self.data.ctrl[:] = 0.0
        mujoco.mj_forward(self.model, self.data)

        cam_rng = np.random.default_rng(cam_seed)
        if self.camera_mode == "fixed":
            self._pose = self._rig.reset(cam_rng, randomise=False, azimuth=self._fixed_azimuth)
        else:
            self._pose = self._rig.reset(cam_rng, randomise=True)
        self._viewpoint = self._pose.viewpoint()

        self._t = 0
        self._done = False
        self._frame = None
        info = self._info()
        info["domain"] = asdict(self.domain)
        if self._pair is not None:
            info["paired_domain"] = asdict(self._pair.domain)
        return self._observation(), info

    def step(self, action):
        if self._done:
            raise RuntimeError("episode is over (truncated); call reset() before step()")
        a = check_finite_action(action)
        if a.shape != self.action_space.shape:
            raise ValueError(f"action must have shape {self.action_space.shape}, got {a.shape}")
        np.clip(a, -1.0, 1.0, out=self._ctrl)
        self._apply_action(self._ctrl)
        m, d = self.model, self.data
        for _ in range(self.n_substeps):
            mujoco.mj_step(m, d)
        mujoco.mj_kinematics(m, d)  # positions of the post-step state (mj_step leaves them one substep old)

        self._t += 1
        if self.camera_mode == "moving":
            self._pose = self._rig.step()
            self._viewpoint = self._pose.viewpoint()
        info = self._info()
        reward = self._reward(info["distance"])
        truncated = self._truncates()
        self._done = truncated
        return self._observation(), reward, False, truncated, info

    # ------------------------------------------------------------------ task hooks (v1 overrides)
    def _n_actions(self) -> int:
        """Length of the action vector: all 9 joints."""
        return jm.N_JOINTS

    def _sample_target(self, rng: np.random.Generator) -> np.ndarray:
        """The episode's target centre: anywhere on the workspace annulus around the base."""
        return jm.sample_target(rng)

    def _sample_qpos(self, rng: np.random.Generator) -> np.ndarray:
        """The start pose (leaves ``data`` there): around the home pose, any base yaw."""
        return jm.sample_qpos(rng, self.model, self.data, jm.HOME_QPOS, jm.START_NOISE)

    def _apply_action(self, action: np.ndarray) -> None:
        """Write a clipped action in ``[-1, 1]`` to the velocity servos."""
        np.multiply(action, jm.MAX_JOINT_SPEED, out=self.data.ctrl)

    def _reward(self, distance: float) -> float:
        return reach_reward(distance, jm.TARGET_RADIUS, self.reward_margin)

    def _truncates(self) -> bool:
        """Whether the episode ends (truncated) after the step just taken."""
        return self._t >= self.episode_length

    # ------------------------------------------------------------------ helpers
    def _info(self) -> dict[str, Any]:
        diff = self._target - self._hand
        distance = float(np.sqrt(diff @ diff))
        success = distance <= jm.TARGET_RADIUS
        # "is_success" is SB3's key; "success" is kept as an alias for v0 users.
        info = {"viewpoint": self._viewpoint.copy(), "distance": distance, "is_success": success, "success": success}
        if self._pair is not None:
            info["paired_pixels"] = format_image(self._pair.render(self.data, self._pose), self.channel_order)
        return info

    def _pixels(self) -> np.ndarray:
        image = camera_effects(self._render_frame(), self.domain, self._noise_rng)
        return format_image(image, self.channel_order)

    def state(self) -> np.ndarray:
        """The oracle state vector (float32 [27]; layout in the class docstring)."""
        d = self.data
        out = np.empty(STATE_DIM, dtype=np.float32)
        n = jm.N_JOINTS
        out[:n] = d.qpos[:n]
        out[n : 2 * n] = d.qvel[:n]
        out[2 * n : 2 * n + 3] = self._hand
        out[2 * n + 3 : 2 * n + 6] = self._target
        out[2 * n + 6 :] = self._target - self._hand
        return out

    def _observation(self):
        if self.obs_mode == "state":
            return self.state()
        if self.obs_mode == "pixels":
            return self._pixels()
        return {"pixels": self._pixels(), "viewpoint": self._viewpoint.copy()}


class _PairedView:
    """The same physical state rendered in another domain (``paired_domain=``): evaluation pairs.

    Holds its own compiled model in that domain. :meth:`render` copies the positions of the
    env's ``data`` (joints and the target) into its own data and renders them from the env's
    camera pose, with the paired domain's camera effects and its own noise generator, so the
    env's observations and random draws are the same with and without pairing.
    """

    def __init__(self, domain: str | Domain, room: bool, target_marker: bool, size: int) -> None:
        self._fixed = resolve_domain(domain)
        self.domain: Domain = self._fixed or DOMAINS["sim"]
        self.model = jm.build_model(self.domain, room=room, target_marker=target_marker)
        self.data = mujoco.MjData(self.model)
        self._ids = jm.JacoIds(self.model)
        self._base_fovy = float(self.model.vis.global_.fovy)
        self._size = size
        self._noise_rng = np.random.default_rng(0)
        self.renderer: OffscreenRenderer | None = None

    def reset(self, domain_rng: np.random.Generator, noise_rng: np.random.Generator) -> None:
        """Draw this episode's appearance in the paired domain."""
        if self._fixed is None:
            self.domain = random_domain(domain_rng)
            offset = 0.0
        else:
            self.domain, offset = episode_appearance(self._fixed, domain_rng)
        jm.apply_domain(self.model, self.domain, self._ids)
        self.model.vis.global_.fovy = self._base_fovy + offset
        self._noise_rng = noise_rng

    def render(self, data: mujoco.MjData, pose: CameraPose) -> np.ndarray:
        """uint8 ``[size, size, 3]`` image of ``data``'s state in the paired domain."""
        self.data.qpos[:] = data.qpos
        self.data.mocap_pos[:] = data.mocap_pos
        self.data.mocap_quat[:] = data.mocap_quat
        mujoco.mj_forward(self.model, self.data)  # positions and the light's direction
        if self.renderer is None:
            self.renderer = OffscreenRenderer(self.model, self._size, self._size)
        return camera_effects(self.renderer.render(self.data, pose), self.domain, self._noise_rng)

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()
            self.renderer = None

    def without_renderer(self) -> _PairedView:
        """A shallow copy without the GL context (for pickling)."""
        clone = object.__new__(_PairedView)
        clone.__dict__.update(self.__dict__)
        clone.renderer = None
        return clone
