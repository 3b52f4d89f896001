"""Tiny synthetic multi-view scenes and batches, for tests and benchmarks of the engine.

:func:`synthetic_scenes` draws, with numpy only, two coloured balls on a two-tone floor seen
from cameras on a circle around them (a pinhole projection, so the balls move, scale and occlude
each other with the viewpoint). They are cheap, deterministic and learnable, and are written to disk with the data
engineer's :func:`worldmodel.data.writer.write_scenes`, so tests exercise the real loader.
:func:`random_gqn_batch` builds contract-shaped GQN batches in memory (benchmarks).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np


def _render(
    size: int, cam: np.ndarray, balls: list[tuple[np.ndarray, float, np.ndarray]], floor: np.ndarray, sky: np.ndarray
) -> np.ndarray:
    x, y, z, yaw, pitch = (float(v) for v in cam)
    fwd = np.array([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)])
    right = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
    up = np.cross(right, fwd)
    focal = 0.5 * size / np.tan(np.deg2rad(30.0))
    img = np.empty((size, size, 3), dtype=np.float32)
    # horizon: rows above the projection of the far ground direction are sky
    horizon = size / 2 - focal * np.tan(-pitch)
    rows = np.arange(size)[:, None, None]
    img[:] = np.where(rows < horizon, sky, floor)
    yy, xx = np.mgrid[0:size, 0:size]
    eye = np.array([x, y, z])
    # painter's order: far balls first
    for ball, radius, colour in sorted(balls, key=lambda b: -float((b[0] - eye) @ fwd)):
        d = ball - eye
        depth = float(d @ fwd)
        if depth <= 0.1:
            continue
        u = size / 2 + focal * float(d @ right) / depth
        v = size / 2 - focal * float(d @ up) / depth
        r = focal * radius / depth
        dist2 = (xx + 0.5 - u) ** 2 + (yy + 0.5 - v) ** 2
        inside = dist2 <= r * r
        shade = np.clip(1.0 - 0.5 * dist2 / max(r * r, 1e-6), 0.5, 1.0)[..., None]
        img = np.where(inside[..., None], colour * shade, img)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def synthetic_scene(seed: int, index: int, views: int, size: int):
    """One scene (an :class:`envs.scenes.SceneRecord`): two balls on a floor seen from ``views`` cameras."""
    from envs.scenes import SceneRecord, scene_rng

    rng = scene_rng(seed, index)
    floor = rng.uniform(0.0, 0.5, size=3).astype(np.float32)
    sky = rng.uniform(0.5, 1.0, size=3).astype(np.float32)
    balls = []
    for _ in range(2):
        radius = float(rng.uniform(0.3, 0.5))
        centre = np.array([*rng.uniform(-0.7, 0.7, size=2), radius])
        balls.append((centre, radius, rng.uniform(0.2, 1.0, size=3).astype(np.float32)))
    frames, cameras = [], []
    for angle in rng.uniform(-np.pi, np.pi, size=views):
        pos = np.array([2.2 * np.cos(angle), 2.2 * np.sin(angle), 1.0])
        d = -pos + np.array([0.0, 0.0, 0.3])
        yaw = float(np.arctan2(d[1], d[0]))
        pitch = float(np.arcsin(d[2] / np.linalg.norm(d)))
        cam = np.array([*pos, yaw, pitch], dtype=np.float32)
        frames.append(_render(size, cam, balls, floor, sky))
        cameras.append(cam)
    return SceneRecord(
        frames=np.stack(frames),
        cameras=np.stack(cameras).astype(np.float32),
        metadata={"source": "synthetic-ball", "seed": int(seed), "index": int(index)},
    )


def synthetic_scenes(scenes: int, views: int, size: int, seed: int = 0) -> Iterator:
    """``scenes`` deterministic synthetic scenes (see :func:`synthetic_scene`)."""
    for i in range(scenes):
        yield synthetic_scene(seed, i, views, size)


def write_synthetic_dataset(
    root: str | Path, scenes: int, views: int, size: int, seed: int = 0, shard_size: int = 64
) -> Path:
    """Write a synthetic dataset directory with the toolkit's dataset writer."""
    from worldmodel.data.writer import write_scenes

    return write_scenes(
        root,
        synthetic_scenes(scenes, views, size, seed),
        shard_size=shard_size,
        source="synthetic-ball",
        scenes=scenes,
        collection={"source": "synthetic-ball", "scenes": scenes, "seed": seed},
    )


def random_gqn_batch(batch_size: int, context: int, size: int, seed: int = 0) -> dict:
    """A GQN batch of the loader's format (uint8 images, 5-d cameras) with random content."""
    import torch

    g = torch.Generator().manual_seed(seed)
    cams = torch.rand(batch_size, context + 1, 5, generator=g) * 2 - 1
    return {
        "context_frames": torch.randint(0, 256, (batch_size, context, size, size, 3), generator=g, dtype=torch.uint8),
        "context_cameras": cams[:, :context].contiguous(),
        "query_frame": torch.randint(0, 256, (batch_size, size, size, 3), generator=g, dtype=torch.uint8),
        "query_camera": cams[:, context].contiguous(),
    }


def random_pair_batch(batch_size: int, size: int, seed: int = 0) -> dict:
    """A pair batch of the loader's format (uint8 images, 5-d cameras, relative poses) with random content."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return {
        "frame_a": torch.randint(0, 256, (batch_size, size, size, 3), generator=g, dtype=torch.uint8),
        "frame_b": torch.randint(0, 256, (batch_size, size, size, 3), generator=g, dtype=torch.uint8),
        "camera_a": torch.rand(batch_size, 5, generator=g),
        "camera_b": torch.rand(batch_size, 5, generator=g),
        "relative": torch.eye(4).expand(batch_size, 4, 4).contiguous(),
        "skip": torch.ones(batch_size, dtype=torch.int64),
    }


class InMemoryLoader:
    """A loader over a fixed list of batches, with the ``set_epoch``/``len`` API of the real ones."""

    def __init__(self, batches: list, epoch_length: int | None = None) -> None:
        if not batches:
            raise ValueError("InMemoryLoader needs at least one batch")
        self.batches = list(batches)
        self.epoch_length = int(epoch_length or len(batches))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Kept for API compatibility (batches do not depend on it)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.epoch_length

    def __iter__(self):
        for i in range(self.epoch_length):
            yield self.batches[i % len(self.batches)]
