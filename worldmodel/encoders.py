"""Frozen encoders: the one thing agents need from a trained representation learner.

A :class:`FrozenEncoder` wraps any learner that has ``encode(frames, viewpoints) -> [B, D]``
(frames float ``[B,3,H,W]`` in [0, 1] on the model's device, viewpoints float ``[B,7]``).
It puts the model in eval mode, turns gradients off, and accepts what environments produce:
uint8 ``[B,H,W,3]`` (or float ``[B,3,H,W]``) images and 5-d or 7-d viewpoints, as numpy arrays
or tensors. Output is float32 ``[B, feature_dim]`` on the encoder's device (``encode``) or as
numpy (``encode_numpy``).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn


class EncodesViews(Protocol):
    """What a learner must provide to be frozen (GQN, NISO, ...)."""

    def encode(self, frames: torch.Tensor, viewpoints: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """Features ``[B, D]`` of single views (float frames ``[B,3,H,W]`` in [0,1], viewpoints ``[B,7]``)."""
        ...


def viewpoint7_torch(viewpoints: torch.Tensor, order: str = "ports") -> torch.Tensor:
    """Torch twin of :func:`envs.camera.viewpoint7` (``[..., 5] -> [..., 7]``)."""
    if viewpoints.shape[-1] != 5:
        raise ValueError(f"expected 5-d viewpoints (x, y, z, yaw, pitch), got shape {tuple(viewpoints.shape)}")
    pos, yaw, pitch = viewpoints[..., :3], viewpoints[..., 3:4], viewpoints[..., 4:5]
    if order == "ports":
        trig = (torch.cos(yaw), torch.sin(yaw), torch.cos(pitch), torch.sin(pitch))
    elif order == "deepmind":
        trig = (torch.sin(yaw), torch.cos(yaw), torch.sin(pitch), torch.cos(pitch))
    else:
        raise ValueError(f"unknown viewpoint order {order!r}; valid: 'ports', 'deepmind'")
    return torch.cat((pos, *trig), dim=-1)


class FrozenEncoder(nn.Module):
    """An eval-mode, gradient-free wrapper around a learner's ``encode``.

    Args:
        model: module with ``encode(frames, viewpoints)``.
        feature_dim: size D of the returned features.
        image_size: expected (square) input size in pixels; other sizes raise ``ValueError``.
        name: learner name (``"gqn"``, ``"niso"``, ...), for reports.
        uses_viewpoint: whether features depend on the viewpoint (``False``: any may be passed).
        device: where to run; defaults to the model's current device.
        dtype: compute dtype for inputs (float32, or bfloat16 on GPU).
    """

    def __init__(
        self,
        model: nn.Module,
        feature_dim: int,
        image_size: int,
        name: str = "encoder",
        uses_viewpoint: bool = True,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if device is not None:
            model = model.to(device)
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.feature_dim = int(feature_dim)
        self.image_size = int(image_size)
        self.name = name
        self.uses_viewpoint = uses_viewpoint
        self.dtype = dtype
        self.metadata = dict(metadata or {})
        self.train(False)

    @property
    def device(self) -> torch.device:
        """Device the encoder runs on."""
        for p in self.model.parameters():
            return p.device
        for b in self.model.buffers():
            return b.device
        return torch.device("cpu")

    def train(self, mode: bool = True) -> FrozenEncoder:
        """A frozen encoder stays in eval mode whatever is asked."""
        return super().train(False)

    def _frames(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(frames).to(self.device, non_blocking=True)
        if x.ndim != 4:
            raise ValueError(
                f"frames must be a batch [B,H,W,3] (uint8) or [B,3,H,W] (float), got shape {tuple(x.shape)}"
            )
        if x.dtype == torch.uint8:
            if x.shape[-1] == 3:
                x = x.permute(0, 3, 1, 2)
            elif x.shape[1] != 3:
                raise ValueError(f"uint8 frames must be [B,H,W,3] or [B,3,H,W], got {tuple(x.shape)}")
            x = x.to(self.dtype).div_(255.0)
        else:
            if x.shape[1] != 3:
                raise ValueError(f"float frames must be [B,3,H,W] in [0,1], got shape {tuple(x.shape)}")
            x = x.to(self.dtype)
        h, w = x.shape[-2:]
        if (h, w) != (self.image_size, self.image_size):
            raise ValueError(
                f"{self.name} encoder expects {self.image_size}x{self.image_size} images, got {h}x{w}; "
                f"make the env with size={self.image_size}"
            )
        return x.contiguous()

    def _viewpoints(self, viewpoints: np.ndarray | torch.Tensor | None, batch: int) -> torch.Tensor:
        if viewpoints is None:
            if self.uses_viewpoint:
                raise ValueError(f"the {self.name} encoder needs viewpoints [B,5] or [B,7]")
            return torch.zeros(batch, 7, device=self.device, dtype=self.dtype)
        v = torch.as_tensor(viewpoints, dtype=torch.float32).to(self.device)
        if v.ndim != 2 or v.shape[0] != batch or v.shape[1] not in (5, 7):
            raise ValueError(f"viewpoints must be [B,5] or [B,7] with B={batch}, got {tuple(v.shape)}")
        if v.shape[1] == 5:
            v = viewpoint7_torch(v)
        return v.to(self.dtype)

    @torch.inference_mode()
    def encode(
        self, frames: np.ndarray | torch.Tensor, viewpoints: np.ndarray | torch.Tensor | None = None
    ) -> torch.Tensor:
        """Features float32 ``[B, feature_dim]`` on the encoder's device."""
        x = self._frames(frames)
        v = self._viewpoints(viewpoints, x.shape[0])
        out = self.model.encode(x, v)
        return out.float().reshape(out.shape[0], -1)

    forward = encode

    def encode_numpy(self, frames, viewpoints=None) -> np.ndarray:
        """Like :meth:`encode` but returns a float32 numpy array on the CPU."""
        return self.encode(frames, viewpoints).cpu().numpy().astype(np.float32, copy=False)

    def feature_bounds(self) -> tuple[float, float]:
        """Bounds for an observation Box of the features (unbounded by default)."""
        return -math.inf, math.inf


#: learner name -> "module:function" that builds a FrozenEncoder from a checkpoint directory.
ENCODER_LOADERS: dict[str, str] = {
    "gqn": "worldmodel.models.gqn:load_frozen",
    "niso": "worldmodel.models.niso:load_frozen",
    "vae": "worldmodel.models.vae:load_frozen",
    "aligned": "worldmodel.align.encoder:load_frozen",
    "state-encoder": "worldmodel.models.state_encoder:load_frozen",
}


def load_encoder(path: str, device: str | None = None, **kwargs: Any) -> FrozenEncoder:
    """Load a checkpoint directory (``model.safetensors`` + ``config.json``) as a frozen encoder.

    The learner is read from ``config.json`` (key ``"learner"``); never unpickles.
    """
    import importlib

    from worldmodel.checkpoint import read_checkpoint_config

    config = read_checkpoint_config(path)
    learner = config.get("learner")
    if learner not in ENCODER_LOADERS:
        raise ValueError(
            f"{path}: checkpoint names learner {learner!r}; valid values: {', '.join(map(repr, ENCODER_LOADERS))}"
        )
    module, func = ENCODER_LOADERS[learner].split(":")
    return getattr(importlib.import_module(module), func)(path, device=device, **kwargs)
