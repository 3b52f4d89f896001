"""A picture of a dataset (``wm data show``): a grid of views per scene, plus the maze map.

Rows are scenes; columns are views spread evenly along each scene's camera trajectory, each
titled with its camera yaw/pitch; a last column shows the ``map`` extra when the dataset has
one (mazes). Drawn with matplotlib's Agg backend (no display needed). Never imports torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from worldmodel.data.reader import SceneDataset


def show_dataset(
    root: str | Path, out: str | Path, scenes: int = 4, views: int = 8, start: int = 0, dpi: int = 100
) -> Path:
    """Draw ``scenes`` scenes (from ``start``) with up to ``views`` views each into the PNG ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if scenes < 1 or views < 1:
        raise ValueError(f"need scenes >= 1 and views >= 1, got scenes={scenes} views={views}")
    ds = SceneDataset(root, allow_incomplete=True)
    if not 0 <= start < len(ds):
        raise ValueError(f"--start {start} out of range: the dataset has {len(ds)} scenes")
    rows = list(range(start, min(len(ds), start + scenes)))
    cols = np.unique(np.linspace(0, ds.views - 1, min(ds.views, views)).round().astype(int))
    has_map = "map" in ds.extras
    ncols = len(cols) + int(has_map)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.5 * ncols, 1.7 * len(rows)), squeeze=False)
    for r, i in enumerate(rows):
        frames, cameras = ds.read_views(i, cols)
        for c, v in enumerate(cols):
            ax = axes[r, c]
            ax.imshow(frames[c], interpolation="nearest")
            yaw, pitch = np.rad2deg(cameras[c, 3]), np.rad2deg(cameras[c, 4])
            ax.set_title(f"v{v} y{yaw:.0f} p{pitch:.0f}", fontsize=6)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(f"scene {ds.global_index(i)}", fontsize=7)
        if has_map:
            ax = axes[r, -1]
            grid = ds.read_extras(i)["map"]
            ax.imshow(grid, interpolation="nearest", cmap=None if grid.ndim == 3 else "gray")
            ax.set_title("map", fontsize=6)
            ax.set_xticks([])
            ax.set_yticks([])
    info = ds.info
    fig.suptitle(f"{info['source']}: {info['scenes']} scenes, {info['views']} views, {info['size']}px", fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out
