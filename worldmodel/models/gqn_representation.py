"""GQN representation networks psi(x, v): Tower, Pool and Pyramid (Eslami et al. 2018, Fig. S1).

Each maps a batch of views ``x`` float ``[N,3,H,W]`` in [0,1] with viewpoints ``v`` ``[N,7]`` to
a per-view representation; the scene representation is the sum over context views
(:func:`aggregate`), which makes it independent of their order and number.

Channel widths scale with ``r_channels`` (256 in the paper): Tower uses r and r/2, Pyramid
r/8, r/4, r/2, r.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def broadcast_viewpoint(v: torch.Tensor, size: tuple[int, int], like: torch.Tensor | None = None) -> torch.Tensor:
    """``[N,D] -> [N,D,h,w]`` (the viewpoint repeated at every position).

    With ``like`` in channels-last memory format the result is materialised channels-last too:
    ``torch.cat`` of a channels-last map with a stride-0 broadcast returns a contiguous (NCHW)
    tensor, which would undo the format for every convolution after it.
    """
    out = v[:, :, None, None].expand(-1, -1, *size)
    if like is not None and like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    return out


class Tower(nn.Module):
    """The paper's Tower network: r_channels x H/4 x W/4, viewpoint injected at H/4 (with ``pool``: 1x1)."""

    def __init__(self, r_channels: int = 256, viewpoint_dim: int = 7, pool: bool = False) -> None:
        super().__init__()
        r, half = r_channels, r_channels // 2
        self.pool = pool
        self.conv1 = nn.Conv2d(3, r, kernel_size=2, stride=2)
        self.conv2 = nn.Conv2d(r, r, kernel_size=2, stride=2)  # skip branch
        self.conv3 = nn.Conv2d(r, half, kernel_size=3, padding=1)
        self.conv4 = nn.Conv2d(half, r, kernel_size=2, stride=2)
        self.conv5 = nn.Conv2d(r + viewpoint_dim, r, kernel_size=3, padding=1)  # skip branch
        self.conv6 = nn.Conv2d(r + viewpoint_dim, half, kernel_size=3, padding=1)
        self.conv7 = nn.Conv2d(half, r, kernel_size=3, padding=1)
        self.conv8 = nn.Conv2d(r, r, kernel_size=1)

    def forward(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``x [N,3,H,W], v [N,7] -> [N,r,H/4,W/4]`` (``[N,r,1,1]`` when pooling)."""
        a = F.relu(self.conv1(x))
        h = F.relu(self.conv4(F.relu(self.conv3(a)))) + F.relu(self.conv2(a))
        h = torch.cat((h, broadcast_viewpoint(v.to(h.dtype), h.shape[-2:], like=h)), dim=1)
        h = F.relu(self.conv7(F.relu(self.conv6(h)))) + F.relu(self.conv5(h))
        h = F.relu(self.conv8(h))
        if self.pool:
            h = h.mean(dim=(2, 3), keepdim=True)
        return h


class Pyramid(nn.Module):
    """The paper's Pyramid network: viewpoint concatenated to the image, strided convs to r x 1 x 1."""

    def __init__(self, r_channels: int = 256, viewpoint_dim: int = 7, image_size: int = 64) -> None:
        super().__init__()
        if image_size % 8:
            raise ValueError(f"the pyramid representation needs image_size divisible by 8, got {image_size}")
        r = r_channels
        self.net = nn.Sequential(
            nn.Conv2d(3 + viewpoint_dim, r // 8, kernel_size=2, stride=2),
            nn.ReLU(),
            nn.Conv2d(r // 8, r // 4, kernel_size=2, stride=2),
            nn.ReLU(),
            nn.Conv2d(r // 4, r // 2, kernel_size=2, stride=2),
            nn.ReLU(),
            nn.Conv2d(r // 2, r, kernel_size=image_size // 8, stride=image_size // 8),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``x [N,3,H,W], v [N,7] -> [N,r,1,1]``."""
        return self.net(torch.cat((x, broadcast_viewpoint(v.to(x.dtype), x.shape[-2:], like=x)), dim=1))


def make_representation(kind: str, r_channels: int, viewpoint_dim: int, image_size: int) -> nn.Module:
    """Build psi of the given kind ('tower', 'pool' or 'pyramid')."""
    if kind == "tower":
        return Tower(r_channels, viewpoint_dim, pool=False)
    if kind == "pool":
        return Tower(r_channels, viewpoint_dim, pool=True)
    if kind == "pyramid":
        return Pyramid(r_channels, viewpoint_dim, image_size)
    raise ValueError(f"unknown representation {kind!r}; valid values: 'tower', 'pool', 'pyramid'")


def aggregate(psi: nn.Module, frames: torch.Tensor, viewpoints: torch.Tensor) -> torch.Tensor:
    """Scene representation ``r = sum_k psi(x_k, v_k)`` of ``frames [B,K,3,H,W]``, ``viewpoints [B,K,D]``.

    All K views of all scenes go through psi in one batch. ``K = 0`` is not handled here (see
    :meth:`worldmodel.models.gqn.GQN.represent`).
    """
    b, k = frames.shape[:2]
    per_view = psi(frames.flatten(0, 1), viewpoints.flatten(0, 1))
    return per_view.unflatten(0, (b, k)).sum(dim=1)
