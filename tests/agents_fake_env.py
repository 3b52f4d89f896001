"""A tiny, fast, deterministic image env and a tiny frozen encoder for the agents tests.

``FakeImageEnv`` follows the toolkit's env interface (``obs`` in pixels / state /
pixels+viewpoint, ``size``, ``camera``, ``info["viewpoint"]``) without MuJoCo: a point moves on
a plane towards a goal; its frame is a rendering of the point, the goal and a step-dependent
background, so every frame differs. Episodes last ``max_steps`` steps (truncation) or end at
the goal (termination). Registered as ``agents_fake_env:FakeImage-v0`` (the module prefix makes
``gymnasium.make`` import this module, also in SubprocVecEnv workers).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from envs.spaces import check_choice, observation_space
from worldmodel.encoders import FrozenEncoder

ENV_ID = "agents_fake_env:FakeImage-v0"


class FakeImageEnv(gym.Env):
    """Point-to-goal on a plane, seen from a camera that orbits (moving) or stays (fixed)."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        obs: str = "pixels",
        size: int = 16,
        camera: str = "moving",
        max_steps: int = 5,
        channel_order: str = "last",
    ) -> None:
        self.obs_mode = check_choice("obs", obs, ("pixels", "state", "pixels+viewpoint"))
        self.camera = check_choice("camera", camera, ("fixed", "moving", "random"))
        self.size = size
        self.max_steps = max_steps
        self.channel_order = channel_order
        self.observation_space = observation_space(obs, size, channel_order, state_dim=4)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._pos = np.zeros(2)
        self._goal = np.zeros(2)
        self._t = 0
        self._yaw = 0.0

    def _viewpoint(self) -> np.ndarray:
        look = (self._yaw + 2 * np.pi) % (2 * np.pi) - np.pi  # facing the origin, wrapped to [-pi, pi)
        return np.array([2 * np.cos(self._yaw), 2 * np.sin(self._yaw), 1.0, look, -0.4], dtype=np.float32)

    def _frame(self) -> np.ndarray:
        s = self.size
        img = np.empty((s, s, 3), dtype=np.uint8)
        img[..., 0] = (37 * self._t + int(100 * self._yaw)) % 256
        img[..., 1] = np.arange(s, dtype=np.uint8)[None, :] * 5
        img[..., 2] = 40
        for p, colour in ((self._pos, (255, 255, 255)), (self._goal, (0, 0, 255))):
            c = np.clip(((p + 1) / 2 * (s - 1)).round().astype(int), 0, s - 1)
            img[c[1], c[0]] = colour
        return img if self.channel_order == "last" else np.ascontiguousarray(img.transpose(2, 0, 1))

    def _obs(self):
        if self.obs_mode == "state":
            return np.concatenate([self._pos, self._goal]).astype(np.float32)
        if self.obs_mode == "pixels":
            return self._frame()
        return {"pixels": self._frame(), "viewpoint": self._viewpoint()}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._pos = self.np_random.uniform(-1, 1, 2)
        self._goal = self.np_random.uniform(-1, 1, 2)
        self._yaw = float(self.np_random.uniform(-np.pi, np.pi)) if self.camera != "fixed" else 0.0
        self._t = 0
        return self._obs(), {"viewpoint": self._viewpoint()}

    def step(self, action):
        self._t += 1
        self._pos = np.clip(self._pos + 0.2 * np.clip(action, -1, 1), -1, 1)
        if self.camera == "moving":
            self._yaw = float((self._yaw + 0.3 + np.pi) % (2 * np.pi) - np.pi)
        dist = float(np.linalg.norm(self._pos - self._goal))
        terminated = dist < 0.1
        truncated = self._t >= self.max_steps
        info = {"viewpoint": self._viewpoint(), "is_success": terminated}
        return self._obs(), -dist, terminated, truncated, info


if ENV_ID.split(":")[1] not in gym.registry:
    gym.register(ENV_ID.split(":")[1], entry_point=FakeImageEnv)


class TinyConvModel(nn.Module):
    """A small random conv net with GQN's ``encode(frames, viewpoints)`` interface."""

    def __init__(self, dim: int = 8, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(6 + 7, dim)

    def encode(self, frames: torch.Tensor, viewpoints: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.conv(frames), viewpoints], dim=1))


def tiny_encoder(size: int = 16, dim: int = 8, seed: int = 0) -> FrozenEncoder:
    """A tiny randomly initialised conv encoder, frozen."""
    return FrozenEncoder(TinyConvModel(dim, seed), feature_dim=dim, image_size=size, name="tiny")


def save_tiny_gqn(directory, size: int = 16, r_channels: int = 8, seed: int = 0):
    """Write a tiny randomly initialised GQN checkpoint (safetensors + JSON) and return its path."""
    from dataclasses import asdict

    from worldmodel.checkpoint import save_checkpoint
    from worldmodel.models.gqn import GQN
    from worldmodel.models.gqn_config import GQNConfig

    torch.manual_seed(seed)
    config = GQNConfig(
        image_size=size, r_channels=r_channels, hidden_channels=4, z_channels=1, generation_steps=1, kernel_size=3
    )
    model = GQN(config)
    return save_checkpoint(directory, model.state_dict(), {"learner": "gqn", "model": asdict(config), "step": 0})
