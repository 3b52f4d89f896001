"""Camera poses: the one place where the toolkit's viewpoint conventions are defined.

Conventions (world frame: z up, metres, radians):

* A camera pose is its position ``(x, y, z)`` plus ``yaw`` and ``pitch`` of its viewing
  direction ``f = (cos(pitch) cos(yaw), cos(pitch) sin(yaw), sin(pitch))``. ``yaw`` is measured
  counter-clockwise from +x in the ground plane, wrapped to ``[-pi, pi)``; ``pitch`` is positive
  when looking up, in ``(-pi/2, pi/2)``. There is no roll. This is the 5-d *viewpoint* that
  DeepMind's gqn-datasets store (``cameras``: x, y, z, yaw, pitch).
* The 7-d network input ("viewpoint7") is, by default, the order of the common public GQN ports:
  ``(x, y, z, cos yaw, sin yaw, cos pitch, sin pitch)`` (``order="ports"``). DeepMind's own reader
  uses ``(x, y, z, sin yaw, cos yaw, sin pitch, cos pitch)`` (``order="deepmind"``).
* The camera frame follows OpenGL/MuJoCo: camera x points right, y up, and the camera looks
  along its -z axis. :func:`pose_matrix` returns the 4x4 camera-to-world transform and
  :func:`relative_transform` the transform of camera b expressed in camera a's frame.

MuJoCo's free camera uses the same angles: ``azimuth = yaw`` and ``elevation = pitch`` (in
degrees), with ``lookat = position + distance * f``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

ViewpointOrder = Literal["ports", "deepmind"]
VIEWPOINT_ORDERS: tuple[str, ...] = ("ports", "deepmind")

#: Largest |pitch| a camera may take; beyond it the no-roll frame becomes ill-defined.
MAX_PITCH = np.deg2rad(85.0)


def wrap_angle(angle: float | np.ndarray) -> float | np.ndarray:
    """Wrap an angle (radians) to ``[-pi, pi)``."""
    return (np.asarray(angle) + np.pi) % (2.0 * np.pi) - np.pi


def forward_vector(yaw: float, pitch: float) -> np.ndarray:
    """Unit viewing direction of a camera with the given yaw and pitch (radians)."""
    cp = np.cos(pitch)
    return np.array([cp * np.cos(yaw), cp * np.sin(yaw), np.sin(pitch)], dtype=np.float64)


@dataclass(frozen=True)
class CameraPose:
    """Position (metres) and viewing angles (radians) of a roll-free camera."""

    position: tuple[float, float, float]
    yaw: float
    pitch: float

    @classmethod
    def look_at(cls, eye: np.ndarray, target: np.ndarray) -> CameraPose:
        """The pose of a camera at ``eye`` looking at ``target``."""
        eye = np.asarray(eye, dtype=np.float64)
        d = np.asarray(target, dtype=np.float64) - eye
        n = float(np.linalg.norm(d))
        if n < 1e-9:
            raise ValueError("look_at: eye and target coincide")
        d /= n
        yaw = float(np.arctan2(d[1], d[0]))
        pitch = float(np.clip(np.arcsin(np.clip(d[2], -1.0, 1.0)), -MAX_PITCH, MAX_PITCH))
        return cls(tuple(float(v) for v in eye), float(wrap_angle(yaw)), pitch)

    @classmethod
    def from_viewpoint(cls, viewpoint: np.ndarray) -> CameraPose:
        """Inverse of :meth:`viewpoint`."""
        v = np.asarray(viewpoint, dtype=np.float64).reshape(-1)
        if v.shape != (5,):
            raise ValueError(f"viewpoint must have 5 values (x, y, z, yaw, pitch), got shape {v.shape}")
        return cls((float(v[0]), float(v[1]), float(v[2])), float(v[3]), float(v[4]))

    @property
    def forward(self) -> np.ndarray:
        """Unit viewing direction."""
        return forward_vector(self.yaw, self.pitch)

    def viewpoint(self) -> np.ndarray:
        """The 5-d GQN viewpoint ``(x, y, z, yaw, pitch)`` as float32."""
        return np.array([*self.position, self.yaw, self.pitch], dtype=np.float32)

    def apply_to(self, mjv_camera, distance: float = 1.0) -> None:
        """Point a MuJoCo ``MjvCamera`` (free type) at this pose."""
        import mujoco  # local: keeps this module importable without MuJoCo

        mjv_camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        mjv_camera.lookat[:] = np.asarray(self.position) + distance * self.forward
        mjv_camera.distance = distance
        mjv_camera.azimuth = float(np.rad2deg(self.yaw))
        mjv_camera.elevation = float(np.rad2deg(self.pitch))


def viewpoint7(viewpoint: np.ndarray, order: ViewpointOrder = "ports") -> np.ndarray:
    """Map 5-d viewpoints ``[..., 5]`` to the 7-d network input ``[..., 7]`` (see module doc)."""
    v = np.asarray(viewpoint, dtype=np.float32)
    if v.shape[-1] != 5:
        raise ValueError(f"viewpoint7 expects a last dimension of 5 (x, y, z, yaw, pitch), got {v.shape}")
    pos, yaw, pitch = v[..., :3], v[..., 3:4], v[..., 4:5]
    if order == "ports":
        trig = [np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)]
    elif order == "deepmind":
        trig = [np.sin(yaw), np.cos(yaw), np.sin(pitch), np.cos(pitch)]
    else:
        raise ValueError(f"unknown viewpoint order {order!r}; valid: {', '.join(VIEWPOINT_ORDERS)}")
    return np.concatenate([pos, *trig], axis=-1).astype(np.float32)


def viewpoint5_from7(viewpoint: np.ndarray, order: ViewpointOrder = "ports") -> np.ndarray:
    """Inverse of :func:`viewpoint7`."""
    v = np.asarray(viewpoint, dtype=np.float32)
    if v.shape[-1] != 7:
        raise ValueError(f"expected a last dimension of 7, got {v.shape}")
    if order == "ports":
        cy, sy, cp, sp = (v[..., i] for i in range(3, 7))
    elif order == "deepmind":
        sy, cy, sp, cp = (v[..., i] for i in range(3, 7))
    else:
        raise ValueError(f"unknown viewpoint order {order!r}; valid: {', '.join(VIEWPOINT_ORDERS)}")
    yaw, pitch = np.arctan2(sy, cy), np.arctan2(sp, cp)
    return np.concatenate([v[..., :3], yaw[..., None], pitch[..., None]], axis=-1).astype(np.float32)


def pose_matrix(viewpoint: np.ndarray) -> np.ndarray:
    """Camera-to-world 4x4 transforms ``[..., 4, 4]`` of 5-d viewpoints ``[..., 5]``.

    Columns of the rotation are the camera's right (x), up (y) and backward (z) axes.
    """
    v = np.asarray(viewpoint, dtype=np.float64)
    yaw, pitch = v[..., 3], v[..., 4]
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    fwd = np.stack([cp * cy, cp * sy, sp], axis=-1)
    right = np.stack([sy, -cy, np.zeros_like(cy)], axis=-1)
    up = np.cross(right, fwd)
    out = np.zeros(v.shape[:-1] + (4, 4), dtype=np.float64)
    out[..., :3, 0] = right
    out[..., :3, 1] = up
    out[..., :3, 2] = -fwd
    out[..., :3, 3] = v[..., :3]
    out[..., 3, 3] = 1.0
    return out


def relative_transform(viewpoint_a: np.ndarray, viewpoint_b: np.ndarray) -> np.ndarray:
    """Pose of camera b in camera a's frame: ``inv(T_a) @ T_b`` (float32, ``[..., 4, 4]``)."""
    ta, tb = pose_matrix(viewpoint_a), pose_matrix(viewpoint_b)
    rot_a = ta[..., :3, :3]
    inv = np.zeros_like(ta)
    inv[..., :3, :3] = np.swapaxes(rot_a, -1, -2)
    inv[..., :3, 3] = -np.einsum("...ji,...j->...i", rot_a, ta[..., :3, 3])
    inv[..., 3, 3] = 1.0
    return (inv @ tb).astype(np.float32)


