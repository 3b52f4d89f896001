"""``wm/JacoReach-v1``: the Jaco-style arm reaching a target in front of it, inside a room.

v1 is the task the toolkit's agent studies run on. It changes v0's semantics (Gymnasium's rule
for a new version), in the spirit of DeepMind Control's manipulation reach: target and hand
start in a box in front of the arm, arm-only velocity actions, sin/cos joint angles in the state,
a tolerance reward whose tail gives signal across the whole workspace, and a scripted expert
(:class:`envs.jaco_expert.JacoReachExpert`) that fixes the 1.0 of normalised scores. v0 stays
registered, unchanged, for the datasets and results made with it.
"""

from __future__ import annotations

import numpy as np

from envs import jaco_model as jm
from envs.camera import OrbitRigConfig
from envs.domain import Domain
from envs.jaco import JacoReachEnv

#: Target centres are uniform in this box (metres, world frame; the arm's base axis is x = y = 0,
#: its front is +x): 40 x 40 x 38 cm like DeepMind Control's reach, every point reachable.
TARGET_BOX = np.array([[0.2, 0.6], [-0.2, 0.2], [0.12, 0.5]], dtype=np.float64)

#: The hand starts inside this box (the target box grown by 5 cm, floor side excepted).
START_BOX = TARGET_BOX + np.array([[-0.05, 0.05], [-0.05, 0.05], [0.0, 0.05]])

#: Start poses are drawn uniformly around this one (hand near the box centre) ...
HOME_QPOS = np.array([0.0, 0.3, 1.6, 0.0, 1.0, 0.0, 0.3, 0.3, 0.3], dtype=np.float64)
#: ... within these half-ranges (radians), then kept if the hand lies in :data:`START_BOX`.
START_SPREAD = np.array([0.6, 0.35, 0.45, 0.6, 0.5, 1.0, 0.0, 0.0, 0.0], dtype=np.float64)

#: The hand starts at least this far (m) from the target centre, so no episode starts solved.
START_MIN_DISTANCE = 0.2

#: Top speed (rad/s) an action of +-1 requests, for the 6 arm joints and the 3 fingers.
ARM_SPEED = 1.0
FINGER_SPEED = 2.0

#: Default episode length: 100 control steps of 0.04 s (4 s; the expert needs ~1 s to reach).
EPISODE_STEPS = 100

#: Distance beyond the target radius (m) at which the reward's long tail equals 0.1.
REWARD_MARGIN = 0.25
_VALUE_AT_MARGIN = 0.1
_LONG_TAIL_SCALE = float(np.sqrt(1.0 / _VALUE_AT_MARGIN - 1.0))

#: Camera orbit: centred over the workspace, close enough that the 5 cm target spans ~5 px at
#: 64 px, wide enough that the whole arm stays in view (clipping measured by ``wm envs stats``).
ORBIT_V1 = OrbitRigConfig(
    centre=(0.2, 0.0, 0.35),
    radius=(1.3, 1.7),
    elevation=(np.deg2rad(15.0), np.deg2rad(50.0)),
    yaw_speed=0.04,
    elevation_speed=0.012,
    radius_speed=0.008,
    smoothness=0.9,
)
#: Azimuth of the fixed camera: in front of the arm, to its left.
FIXED_AZIMUTH_V1 = float(np.deg2rad(-40.0))

#: Length of the state vector without / with the fingers.
STATE_DIM_V1 = 27
STATE_DIM_V1_FINGERS = 33


def long_tail_reward(distance: float, radius: float = jm.TARGET_RADIUS, margin: float = REWARD_MARGIN) -> float:
    """1 within ``radius``, else ``1 / (1 + (3 (distance - radius) / margin)^2)``.

    DeepMind Control's ``tolerance(..., sigmoid="long_tail", value_at_margin=0.1)``: 0.1 at
    ``radius + margin``, 0.03 at 0.5 m and still sloped at 1 m, so every start in the workspace
    gets a gradient towards the target, while the top of the reward needs the 5 cm sphere.
    """
    if distance <= radius:
        return 1.0
    x = (distance - radius) / margin * _LONG_TAIL_SCALE
    return float(1.0 / (1.0 + x * x))


