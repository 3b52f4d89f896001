"""What the Jaco cameras see, measured by segmentation rendering (``wm envs stats``).

For every frame of a set of rollouts the scene is rendered once more as a segmentation image
(MuJoCo's per-pixel geom ids) from the observation's camera pose, and three things are read off:

* **arm clipped**: some pixel of the arm (any link, joint or finger geom) lies on the image
  border, i.e. part of the arm is probably outside the frame;
* **target visible**: at least one pixel of the target sphere is visible (not occluded, in frame);
* **target pixels**: how many pixels the target covers.

Rollouts mix the policies an agent study meets: random actions (exploration) and the scripted
expert (a reaching arm), so the fractions describe frames agents actually train on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import mujoco
import numpy as np

from envs.jaco import JacoReachEnv


@dataclass(frozen=True)
class ViewStats:
    """Fractions over all frames of :func:`jaco_view_stats`."""

    frames: int
    """Frames measured."""
    arm_clipped: float
    """Fraction of frames with arm pixels on the image border."""
    target_visible: float
    """Fraction of frames where at least one target pixel is visible."""
    target_pixels_median: float
    """Median target area in pixels over frames where it is visible."""
    arm_pixels_median: float
    """Median arm area in pixels."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields."""
        return asdict(self)


def _arm_geoms(model: mujoco.MjModel) -> np.ndarray:
    """Ids of the geoms of the arm's moving bodies (everything under the ``base`` body)."""
    base = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "base")
    bodies = {base}
    for b in range(model.nbody):  # bodies are ordered parents first
        if int(model.body_parentid[b]) in bodies:
            bodies.add(b)
    return np.array([g for g in range(model.ngeom) if int(model.geom_bodyid[g]) in bodies], dtype=np.int64)


def segment_frame(env: JacoReachEnv, renderer: mujoco.Renderer, arm: np.ndarray) -> tuple[bool, int, int]:
    """(arm clipped, target pixels, arm pixels) of the env's current state and camera pose."""
    camera = mujoco.MjvCamera()
    env._pose.apply_to(camera)
    renderer.update_scene(env.data, camera=camera)
    seg = renderer.render()
    ids = np.where(seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM), seg[..., 0], -1)
    is_arm = np.isin(ids, arm)
    border = np.concatenate([is_arm[0], is_arm[-1], is_arm[:, 0], is_arm[:, -1]])
    return bool(border.any()), int((ids == env._ids.target_geom).sum()), int(is_arm.sum())


def jaco_view_stats(
    env_id: str = "wm/JacoReach-v1",
    camera: str = "moving",
    size: int = 64,
    episodes: int = 20,
    every: int = 4,
    seed: int = 0,
) -> ViewStats:
    """Measure :class:`ViewStats` over ``episodes`` rollouts (half random actions, half the expert).

    Every ``every``-th step of each episode is measured. Deterministic in ``seed``.
    """
    import gymnasium as gym

    from envs.jaco_expert import JacoReachExpert

    if episodes < 1 or every < 1:
        raise ValueError(f"episodes and every must be >= 1, got {episodes} and {every}")
    env = gym.make(env_id, obs="state", camera=camera, size=size)
    base = env.unwrapped
    if not isinstance(base, JacoReachEnv):
        raise ValueError(f"{env_id} is not a JacoReach env")
    renderer = mujoco.Renderer(base.model, size, size)
    renderer.enable_segmentation_rendering()
    arm = _arm_geoms(base.model)
    expert = JacoReachExpert(env)
    rng = np.random.default_rng(seed)
    clipped, visible, target_px, arm_px = [], [], [], []
    try:
        for ep in range(episodes):
            env.reset(seed=seed * 10_000 + ep)
            env.action_space.seed(seed * 10_000 + ep)
            t, done = 0, False
            while not done:
                if t % every == 0:
                    c, tp, ap = segment_frame(base, renderer, arm)
                    clipped.append(c)
                    visible.append(tp > 0)
                    arm_px.append(ap)
                    if tp > 0:
                        target_px.append(tp)
                action = expert.act() if ep % 2 else rng.uniform(-1.0, 1.0, env.action_space.shape).astype(np.float32)
                _, _, terminated, truncated, _ = env.step(action)
                done = terminated or truncated
                t += 1
    finally:
        renderer.close()
        env.close()
    return ViewStats(
        frames=len(clipped),
        arm_clipped=float(np.mean(clipped)),
        target_visible=float(np.mean(visible)),
        target_pixels_median=float(np.median(target_px)) if target_px else 0.0,
        arm_pixels_median=float(np.median(arm_px)),
    )
