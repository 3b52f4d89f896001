"""Pixel feature extractor for small images (SB3's NatureCNN needs at least 36x36 inputs).

The toolkit's CPU experiments use 16-32 pixel frames; NatureCNN's 8x8/stride-4 first layer
collapses them to nothing. :class:`CompactCNN` keeps the same role (three convolutions and a
linear layer, inputs scaled to [0, 1] by SB3) with padded 4x4/stride-2 layers that work from
16x16 upwards. :func:`pixel_policy_kwargs` picks it below ``NATURE_CNN_MIN_SIZE``.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

#: Images at least this large use SB3's default NatureCNN; smaller ones use CompactCNN.
NATURE_CNN_MIN_SIZE = 48


class CompactCNN(BaseFeaturesExtractor):
    """Conv(16, 4, s2) - Conv(32, 4, s2) - Conv(32, 3, s1) - Linear(features_dim), ReLU between.

    About 1.8M multiply-adds per 32x32 frame (NatureCNN: ~5.6M at 84x84), so PPO's 10 epochs
    over pixel batches stay affordable on a CPU.

    Args:
        observation_space: channel-first image Box ``[C,H,W]`` (SB3 normalises uint8 to [0, 1]).
        features_dim: size of the output features.
    """

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 256) -> None:
        super().__init__(observation_space, features_dim)
        channels = observation_space.shape[0]
        self.cnn = nn.Sequential(
            nn.Conv2d(channels, 16, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=1, padding=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_flat = self.cnn(torch.zeros(1, *observation_space.shape)).shape[1]
        self.linear = nn.Sequential(nn.Linear(n_flat, features_dim), nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        """Features ``[B, features_dim]`` of a batch of (normalised) images."""
        return self.linear(self.cnn(observations))


def pixel_policy_kwargs(image_size: int, features_dim: int = 256) -> dict:
    """``policy_kwargs`` for ``CnnPolicy`` at this image size (empty: SB3's NatureCNN)."""
    if image_size >= NATURE_CNN_MIN_SIZE:
        return {}
    return {"features_extractor_class": CompactCNN, "features_extractor_kwargs": {"features_dim": features_dim}}
