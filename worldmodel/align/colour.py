"""Input-space OT: map target frames' pixel colours onto the source palette (POT ``ot.da``).

:func:`fit_colour_map` samples pixel colours of unlabeled target and source frames, fits a POT
domain-adaptation transport from target colours to source colours (``ot.da.EMDTransport`` or
``ot.da.SinkhornTransport``) and tabulates its out-of-sample mapping on a regular RGB grid
(:class:`ColourMap`). The table makes applying the map a lookup (32^3 colours are transported
once instead of every pixel of every frame a policy sees); the transport itself is POT's.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

COLOUR_TRANSPORTS: tuple[str, ...] = ("emd", "sinkhorn")
"""``ot.da`` transports :func:`fit_colour_map` accepts."""


class ColourMap(nn.Module):
    """Per-pixel colour map from a table ``[L, L, L, 3]`` over the RGB cube (nearest grid colour)."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        if table.ndim != 4 or table.shape[-1] != 3 or len(set(table.shape[:3])) != 1:
            raise ValueError(f"colour table must be [L, L, L, 3], got shape {tuple(table.shape)}")
        self.register_buffer("table", table.float())
        self.levels = int(table.shape[0])

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Map float frames ``[B, 3, H, W]`` in [0, 1]."""
        idx = (frames.clamp(0, 1) * (self.levels - 1)).round().long()
        mapped = self.table[idx[:, 0], idx[:, 1], idx[:, 2]]  # [B, H, W, 3]
        return mapped.permute(0, 3, 1, 2).to(frames.dtype).contiguous()

    def map_uint8(self, frames: np.ndarray) -> np.ndarray:
        """Map uint8 frames ``[N, H, W, 3]`` (what :meth:`forward` does, rounded back to uint8)."""
        x = torch.as_tensor(frames).permute(0, 3, 1, 2).float().div_(255.0)
        with torch.no_grad():
            y = self(x.to(self.table.device)).permute(0, 2, 3, 1).cpu().numpy()
        return np.clip(np.rint(y * 255.0), 0, 255).astype(np.uint8)


def _sample_colours(frames: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    pixels = frames.reshape(-1, 3)
    if len(pixels) == 0:
        raise ValueError("no pixels to fit a colour map on (empty frame set)")
    pick = rng.choice(len(pixels), size=min(n, len(pixels)), replace=False)
    return pixels[pick].astype(np.float64) / 255.0


def fit_colour_map(
    target_frames: np.ndarray,
    source_frames: np.ndarray,
    transport: str = "emd",
    samples: int = 2000,
    reg: float = 0.01,
    levels: int = 32,
    seed: int = 0,
) -> ColourMap:
    """Fit a target -> source colour transport on ``samples`` random pixels of each set.

    Args:
        target_frames, source_frames: uint8 ``[N, H, W, 3]`` (unlabeled, unpaired).
        transport: ``"emd"`` (exact OT) or ``"sinkhorn"`` (entropic, ``reg``), see :data:`COLOUR_TRANSPORTS`.
        samples: pixels drawn from each set.
        levels: grid resolution per channel of the table.
        seed: pixel sampling seed.
    """
    import ot

    if transport not in COLOUR_TRANSPORTS:
        raise ValueError(f"unknown colour transport {transport!r}; valid values: {', '.join(COLOUR_TRANSPORTS)}")
    rng = np.random.default_rng(seed)
    xs, xt = _sample_colours(target_frames, samples, rng), _sample_colours(source_frames, samples, rng)
    model = ot.da.EMDTransport() if transport == "emd" else ot.da.SinkhornTransport(reg_e=reg)
    model.fit(Xs=xs, Xt=xt)
    grid = np.linspace(0.0, 1.0, levels)
    cube = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(-1, 3)
    mapped = np.clip(model.transform(Xs=cube), 0.0, 1.0)
    return ColourMap(torch.as_tensor(mapped.reshape(levels, levels, levels, 3), dtype=torch.float32))


__all__ = ["COLOUR_TRANSPORTS", "ColourMap", "fit_colour_map"]
