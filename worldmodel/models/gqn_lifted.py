"""A geometry-aware GQN representation: image features lifted into a world-frame volume.

The paper's representation networks (:mod:`gqn_representation`) must *learn* to turn what a view
shows into where things are in the world, from the viewpoint given as 7 numbers. With a moving
camera that is the whole difficulty, and small CPU-trained GQNs do not learn it (see docs/gqn.md:
their features hold the arm in image coordinates, not the world). ``representation="lifted"``
builds the camera geometry in instead, in the spirit of geometry-aware GQN variants (Tung et al.,
"Learning spatial common sense with geometry-aware recurrent networks", CVPR 2019; Tobin et al.,
"Geometry-aware neural rendering", NeurIPS 2019):

* **lift** (:class:`LiftedRepresentation`): a small CNN gives a feature map of the view; every
  point of a fixed world-frame grid (``GQNConfig.volume_bounds`` / ``volume_size``) is projected
  into the view with the pinhole camera of the viewpoint (vertical field of view
  ``GQNConfig.fovy_deg``), the feature map is sampled there, and a per-point MLP of (feature,
  the point's depth in that camera) gives the point's feature, zero outside the view's frustum.
  The depth input lets the network put evidence at the depth the view supports; several views
  intersect their rays, so the GQN's sum over context views triangulates.
* **mix**: three 3-D convolutions over the volume of each view let evidence meet across rays
  (e.g. a mark on the floor and the line of sight of the object above it).
* **render** (:meth:`LiftedRepresentation.render`): for the query viewpoint, rays through the
  cells of the generator's H/4 x W/4 grid sample the volume at ``ray_samples`` depths; the
  samples, stacked front to back, go through a 1x1 conv to the ``r_channels`` the generation
  network expects. The generator (Conv-LSTM DRAW) is unchanged.

The frozen features of a view are its lifted volume, flattened (``volume_channels`` x the grid):
a world-frame map of the scene that a linear probe can read positions from.

Why hand-written: the lifting and ray sampling are this toolkit's variant of the paper's model
(torch's ``grid_sample`` does the interpolation); no maintained library provides a GQN.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def camera_axes(v7: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Camera position and right, up, forward unit vectors ``[N,3]`` from metric 7-d viewpoints
    ``(x, y, z, cos yaw, sin yaw, cos pitch, sin pitch)`` (:mod:`envs.camera` conventions)."""
    pos, cy, sy, cp, sp = v7[:, :3], v7[:, 3], v7[:, 4], v7[:, 5], v7[:, 6]
    fwd = torch.stack((cp * cy, cp * sy, sp), dim=-1)
    right = torch.stack((sy, -cy, torch.zeros_like(cy)), dim=-1)
    right = right / right.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    up = torch.cross(right, fwd, dim=-1)
    return pos, right, up, fwd


