"""Frames and ground-truth state quantities for state probes, from many short env rollouts.

:func:`collect_probe_frames` runs ``episodes`` short random-action rollouts of an environment
with pixel observations and records every ``frame_skip``-th frame with its camera viewpoint, the
episode it came from (probes split train and test by episode: frames of one episode share a
target, so a frame split leaks) and the state quantities of :data:`QUANTITIES` at that frame.
Optionally each record also holds the ``context`` frames just before it in the same episode
(consecutive steps, as the agents' ``context_views`` window sees them), for features that
aggregate several views as a GQN's ``r = sum_k psi(x_k, v_k)`` does.

Episode ``e`` is reset with seed ``seed + e`` and its actions come from a generator seeded with
``(seed, e)``, so the collection is a deterministic function of the arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _jaco_quantities(env: Any) -> dict[str, np.ndarray]:
    hand, target = env.hand_position, env.target_position
    return {
        "hand": hand,
        "target": target,
        "target-hand": target - hand,
        "joints": np.asarray(env.data.qpos[:6], dtype=np.float64).copy(),
    }


#: Environment id -> function of the unwrapped env giving ``{quantity: float array [d]}`` (world frame).
QUANTITIES: dict[str, Callable[[Any], dict[str, np.ndarray]]] = {
    "wm/JacoReach-v1": _jaco_quantities,
    "wm/JacoReach-v0": _jaco_quantities,
}

#: Camera modes of the rollouts.
PROBE_CAMERAS: tuple[str, ...] = ("fixed", "random", "moving")


@dataclass
class ProbeFrames:
    """Recorded frames: ``N`` records from ``episodes`` rollouts."""

    frames: np.ndarray
    """uint8 ``[N, H, W, 3]``: the frame of each record."""
    viewpoints: np.ndarray
    """float32 ``[N, 5]``: its camera viewpoint (x, y, z, yaw, pitch)."""
    episodes: np.ndarray
    """int64 ``[N]``: the rollout each record comes from (the probes' split groups)."""
    quantities: dict[str, np.ndarray]
    """``{name: float64 [N, d]}``: ground truth at each record."""
    context_frames: np.ndarray | None = None
    """uint8 ``[N, C, H, W, 3]``: the ``C`` earlier frames of the same episode (oldest first), or None."""
    context_viewpoints: np.ndarray | None = None
    """float32 ``[N, C, 5]``: their viewpoints, or None."""
    info: dict[str, Any] = field(default_factory=dict)
    """How the frames were collected (env id, camera, size, episodes, seed, ...)."""

    def __len__(self) -> int:
        return int(self.frames.shape[0])


def collect_probe_frames(
    env_id: str,
    camera: str = "moving",
    size: int = 32,
    episodes: int = 600,
    steps: int = 20,
    frame_skip: int = 4,
    context: int = 0,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
) -> ProbeFrames:
    """Roll out ``episodes`` random-action episodes of ``steps`` steps and record frames.

    Args:
        env_id: a registered id with ground-truth quantities (keys of :data:`QUANTITIES`).
        camera: ``"fixed"``, ``"random"`` or ``"moving"``.
        size: image side in pixels (the encoder's training size).
        episodes: number of rollouts (distinct targets).
        steps: env steps per rollout.
        frame_skip: a record every this many steps, starting at step ``context`` (so every
            record has its earlier views; step 0 when ``context`` is 0).
        context: frames of the ``context`` steps just before each record, same episode (0: none).
        seed: base seed (episode ``e`` resets with ``seed + e``).
        env_kwargs: other keyword arguments of ``gym.make``.
        progress: show a progress bar.
    """
    import gymnasium as gym
    from tqdm.auto import tqdm

    import envs  # noqa: F401  (registers the wm/ environments)

    if env_id not in QUANTITIES:
        raise ValueError(f"no probe quantities for env {env_id!r}; valid values: {', '.join(map(repr, QUANTITIES))}")
    if camera not in PROBE_CAMERAS:
        raise ValueError(f"camera must be one of {PROBE_CAMERAS}, got {camera!r}")
    checks = (("episodes", episodes, 1), ("steps", steps, 1), ("frame_skip", frame_skip, 1), ("context", context, 0))
    for name, value, low in checks:
        if int(value) < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    first = int(context)
    if first > steps:
        raise ValueError(f"context = {context} exceeds steps = {steps}: no record would have its context")
    env = gym.make(env_id, camera=camera, obs="pixels", size=size, **(env_kwargs or {}))
    quantities_of = QUANTITIES[env_id]
    frames, views, groups, ctx_f, ctx_v = [], [], [], [], []
    values: dict[str, list[np.ndarray]] = {}
    try:
        for e in tqdm(range(episodes), desc=f"probe rollouts ({env_id}, {camera} camera)", disable=not progress):
            rng = np.random.default_rng([seed, e])
            obs, info = env.reset(seed=seed + e)
            history_f, history_v = [obs], [info["viewpoint"]]
            for t in range(steps + 1):
                if t > 0:
                    obs, _, terminated, truncated, info = env.step(
                        rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
                    )
                    history_f.append(obs)
                    history_v.append(info["viewpoint"])
                if t >= first and (t - first) % frame_skip == 0:
                    frames.append(obs)
                    views.append(info["viewpoint"])
                    groups.append(e)
                    for k, v in quantities_of(env.unwrapped).items():
                        values.setdefault(k, []).append(np.asarray(v, dtype=np.float64))
                    if context:
                        idx = [t - j for j in range(context, 0, -1)]
                        ctx_f.append(np.stack([history_f[i] for i in idx]))
                        ctx_v.append(np.stack([history_v[i] for i in idx]))
                if t > 0 and (terminated or truncated):
                    break
    finally:
        env.close()
    return ProbeFrames(
        frames=np.stack(frames).astype(np.uint8),
        viewpoints=np.stack(views).astype(np.float32),
        episodes=np.asarray(groups, dtype=np.int64),
        quantities={k: np.stack(v) for k, v in values.items()},
        context_frames=np.stack(ctx_f).astype(np.uint8) if context else None,
        context_viewpoints=np.stack(ctx_v).astype(np.float32) if context else None,
        info={
            "env_id": env_id,
            "camera": camera,
            "size": size,
            "episodes": episodes,
            "steps": steps,
            "frame_skip": frame_skip,
            "context": context,
            "seed": seed,
            "policy": "uniform random actions",
        },
    )
