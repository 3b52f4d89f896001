"""Observation modes, spaces and input checks shared by the toolkit's environments."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from gymnasium import spaces

OBS_MODES: tuple[str, ...] = ("pixels", "state", "pixels+viewpoint")
CAMERA_MODES: tuple[str, ...] = ("fixed", "moving", "random")
CHANNEL_ORDERS: tuple[str, ...] = ("last", "first")

#: Bounds of the 5-d viewpoint in observation spaces (metres, radians).
VIEWPOINT_LOW = np.array([-10.0, -10.0, -10.0, -np.pi, -np.pi / 2], dtype=np.float32)
VIEWPOINT_HIGH = np.array([10.0, 10.0, 10.0, np.pi, np.pi / 2], dtype=np.float32)


def check_choice(name: str, value: str, valid: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``valid``, else raise a ``ValueError`` listing them."""
    valid = tuple(valid)
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid values: {', '.join(map(repr, valid))}")
    return value


def check_finite_action(action) -> np.ndarray:
    """Return the action as a float array; raise ``ValueError`` if it holds NaN or inf."""
    a = np.asarray(action, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"action contains NaN or inf: {np.asarray(action)!r}")
    return a


def image_space(size: int, channel_order: str) -> spaces.Box:
    """uint8 RGB image space, ``[H,W,3]`` (``last``) or ``[3,H,W]`` (``first``)."""
    check_choice("channel_order", channel_order, CHANNEL_ORDERS)
    shape = (size, size, 3) if channel_order == "last" else (3, size, size)
    return spaces.Box(0, 255, shape=shape, dtype=np.uint8)


def viewpoint_space() -> spaces.Box:
    """Box of the 5-d viewpoint (x, y, z, yaw, pitch)."""
    return spaces.Box(VIEWPOINT_LOW, VIEWPOINT_HIGH, dtype=np.float32)


def observation_space(obs: str, size: int, channel_order: str, state_dim: int) -> spaces.Space:
    """The observation space of an env in mode ``obs``."""
    check_choice("obs", obs, OBS_MODES)
    if obs == "pixels":
        return image_space(size, channel_order)
    if obs == "state":
        return spaces.Box(-np.inf, np.inf, shape=(state_dim,), dtype=np.float32)
    return spaces.Dict({"pixels": image_space(size, channel_order), "viewpoint": viewpoint_space()})


def format_image(image: np.ndarray, channel_order: str) -> np.ndarray:
    """Put an ``[H,W,3]`` image in the requested channel order (contiguous)."""
    if channel_order == "first":
        return np.ascontiguousarray(image.transpose(2, 0, 1))
    return image
