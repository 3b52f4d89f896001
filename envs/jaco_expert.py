"""A scripted expert for the Jaco reach tasks: damped-least-squares inverse kinematics.

The expert reads the arm's physical state (privileged: it works whatever the observation mode)
and commands the joint velocities that move the hand straight towards the target:

    dq = J^T (J J^T + lambda^2 I)^-1 v + (I - J^+ J) k_posture (q_home - q),   v = k (target - hand)

with ``J`` the 3 x 6 position Jacobian of the hand site over the arm joints. The null-space term
keeps the redundant joints near a comfortable posture, away from their limits. ``dq`` is scaled
down as a whole (direction kept) so that no joint exceeds its top speed, then expressed as an
action in ``[-1, 1]``. It is the normalisation reference of the toolkit's studies (score 1 = the
expert's mean return over the evaluation episodes).
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np

from envs.jaco import JacoReachEnv


class JacoReachExpert:
    """Reaching policy for ``wm/JacoReach-v1`` (and v0) computed from the env's physics.

    Args:
        env: the environment (any wrapper around a :class:`envs.jaco.JacoReachEnv`).
        gain: hand velocity per metre of error (1/s).
        damping: lambda of the damped least squares (m); larger is smoother near singularities.
        posture_gain: pull of the redundant joints towards the home pose (1/s).

    Call :meth:`act` for the action of the env's current state, or use :meth:`predict` like an
    SB3 model (the observation is ignored; the env is read directly).
    """

    def __init__(self, env: Any, gain: float = 6.0, damping: float = 0.04, posture_gain: float = 0.5) -> None:
        base = getattr(env, "unwrapped", env)
        if not isinstance(base, JacoReachEnv):
            raise TypeError(f"JacoReachExpert needs a JacoReach env, got {type(base).__name__}")
        if gain <= 0 or damping <= 0 or posture_gain < 0:
            raise ValueError(
                f"gain and damping must be > 0 and posture_gain >= 0, got {gain}, {damping}, {posture_gain}"
            )
        self.env = base
        self.gain, self.damping, self.posture_gain = float(gain), float(damping), float(posture_gain)
        self._jacp = np.zeros((3, base.model.nv))
        from envs.jaco_model import HOME_QPOS as HOME_V0
        from envs.jaco_v1 import HOME_QPOS as HOME_V1
        from envs.jaco_v1 import JacoReachV1Env

        self._v1 = isinstance(base, JacoReachV1Env)
        self._home = (HOME_V1 if self._v1 else HOME_V0)[:6].copy()

    def _speeds(self) -> np.ndarray:
        speeds = getattr(self.env, "_speeds", None)
        if speeds is None:
            from envs.jaco_model import MAX_JOINT_SPEED

            speeds = MAX_JOINT_SPEED
        return np.asarray(speeds[: self.env.action_space.shape[0]], dtype=np.float64)

    def act(self) -> np.ndarray:
        """The action (float32, the env's action shape) for the env's current state."""
        e = self.env
        mujoco.mj_jacSite(e.model, e.data, self._jacp, None, e._ids.hand_site)
        jac = self._jacp[:, :6]
        v = self.gain * (e.target_position - e.hand_position)
        jjt = jac @ jac.T + self.damping**2 * np.eye(3)
        dq = jac.T @ np.linalg.solve(jjt, v)
        if self.posture_gain > 0:
            home = self._home.copy()
            q = e.data.qpos[:6].copy()
            if not self._v1:
                home[0] = q[0]  # v0's targets lie all around the base: no preferred yaw
            pinv = jac.T @ np.linalg.inv(jjt)
            null = np.eye(6) - pinv @ jac
            dq = dq + null @ (self.posture_gain * (home - q))
        speeds = self._speeds()
        action = np.zeros(speeds.shape[0], dtype=np.float64)
        scale = np.max(np.abs(dq) / speeds[:6])
        action[:6] = dq / speeds[:6] / max(1.0, scale)
        return action.astype(np.float32)

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, None]:
        """SB3-style ``(action, state)``; the observation is not used (the expert reads the env)."""
        return self.act(), None


def zero_action(env: Any) -> np.ndarray:
    """The zero action of ``env`` (holds the pose: the arm is gravity-compensated)."""
    return np.zeros(env.action_space.shape, dtype=env.action_space.dtype)