class JacoReachV1Env(JacoReachEnv):
    """Reach a sphere placed in front of a 6-joint Jaco-style arm, in a room (``wm/JacoReach-v1``).

    The arm of v0 (:mod:`envs.jaco_model`: 6 arm hinges and a 3-finger hand, velocity servos,
    gravity compensation) stands in a walled room. At every reset the target (radius 5 cm) is
    drawn uniformly in :data:`TARGET_BOX` (x 0.2-0.6 m in front of the base, y +-0.2 m, z
    0.12-0.5 m) and the arm starts from a random pose around :data:`HOME_QPOS` whose hand lies
    in :data:`START_BOX`, at least 20 cm from the target (no episode starts solved).

    **Action space**: ``Box(-1, 1, (6,), float32)``: velocity commands of the arm joints (base
    yaw, shoulder, elbow, forearm roll, wrist pitch, hand roll); +-1 requests 1 rad/s. With
    ``fingers=True``: ``(9,)``, the 3 finger joints last (+-1 = 2 rad/s). Without, the fingers
    hold their start angle. Out-of-range actions are clipped; NaN/inf or a wrong shape raise.

    **Observation space** (``obs=``): ``"pixels"`` / ``"pixels+viewpoint"`` as v0;
    ``"state"``: ``Box(-inf, inf, (27,), float32)``: sin of the 6 arm angles, their cos, the 6
    arm joint velocities (rad/s), hand position (3, m), target position (3, m), target - hand
    (3, m); with ``fingers=True`` (33,): the 3 finger angles (rad) and velocities appended.

    **Reward**: :func:`long_tail_reward` of the hand-target distance: 1 within 5 cm, 0.1 at
    30 cm, always in ``(0, 1]``. A return of ``max_episode_steps`` is the ceiling; the normalised
    score of the toolkit's studies puts the scripted expert at 1 and the zero-action policy at 0.

    **Episode end**: never terminates; truncated after ``max_episode_steps`` (registered: 100
    steps = 4 s) by Gymnasium's ``TimeLimit``: change it with ``gym.make(..., max_episode_steps=N)``.
    Constructed directly (no ``gym.make``), the env truncates itself after 100 steps and raises
    ``RuntimeError`` if stepped past that.

    **Camera**: ``fixed`` / ``random`` / ``moving`` as v0, on :data:`ORBIT_V1` (centred over the
    workspace, 1.3-1.7 m away, elevation 15-50 deg), always inside the room. Default ``"fixed"``
    (as v0; ``wm/Maze-v0`` defaults to its first-person ``"moving"`` eye).

    **Target marker** (``target_marker=True``, off by default): a flat disc on the floor under the
    target, a darker shade of its colour, moved with it; visual only. One view of a floating sphere
    does not tell how far along the line of sight it is (a probe given the exact image position of
    the target and the camera pose recovers its world position with R² ~0.68, docs/probe.md); the
    marker shows where on the floor it stands, as a drop shadow under an overhead light would.

    **Info**: ``"is_success"`` (SB3's key; ``"success"`` is an alias), ``"distance"``,
    ``"viewpoint"``; after reset ``"domain"``. Reset options, domains, seeding, rendering and
    pickling: as v0 (:class:`envs.jaco.JacoReachEnv`).
    """

    _room = True
    _orbit = ORBIT_V1
    _fixed_azimuth = FIXED_AZIMUTH_V1

    def __init__(
        self,
        camera: str = "fixed",
        obs: str = "pixels",
        size: int = 64,
        channel_order: str = "last",
        domain: str | Domain = "sim",
        render_mode: str | None = None,
        render_size: int | None = None,
        fingers: bool = False,
        target_marker: bool = False,
        paired_domain: str | Domain | None = None,
    ) -> None:
        self.fingers = bool(fingers)
        self._state_dim = STATE_DIM_V1_FINGERS if self.fingers else STATE_DIM_V1
        self._speeds = np.array([ARM_SPEED] * 6 + [FINGER_SPEED] * 3, dtype=np.float64)
        super().__init__(
            camera=camera,
            obs=obs,
            size=size,
            channel_order=channel_order,
            domain=domain,
            render_mode=render_mode,
            render_size=render_size,
            episode_length=EPISODE_STEPS,
            reward_margin=REWARD_MARGIN,
            target_marker=target_marker,
            paired_domain=paired_domain,
        )

    def _truncates(self) -> bool:
        # Made by gym.make (a spec is set): the TimeLimit wrapper (max_episode_steps) is the one
        # source of truth for the episode length. Constructed directly: EPISODE_STEPS.
        return self.spec is None and self._t >= EPISODE_STEPS

    # ------------------------------------------------------------------ task hooks
    def _n_actions(self) -> int:
        return jm.N_JOINTS if self.fingers else len(jm.ARM_JOINTS)

    def _sample_target(self, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(TARGET_BOX[:, 0], TARGET_BOX[:, 1])

    def _sample_qpos(self, rng: np.random.Generator) -> np.ndarray:
        return sample_start_qpos(
            rng, self.model, self.data, self._ids, target=self.data.mocap_pos[self._ids.target_mocap]
        )

    def _apply_action(self, action: np.ndarray) -> None:
        n = action.shape[0]
        self.data.ctrl[:n] = action * self._speeds[:n]
        self.data.ctrl[n:] = 0.0

    def _reward(self, distance: float) -> float:
        return long_tail_reward(distance)

    def state(self) -> np.ndarray:
        """The state vector (float32 [27], or [33] with fingers; layout in the class docstring)."""
        d = self.data
        q, qd = d.qpos[:6], d.qvel[:6]
        parts = [np.sin(q), np.cos(q), qd, self._hand, self._target, self._target - self._hand]
        if self.fingers:
            parts += [d.qpos[6:9], d.qvel[6:9]]
        return np.concatenate(parts).astype(np.float32)


def sample_start_qpos(
    rng: np.random.Generator, model, data, ids: jm.JacoIds, target: np.ndarray | None = None, max_tries: int = 200
) -> np.ndarray:
    """A start pose around :data:`HOME_QPOS` without floor contact, with the hand in :data:`START_BOX`
    and (when ``target`` is given) at least :data:`START_MIN_DISTANCE` from it.

    Leaves ``data`` at the returned pose (``qvel`` zero, ``mj_forward`` done). Falls back to
    the home pose (hand at about (0.46, 0, 0.35)) after ``max_tries`` rejections, which the
    default spreads make vanishingly rare. The number of draws depends only on the rng.
    """
    import mujoco

    lo = np.maximum(jm.JOINT_RANGES[:, 0], HOME_QPOS - START_SPREAD)
    hi = np.minimum(jm.JOINT_RANGES[:, 1], HOME_QPOS + START_SPREAD)
    for _ in range(max_tries):
        q = rng.uniform(lo, hi)
        data.qpos[:] = q
        data.qvel[:] = 0.0
        mujoco.mj_forward(model, data)
        hand = data.site_xpos[ids.hand_site]
        far = target is None or np.linalg.norm(np.asarray(target) - hand) >= START_MIN_DISTANCE
        if data.ncon == 0 and far and np.all(hand >= START_BOX[:, 0]) and np.all(hand <= START_BOX[:, 1]):
            return q
    data.qpos[:] = HOME_QPOS
    data.qvel[:] = 0.0
    mujoco.mj_forward(model, data)
    return HOME_QPOS.copy()