def project(points: torch.Tensor, v7: torch.Tensor, fovy_deg: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Pinhole projection of world points ``[N,P,3]`` into the views ``v7 [N,7]``.

    Returns (``uv [N,P,2]`` in ``grid_sample`` coordinates: x right, y down, [-1, 1] across a
    square image; depth ``[N,P]`` along the viewing direction, metres). Matches MuJoCo's renders
    (tested against the rendered target).
    """
    pos, right, up, fwd = camera_axes(v7)
    d = points - pos[:, None]
    depth = (d * fwd[:, None]).sum(-1)
    tan = math.tan(math.radians(fovy_deg) / 2)
    safe = depth.clamp_min(1e-3) * tan
    u = (d * right[:, None]).sum(-1) / safe
    v = (d * up[:, None]).sum(-1) / safe
    return torch.stack((u, -v), dim=-1), depth


def grid_points(bounds: tuple[float, ...], size: tuple[int, int, int]) -> torch.Tensor:
    """Cell centres ``[gz, gy, gx, 3]`` (x, y, z) of the world volume ``bounds = (x0, x1, y0, y1, z0, z1)``."""
    gx, gy, gz = size
    axes = [
        torch.linspace(lo + (hi - lo) / (2 * n), hi - (hi - lo) / (2 * n), n)
        for (lo, hi), n in zip(((bounds[0], bounds[1]), (bounds[2], bounds[3]), (bounds[4], bounds[5])), (gx, gy, gz))
    ]
    zz, yy, xx = torch.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    return torch.stack((xx, yy, zz), dim=-1)


class LiftedRepresentation(nn.Module):
    """psi(x, v): a view lifted into the world volume, ``[N,3,H,W], [N,7] -> [N,C,gz,gy,gx]``.

    Args:
        channels: C, feature channels of each volume cell.
        image_size: input side in pixels (32 or more, a multiple of 4).
        bounds: world box ``(x0, x1, y0, y1, z0, z1)`` (metres) of the volume.
        size: cells ``(gx, gy, gz)``.
        fovy_deg: the cameras' vertical field of view.
        position_scale: the GQN divides viewpoint positions by this; the lifting multiplies back.
        r_channels: channels of the view-aligned representation that :meth:`render` returns.
        ray_samples: depths sampled along each query ray.
        ray_depth: (near, far) metres of the ray samples.
    """

    def __init__(
        self,
        channels: int,
        image_size: int,
        bounds: tuple[float, ...],
        size: tuple[int, int, int],
        fovy_deg: float,
        position_scale: float,
        r_channels: int,
        ray_samples: int,
        ray_depth: tuple[float, float],
    ) -> None:
        super().__init__()
        self.channels = channels
        self.fovy_deg = float(fovy_deg)
        self.position_scale = float(position_scale)
        self.ray_samples = int(ray_samples)
        self.ray_depth = (float(ray_depth[0]), float(ray_depth[1]))
        self.bounds = tuple(float(b) for b in bounds)
        self.size = tuple(int(s) for s in size)
        width = 32
        # Feature map at H/2 (32 px in: 16 x 16), receptive field 11 px: small, so that a 32 px
        # view trains in well under a second per batch on one CPU core.
        self.cnn = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
        )
        # Per point: the sampled feature, the point's depth in the view, whether it is in view, and
        # its world position (so evidence can be put where it belongs, e.g. a floor mark at z = 0).
        self.point_mlp = nn.Sequential(nn.Linear(width + 5, 32), nn.ReLU(), nn.Linear(32, channels), nn.ReLU())
        # World-frame mixing: 3-D convs over the volume let evidence meet across rays (a floor mark
        # and the line of sight of the object above it), reaching +-4 cells up and down.
        # Residual, so the lifted evidence always reaches the output.
        self.volume_net = nn.Sequential(
            nn.Conv3d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv3d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv3d(channels, channels, 3, padding=(2, 1, 1), dilation=(2, 1, 1)),
        )
        self.to_view = nn.Sequential(
            nn.Conv2d(channels * self.ray_samples, r_channels, 1), nn.ReLU(), nn.Conv2d(r_channels, r_channels, 1)
        )
        self.register_buffer("points", grid_points(self.bounds, self.size).reshape(-1, 3), persistent=False)
        self.register_buffer("lo", torch.tensor(self.bounds[0::2]), persistent=False)
        self.register_buffer("hi", torch.tensor(self.bounds[1::2]), persistent=False)
        self.register_buffer("unit_points", (self.points - self.lo) / (self.hi - self.lo) * 2 - 1, persistent=False)
        self._mid_depth = 0.5 * (self.ray_depth[0] + self.ray_depth[1])

    def _metric(self, v: torch.Tensor) -> torch.Tensor:
        return torch.cat((v[:, :3] * self.position_scale, v[:, 3:]), dim=1)

    def forward(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``x [N,3,H,W]`` in [0,1], ``v [N,7]`` (positions divided by ``position_scale``) -> ``[N,C,gz,gy,gx]``."""
        n = x.shape[0]
        feat = self.cnn(x)
        uv, depth = project(self.points.to(x.dtype).expand(n, -1, -1), self._metric(v.to(x.dtype)), self.fovy_deg)
        inside = ((uv.abs() <= 1.0).all(-1) & (depth > 0.05)).to(x.dtype)
        sampled = F.grid_sample(feat, uv[:, :, None, :], mode="bilinear", padding_mode="zeros", align_corners=False)
        sampled = sampled[..., 0].transpose(1, 2)  # [N, P, width]
        depth_code = (depth - self._mid_depth)[..., None]
        where = self.unit_points.to(x.dtype).expand(n, -1, -1)
        h = self.point_mlp(torch.cat((sampled, depth_code, inside[..., None], where), dim=-1)) * inside[..., None]
        gx, gy, gz = self.size
        h = h.transpose(1, 2).reshape(n, self.channels, gz, gy, gx)
        return h + self.volume_net(h)

    def render(self, volume: torch.Tensor, v: torch.Tensor, grid: int) -> torch.Tensor:
        """The volume seen from query viewpoints ``v [B,7]``: ``[B,C,gz,gy,gx] -> [B,r_channels,grid,grid]``."""
        b = volume.shape[0]
        pos, right, up, fwd = camera_axes(self._metric(v.to(volume.dtype)))
        tan = math.tan(math.radians(self.fovy_deg) / 2)
        cells = (torch.arange(grid, device=volume.device, dtype=volume.dtype) + 0.5) / grid * 2 - 1  # [-1, 1]
        sy, sx = torch.meshgrid(-cells, cells, indexing="ij")  # image rows go down, camera y up
        dirs = fwd[:, None, None] + tan * (
            sx[None, ..., None] * right[:, None, None] + sy[None, ..., None] * up[:, None, None]
        )
        t = torch.linspace(*self.ray_depth, self.ray_samples, device=volume.device, dtype=volume.dtype)
        pts = pos[:, None, None, None] + t[None, :, None, None, None] * dirs[:, None]  # [B,S,g,g,3]
        lo, hi = self.lo.to(volume.dtype), self.hi.to(volume.dtype)
        coords = (pts - lo) / (hi - lo) * 2 - 1  # grid_sample wants (x, y, z) in [-1, 1]
        samples = F.grid_sample(
            volume, coords, mode="bilinear", padding_mode="zeros", align_corners=False
        )  # [B,C,S,g,g]
        return self.to_view(samples.reshape(b, -1, grid, grid))
