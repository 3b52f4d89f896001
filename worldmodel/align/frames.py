"""Frame sets for domain alignment: rollouts of ``wm/JacoReach-v1`` in one domain, optionally paired.

A :class:`FrameSet` holds N frames of short rollouts (uint8 ``[N, H, W, 3]``), their camera
viewpoints ``[N, 5]``, the physical state a probe regresses (hand and target position, ``[N, 6]``),
the episode index of each frame and, when collected with ``paired_domain``, the same states
rendered in the paired domain (``paired``: evaluation only; :func:`worldmodel.align.fit.fit_alignment`
never receives them). Saved as one ``.npz`` of plain arrays (loaded with ``allow_pickle=False``),
written atomically.

Rollouts mix the scripted expert (with Gaussian action noise) and smoothed random actions, so
frames cover both the states a reaching policy visits and the rest of the workspace.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

STATE_NAMES: tuple[str, ...] = (
    "hand_x",
    "hand_y",
    "hand_z",
    "target_x",
    "target_y",
    "target_z",
    *(f"joint_{i}" for i in range(6)),
)
"""Columns of :attr:`FrameSet.states`."""


@dataclass
class FrameSet:
    """Frames of one domain, grouped by episode (see the module doc)."""

    frames: np.ndarray
    """uint8 ``[N, H, W, 3]``."""
    viewpoints: np.ndarray
    """float32 ``[N, 5]`` camera viewpoints (x, y, z, yaw, pitch)."""
    states: np.ndarray
    """float32 ``[N, 12]``: hand and target positions (m) and the 6 arm angles (rad), :data:`STATE_NAMES`."""
    episodes: np.ndarray
    """int64 ``[N]`` episode index of each frame."""
    paired: np.ndarray | None = None
    """uint8 ``[N, H, W, 3]``: the same states in the paired domain (evaluation only), or ``None``."""
    meta: dict[str, Any] = field(default_factory=dict)
    """How the set was made: env, domain, paired domain, seed, episodes, steps."""

    def __post_init__(self) -> None:
        n = len(self.frames)
        if n == 0:
            raise ValueError("a frame set needs at least one frame")
        for name in ("viewpoints", "states", "episodes") + (("paired",) if self.paired is not None else ()):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, frames has {n}")

    def __len__(self) -> int:
        return len(self.frames)

    def subset(self, episodes: np.ndarray) -> FrameSet:
        """The frames of the given episode indices (a split by episode, never by frame)."""
        keep = np.isin(self.episodes, episodes)
        paired = None if self.paired is None else self.paired[keep]
        return FrameSet(
            self.frames[keep], self.viewpoints[keep], self.states[keep], self.episodes[keep], paired, dict(self.meta)
        )

    def without_pairs(self) -> FrameSet:
        """The same set with the paired frames dropped (what training code may see)."""
        return FrameSet(self.frames, self.viewpoints, self.states, self.episodes, None, dict(self.meta))

    def save(self, path: str | Path) -> Path:
        """Write the set to ``path`` (``.npz``) atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = dict(frames=self.frames, viewpoints=self.viewpoints, states=self.states, episodes=self.episodes)
        if self.paired is not None:
            arrays["paired"] = self.paired
        arrays["meta_json"] = np.frombuffer(json.dumps(self.meta).encode(), dtype=np.uint8)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> FrameSet:
        """Read a set written by :meth:`save` (plain arrays only: never unpickles)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no frame set at {path} (make one with `wm align collect`)")
        with np.load(path, allow_pickle=False) as z:
            missing = {"frames", "viewpoints", "states", "episodes"} - set(z.files)
            if missing:
                raise ValueError(f"{path}: not a frame set, missing arrays {sorted(missing)}")
            meta = json.loads(bytes(z["meta_json"]).decode()) if "meta_json" in z.files else {}
            paired = z["paired"] if "paired" in z.files else None
            return cls(z["frames"], z["viewpoints"], z["states"], z["episodes"], paired, meta)


def collect_frames(
    domain: str = "sim",
    episodes: int = 100,
    steps: int = 20,
    seed: int = 0,
    size: int = 32,
    camera: str = "moving",
    paired_domain: str | None = None,
    env_id: str = "wm/JacoReach-v1",
    env_kwargs: dict[str, Any] | None = None,
    expert_share: float = 0.5,
    progress: bool = True,
) -> FrameSet:
    """Roll out ``episodes`` episodes of ``steps`` frames each (see the module doc).

    Episode k is reset with seed ``seed + k``; whether it follows the noisy expert or smoothed
    random actions, and the action noise, come from ``numpy.random.default_rng([seed, k])``.
    """
    import gymnasium as gym
    from tqdm import tqdm

    import envs  # noqa: F401  (registers the environments)
    from envs.experts import make_expert

    if episodes < 1 or steps < 1:
        raise ValueError(f"episodes and steps must be >= 1, got {episodes} and {steps}")
    kwargs = dict(env_kwargs or {})
    kwargs.update(camera=camera, size=size, domain=domain, obs="pixels+viewpoint")
    if paired_domain is not None:
        kwargs["paired_domain"] = paired_domain
    env = gym.make(env_id, **kwargs)
    expert = make_expert(env)
    frames, views, states, eps, paired = [], [], [], [], []
    for k in tqdm(range(episodes), desc=f"collect {domain}", unit="ep", disable=not progress):
        rng = np.random.default_rng([seed, k])
        obs, info = env.reset(seed=seed + k)
        use_expert = rng.random() < expert_share
        action = np.zeros(env.action_space.shape, dtype=np.float32)
        for _ in range(steps):
            base = env.unwrapped
            frames.append(obs["pixels"])
            views.append(obs["viewpoint"])
            q = base.data.qpos[:6]
            states.append(np.concatenate([base.hand_position, base.target_position, q]).astype(np.float32))
            eps.append(k)
            if paired_domain is not None:
                paired.append(info["paired_pixels"])
            if use_expert:
                action = expert.act() + rng.normal(0.0, 0.3, action.shape)
            else:
                action = 0.7 * action + 0.3 * rng.uniform(-1.0, 1.0, action.shape)
            obs, _, _, truncated, info = env.step(np.clip(action, -1, 1).astype(np.float32))
            if truncated:
                break
    env.close()
    meta = dict(
        env=env_id,
        domain=domain,
        paired_domain=paired_domain,
        seed=seed,
        episodes=episodes,
        steps=steps,
        size=size,
        camera=camera,
        env_kwargs=env_kwargs or {},
        expert_share=expert_share,
    )
    return FrameSet(
        np.stack(frames),
        np.stack(views).astype(np.float32),
        np.stack(states),
        np.asarray(eps, dtype=np.int64),
        np.stack(paired) if paired else None,
        meta,
    )


__all__ = ["FrameSet", "STATE_NAMES", "collect_frames"]