@dataclass
class OrbitRigConfig:
    """Ranges and smoothness of a camera orbiting a centre point while looking at it."""

    centre: tuple[float, float, float] = (0.0, 0.0, 0.3)
    """Point the camera always looks at (metres)."""
    radius: tuple[float, float] = (1.2, 1.8)
    """Allowed distance from the centre (metres)."""
    elevation: tuple[float, float] = (np.deg2rad(15.0), np.deg2rad(60.0))
    """Allowed elevation of the camera above the centre (radians)."""
    yaw_speed: float = 0.06
    """Typical azimuth change per step (radians) of the moving trajectory."""
    elevation_speed: float = 0.02
    """Typical elevation change per step (radians)."""
    radius_speed: float = 0.01
    """Typical radius change per step (metres)."""
    smoothness: float = 0.9
    """Velocity persistence in [0, 1): higher gives smoother, slower-turning trajectories."""


class OrbitRig:
    """A camera on a sphere shell around a centre, looking at it.

    ``reset(rng, randomise=True)`` draws a random start; ``step()`` moves it along a smooth random
    trajectory (velocities follow a mean-reverting random walk; angles bounce off the ranges).
    Everything random comes from the generator given to ``reset``, so trajectories are
    reproducible from the environment's seed.
    """

    def __init__(self, config: OrbitRigConfig | None = None) -> None:
        self.config = config or OrbitRigConfig()
        c = self.config
        self.azimuth = 0.0
        self.elev = float(np.mean(c.elevation))
        self.radius = float(np.mean(c.radius))
        self._vel = np.zeros(3)
        self._rng = np.random.default_rng(0)

    def reset(self, rng: np.random.Generator, randomise: bool = True, azimuth: float | None = None) -> CameraPose:
        """Place the camera (random if ``randomise``) and zero its velocity."""
        c = self.config
        self._rng = rng
        if randomise:
            self.azimuth = float(rng.uniform(-np.pi, np.pi))
            self.elev = float(rng.uniform(*c.elevation))
            self.radius = float(rng.uniform(*c.radius))
        else:
            self.azimuth = 0.0 if azimuth is None else float(azimuth)
            self.elev = float(np.mean(c.elevation))
            self.radius = float(np.mean(c.radius))
        if azimuth is not None:
            self.azimuth = float(azimuth)
        speeds = np.array([c.yaw_speed, c.elevation_speed, c.radius_speed])
        self._vel = rng.normal(0.0, 1.0, 3) * speeds
        # Keep a non-trivial azimuth speed so a moving camera always moves.
        self._vel[0] = np.sign(self._vel[0] or 1.0) * max(abs(self._vel[0]), 0.5 * c.yaw_speed)
        return self.pose()

    def step(self) -> CameraPose:
        """Advance the moving trajectory by one step and return the new pose."""
        c = self.config
        a = c.smoothness
        speeds = np.array([c.yaw_speed, c.elevation_speed, c.radius_speed])
        noise = self._rng.normal(0.0, 1.0, 3) * speeds * np.sqrt(1.0 - a * a)
        self._vel = a * self._vel + noise
        self._vel[0] = np.sign(self._vel[0] or 1.0) * max(abs(self._vel[0]), 0.25 * c.yaw_speed)
        self.azimuth = float(wrap_angle(self.azimuth + self._vel[0]))
        self.elev, self._vel[1] = _bounce(self.elev + self._vel[1], self._vel[1], *c.elevation)
        self.radius, self._vel[2] = _bounce(self.radius + self._vel[2], self._vel[2], *c.radius)
        return self.pose()

    def pose(self) -> CameraPose:
        """Current pose (looking at the centre)."""
        centre = np.asarray(self.config.centre, dtype=np.float64)
        eye = centre + self.radius * forward_vector(self.azimuth, self.elev)
        return CameraPose.look_at(eye, centre)


def _bounce(x: float, v: float, lo: float, hi: float) -> tuple[float, float]:
    """Reflect ``x`` into ``[lo, hi]``, flipping the velocity when it hits a bound."""
    if x < lo:
        return float(min(2 * lo - x, hi)), -v
    if x > hi:
        return float(max(2 * hi - x, lo)), -v
    return float(x), v
