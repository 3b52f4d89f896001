"""Moving loader batches to the device and converting them there (uint8 travels, floats don't).

:func:`to_device` copies each tensor to the device first and only then converts: image keys
(uint8 ``[..., H, W, 3]``) become float in [0, 1], channel-first ``[..., 3, H, W]``; each camera
key gets a 7-d viewpoint twin computed with :func:`worldmodel.encoders.viewpoint7_torch`
(``context_cameras`` -> ``context_viewpoints``, ``query_camera`` -> ``query_viewpoint``,
``camera_a`` -> ``viewpoint_a``, ``cameras`` -> ``viewpoints``). Everything else is moved unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from worldmodel.encoders import viewpoint7_torch


def viewpoint_key(camera_key: str) -> str | None:
    """Name of the 7-d viewpoint key derived from a camera key, or ``None`` if not a camera key."""
    if "camera" not in camera_key:
        return None
    return camera_key.replace("cameras", "viewpoints").replace("camera", "viewpoint")


def is_image(value: Any) -> bool:
    """True for uint8 tensors shaped ``[..., H, W, 3]`` (at least 3-d)."""
    return isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.ndim >= 3 and value.shape[-1] == 3


def to_device(
    batch: Mapping[str, Any],
    device: str | torch.device,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
    viewpoint_order: str = "ports",
    non_blocking: bool = True,
) -> dict[str, Any]:
    """Move a batch to ``device`` and convert it there (see module doc).

    Args:
        batch: a loader batch (dict of tensors; other values are passed through).
        device: target device.
        dtype: float dtype of images and viewpoints (float32, or bfloat16/float16 on GPU).
        channels_last: give image tensors the channels-last memory format (faster convolutions on
            GPUs; shapes are unchanged): 4-d ``[B,3,H,W]`` ones, and 5-d ``[B,K,3,H,W]`` ones laid
            out so that ``flatten(0, 1)`` is channels-last. Other ranks stay contiguous.
        viewpoint_order: 7-d order, ``"ports"`` (toolkit default) or ``"deepmind"``.
        non_blocking: asynchronous copies (effective from pinned memory).
    """
    device = torch.device(device)
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if not isinstance(value, torch.Tensor):
            out[key] = value
            continue
        moved = value.to(device, non_blocking=non_blocking)
        if is_image(moved):
            # [..., H, W, C] -> [..., C, H, W]: the moved view is channels-last in memory already; with
            # channels_last it is kept so (4-d frames, and 5-d ones [B, K, C, H, W] whose
            # flatten(0, 1) is then a channels-last [B*K, C, H, W] view)
            x = moved.movedim(-1, -3).to(dtype).div_(255.0)
            if channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            elif not (channels_last and x.ndim == 5):
                x = x.contiguous()
            out[key] = x
            continue
        out[key] = moved
        vkey = viewpoint_key(key)
        if vkey is not None and moved.is_floating_point() and moved.shape[-1] == 5 and vkey not in batch:
            out[vkey] = viewpoint7_torch(moved.float(), order=viewpoint_order).to(dtype)
    return out
