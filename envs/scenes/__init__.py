"""Multi-view scene generators: one world configuration seen from V viewpoints.

A generator is a function ``(seed, index, views, size, **options) -> SceneRecord`` whose output
depends only on its arguments (never on process, worker count or call order). The dataset
collector (``worldmodel.data``) calls them through :func:`generate_scene`. Sources:

* ``jaco``   : the arm of wm/JacoReach-v1 (or v0) in a random pose with a target, camera orbiting it (GQN "jaco": 64px,
  11 views)
* ``maze``   : 7x7 maze, views at random positions/headings inside, plus the top-down map (GQN: 84px, 300 views)
* ``rooms``  : square room with 1-3 objects of 7 shapes (GQN rooms: 64px, 10 views)
* ``shepard-metzler`` : 5 or 7 unit cubes joined by a 3D self-avoiding walk (GQN: 64px, 15 views)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: source name -> "module:function" of its generator (imported lazily).
SCENE_SOURCES: dict[str, str] = {
    "jaco": "envs.scenes.jaco_scenes:generate",
    "maze": "envs.scenes.maze_scenes:generate",
    "rooms": "envs.scenes.rooms:generate",
    "shepard-metzler": "envs.scenes.shepard_metzler:generate",
}

#: GQN defaults per source: (views, image size).
SOURCE_DEFAULTS: dict[str, tuple[int, int]] = {
    "jaco": (11, 64),
    "maze": (300, 84),
    "rooms": (10, 64),
    "shepard-metzler": (15, 64),
}


@dataclass
class SceneRecord:
    """One scene: ``frames`` uint8 [V,H,W,3], ``cameras`` float32 [V,5] (x, y, z, yaw, pitch).

    Views are ordered along the camera trajectory. ``metadata`` is JSON-serialisable (source,
    seed, index, domain parameters, ...). ``extras`` holds named numpy arrays stored beside the
    frames (e.g. ``"map"`` uint8 [h,w,3] for mazes, ``"qpos"`` for Jaco).
    """

    frames: np.ndarray
    cameras: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        f, c = self.frames, self.cameras
        if f.dtype != np.uint8 or f.ndim != 4 or f.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 [V,H,W,3], got {f.dtype} {f.shape}")
        if c.dtype != np.float32 or c.shape != (f.shape[0], 5):
            raise ValueError(f"cameras must be float32 [V,5] with V={f.shape[0]}, got {c.dtype} {c.shape}")


def generator(source: str) -> Callable[..., SceneRecord]:
    """The generator function of a source; raises ``ValueError`` listing valid sources."""
    if source not in SCENE_SOURCES:
        raise ValueError(f"unknown scene source {source!r}; valid values: {', '.join(map(repr, SCENE_SOURCES))}")
    module, func = SCENE_SOURCES[source].split(":")
    return getattr(importlib.import_module(module), func)


def generate_scene(source: str, seed: int, index: int, views: int, size: int, **options: Any) -> SceneRecord:
    """Generate scene ``index`` of the dataset with base ``seed`` from ``source``."""
    if views < 1:
        raise ValueError(f"views must be >= 1, got {views}")
    if size < 8:
        raise ValueError(f"size must be >= 8 pixels, got {size}")
    return generator(source)(seed=seed, index=index, views=views, size=size, **options)


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """The random generator of scene ``index`` under base ``seed`` (independent streams)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))
