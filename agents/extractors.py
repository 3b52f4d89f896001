"""Pixel feature extractors: a CNN for small images, and frames + viewpoint for ``MultiInputPolicy``.

The toolkit's CPU experiments use 16-32 pixel frames; NatureCNN's 8x8/stride-4 first layer
collapses them to nothing (it needs at least 36x36 inputs). :class:`CompactCNN` keeps the same
role (three convolutions and a linear layer, inputs scaled to [0, 1] by SB3) with padded
4x4/stride-2 layers that work from 16x16 upwards. :func:`pixel_policy_kwargs` picks it below
``NATURE_CNN_MIN_SIZE``.

:class:`PixelsViewpointExtractor` is the torso of the ``pixels+viewpoint`` agent: the *same* CNN
as the ``pixels`` agent at that image size (NatureCNN with 512 features, or CompactCNN with 256)
on the image key, and the vector keys (the 7-d viewpoint) flattened and concatenated to its
features, so the two arms differ only by the viewpoint. (SB3's ``CombinedExtractor`` always uses
NatureCNN with 256 features, which neither handles small frames nor matches the pixel agent.)
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, NatureCNN
from torch import nn

#: Images at least this large use SB3's default NatureCNN; smaller ones use CompactCNN.
NATURE_CNN_MIN_SIZE = 48
#: Output features of each CNN as the ``pixels`` agent uses it (NatureCNN: SB3's CnnPolicy default).
CNN_FEATURES: dict[str, int] = {"nature": 512, "compact": 256}


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


def pixel_policy_kwargs(image_size: int, features_dim: int = CNN_FEATURES["compact"]) -> dict:
    """``policy_kwargs`` for ``CnnPolicy`` at this image size (empty: SB3's NatureCNN)."""
    if cnn_for_size(image_size) == "nature":
        return {}
    return {"features_extractor_class": CompactCNN, "features_extractor_kwargs": {"features_dim": features_dim}}


def cnn_for_size(image_size: int) -> str:
    """``"nature"`` (SB3's NatureCNN) from ``NATURE_CNN_MIN_SIZE`` px up, else ``"compact"``."""
    return "nature" if image_size >= NATURE_CNN_MIN_SIZE else "compact"


class PixelsViewpointExtractor(BaseFeaturesExtractor):
    """CNN on the Dict's image key, other keys flattened; features concatenated (image first).

    Args:
        observation_space: Dict with exactly one image Box (channel-first uint8, as after
            ``VecTransposeImage``) and any number of vector Boxes (e.g. ``viewpoint``).
        cnn: ``"nature"`` (NatureCNN) or ``"compact"`` (:class:`CompactCNN`).
        cnn_features_dim: output size of the CNN (``None``: :data:`CNN_FEATURES` of ``cnn``).
    """

    def __init__(
        self, observation_space: gym.spaces.Dict, cnn: str = "nature", cnn_features_dim: int | None = None
    ) -> None:
        if not isinstance(observation_space, gym.spaces.Dict):
            raise ValueError(f"PixelsViewpointExtractor needs a Dict observation space, got {observation_space}")
        if cnn not in CNN_FEATURES:
            raise ValueError(f"unknown cnn {cnn!r}; valid values: {', '.join(map(repr, CNN_FEATURES))}")
        images = [k for k, s in observation_space.spaces.items() if is_image_space(s, check_channels=False)]
        if len(images) != 1:
            raise ValueError(
                f"PixelsViewpointExtractor needs exactly one image key, got {images or 'none'} in {observation_space}"
            )
        dim = CNN_FEATURES[cnn] if cnn_features_dim is None else int(cnn_features_dim)
        vector_keys = [k for k in observation_space.spaces if k != images[0]]
        vector_dim = sum(int(np.prod(observation_space.spaces[k].shape)) for k in vector_keys)
        super().__init__(observation_space, features_dim=dim + vector_dim)
        self.image_key = images[0]
        self.vector_keys = vector_keys
        space = observation_space.spaces[self.image_key]
        self.cnn = NatureCNN(space, features_dim=dim) if cnn == "nature" else CompactCNN(space, features_dim=dim)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        """Features ``[B, features_dim]``: CNN features, then the flattened vector keys."""
        parts = [self.cnn(observations[self.image_key])]
        parts += [torch.flatten(observations[k], start_dim=1) for k in self.vector_keys]
        return torch.cat(parts, dim=1)


def dict_policy_kwargs(image_size: int) -> dict:
    """``policy_kwargs`` for ``MultiInputPolicy`` on Dict(pixels, viewpoint): the pixel agent's CNN at this size."""
    cnn = cnn_for_size(image_size)
    return {
        "features_extractor_class": PixelsViewpointExtractor,
        "features_extractor_kwargs": {"cnn": cnn, "cnn_features_dim": CNN_FEATURES[cnn]},
    }
