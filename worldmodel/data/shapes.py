"""2-D shapes with dSprites' exact factor grid, rendered on demand, and a reader of dSprites' ``.npz``.

:class:`ShapesDataset` is our own renderer of the grid of dSprites (Matthey et al. 2017):

====================  =====  =========================================
factor                size   values
====================  =====  =========================================
``shape``             3      square, ellipse, heart
``scale``             6      0.5 .. 1 (linear)
``orientation``       40     0 .. 2 pi (``linspace``: 0 and 2 pi both present, as in dSprites)
``pos_x``             32     0 .. 1, left to right
``pos_y``             32     0 .. 1, top to bottom
====================  =====  =========================================

3 x 6 x 40 x 32 x 32 = 737,280 binary 64x64 images. Image ``i`` has the factors
``np.unravel_index(i, FACTOR_SIZES)`` (dSprites' order: ``pos_y`` varies fastest). Nothing is
stored: :meth:`ShapesDataset.render` is a vectorised numpy function of the factors (a pixel is
on when its centre lies inside the shape), so the data set costs no disk and no memory, and an
image is the same on every machine. Orientation turns the shape counter-clockwise as seen on the
screen. The shapes differ from DeepMind's sprites in detail (our heart is the implicit curve
``(x^2 + y^2 - 1)^3 = x^2 y^3``), not in the grid.

:class:`DSpritesNpz` reads the official ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``
(keys ``imgs``, ``latents_values``, ``latents_classes``; loaded with ``allow_pickle=False``) and
serves it through the same protocol. Both implement :class:`worldmodel.data.factors.FactorDataset`
(``factor_names``, ``factor_sizes``, ``sample_factors``, ``sample_observations_from_factors``)
plus ``images(indices)`` / ``factors_of(indices)`` for the training loaders.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from worldmodel.data.factors import FactorDataError, check_factors

FACTOR_NAMES: tuple[str, ...] = ("shape", "scale", "orientation", "pos_x", "pos_y")
FACTOR_SIZES: tuple[int, ...] = (3, 6, 40, 32, 32)
SHAPE_NAMES: tuple[str, ...] = ("square", "ellipse", "heart")
#: Values of each factor class (dSprites' ``latents_values`` without the constant colour).
FACTOR_VALUES: dict[str, np.ndarray] = {
    "shape": np.arange(1.0, 4.0),
    "scale": np.linspace(0.5, 1.0, 6),
    "orientation": np.linspace(0.0, 2 * np.pi, 40),
    "pos_x": np.linspace(0.0, 1.0, 32),
    "pos_y": np.linspace(0.0, 1.0, 32),
}
#: Half-size of a scale-1 shape and the border kept free, as fractions of the image side.
SHAPE_RADIUS, MARGIN = 0.125, 0.2
#: Images rendered per numpy pass (bounds the temporary arrays to a few MB).
RENDER_CHUNK = 1024


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether the local coordinates ``(u, v)`` (y up, radius 1) lie in the shape (0 square, 1 ellipse, 2 heart)."""
    if shape == 0:
        return np.maximum(np.abs(u), np.abs(v)) <= 1.0
    if shape == 1:
        return (u / 1.2) ** 2 + (v / 0.6) ** 2 <= 1.0
    hx, hy = u * 1.15, v * 1.15 + 0.15  # the implicit heart spans about [-1.14, 1.14] x [-1, 1.25]
    return (hx * hx + hy * hy - 1.0) ** 3 - hx * hx * hy**3 <= 0.0


def render_shapes(factors: np.ndarray, size: int = 64) -> np.ndarray:
    """Binary images ``uint8 [n, size, size]`` (0 or 1) of factor classes ``int [n, 5]`` (see module doc)."""
    fac = check_factors(factors, FACTOR_SIZES, what="shape factors")
    if size < 8:
        raise ValueError(f"size must be >= 8 pixels, got {size}")
    out = np.empty((fac.shape[0], size, size), dtype=np.uint8)
    centres = (np.arange(size, dtype=np.float32) + 0.5) / size
    for lo in range(0, fac.shape[0], RENDER_CHUNK):
        f = fac[lo : lo + RENDER_CHUNK]
        scale = FACTOR_VALUES["scale"][f[:, 1]].astype(np.float32)
        theta = FACTOR_VALUES["orientation"][f[:, 2]].astype(np.float32)
        cx = (MARGIN + FACTOR_VALUES["pos_x"][f[:, 3]] * (1 - 2 * MARGIN)).astype(np.float32)
        cy = (MARGIN + FACTOR_VALUES["pos_y"][f[:, 4]] * (1 - 2 * MARGIN)).astype(np.float32)
        r = (SHAPE_RADIUS * scale)[:, None, None]
        x = (centres[None, None, :] - cx[:, None, None]) / r  # columns, to the right
        y = (cy[:, None, None] - centres[None, :, None]) / r  # rows, upwards on screen
        c, s = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
        u, v = c * x + s * y, -s * x + c * y  # rotate the point by -theta = the shape by +theta
        block = out[lo : lo + len(f)]
        for shape in range(FACTOR_SIZES[0]):
            rows = f[:, 0] == shape
            if rows.any():
                block[rows] = _inside(shape, u[rows], v[rows])
    return out


class ShapesDataset:
    """The procedural dSprites grid (737,280 images), rendered on demand; a ``FactorDataset``.

    Args:
        size: image side in pixels (dSprites: 64).
    """

    factor_names: tuple[str, ...] = FACTOR_NAMES
    factor_sizes: tuple[int, ...] = FACTOR_SIZES
    channels = 1

    def __init__(self, size: int = 64) -> None:
        self.size = int(size)
        self.num_images = int(np.prod(FACTOR_SIZES))

    def __len__(self) -> int:
        return self.num_images

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one observation."""
        return (1, self.size, self.size)

    def factors_of(self, indices: np.ndarray | Sequence[int]) -> np.ndarray:
        """Factor classes ``int64 [n, 5]`` of flat image indices (dSprites order)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_images):
            raise IndexError(f"image indices must be in 0..{self.num_images - 1}, got {idx.min()}..{idx.max()}")
        return np.stack(np.unravel_index(idx, FACTOR_SIZES), axis=1).astype(np.int64)

    def index_of(self, factors: np.ndarray) -> np.ndarray:
        """Flat image indices ``int64 [n]`` of factor classes ``[n, 5]``."""
        fac = check_factors(factors, FACTOR_SIZES, what="shape factors")
        return np.ravel_multi_index(fac.T, FACTOR_SIZES).astype(np.int64)

    def images(self, indices: np.ndarray | Sequence[int]) -> np.ndarray:
        """``uint8 [n, 1, H, W]`` images (0 or 255) of flat indices."""
        return self.render(self.factors_of(indices))

    def render(self, factors: np.ndarray) -> np.ndarray:
        """``uint8 [n, 1, H, W]`` images (0 or 255) of factor classes ``[n, 5]``."""
        return (render_shapes(factors, self.size) * np.uint8(255))[:, None]

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``int64 [n, 5]``: each factor independent and uniform over its classes."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return np.stack([rng.integers(0, s, size=n) for s in FACTOR_SIZES], axis=1).astype(np.int64)

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``float32 [n, 1, H, W]`` in {0, 1} (deterministic: ``rng`` is unused)."""
        return render_shapes(factors, self.size).astype(np.float32)[:, None]

    def __repr__(self) -> str:
        grid = dict(zip(FACTOR_NAMES, FACTOR_SIZES))
        return f"ShapesDataset({self.num_images} images of {self.size}x{self.size}, factors {grid})"


#: Keys of the official dSprites file and the shapes they must have (N images).
DSPRITES_KEYS: dict[str, str] = {
    "imgs": "[N, 64, 64] uint8 (0/1)",
    "latents_values": "[N, 6] float",
    "latents_classes": "[N, 6] int",
}


def is_dsprites_file(data: str | Path | None) -> bool:
    """True if ``data`` names an ``.npz`` file (read as dSprites by :class:`DSpritesNpz`)."""
    return bool(data) and str(data).endswith(".npz")


class DSpritesNpz:
    """DeepMind's ``dsprites_ndarray_*.npz`` as a ``FactorDataset`` (colour, constant, is dropped).

    Loads the whole array (the file is ~26 MB compressed, 2.9 GB as uint8) with
    ``allow_pickle=False``; checks the keys, shapes and that the classes form the complete grid.

    Raises:
        FactorDataError: a missing key, a wrong shape, or classes that are not a complete grid.
    """

    channels = 1

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no dSprites file at {self.path} (expected dsprites_ndarray_*.npz)")
        with np.load(self.path, allow_pickle=False) as z:
            missing = [k for k in DSPRITES_KEYS if k not in z.files]
            if missing:
                raise FactorDataError(
                    f"{self.path}: missing arrays {missing}; a dSprites file holds "
                    + ", ".join(f"{k} {v}" for k, v in DSPRITES_KEYS.items())
                    + f" (has {sorted(z.files)})"
                )
            imgs, values, classes = z["imgs"], z["latents_values"], z["latents_classes"]
        n = imgs.shape[0] if imgs.ndim else 0
        if imgs.ndim != 3 or imgs.shape[1] != imgs.shape[2] or n == 0:
            raise FactorDataError(
                f"{self.path}: imgs must have shape [N, H, H] (dSprites: [737280, 64, 64]), got {imgs.shape}"
            )
        for key, arr in (("latents_values", values), ("latents_classes", classes)):
            if arr.shape != (n, 6):
                raise FactorDataError(
                    f"{self.path}: {key} must have shape [N, 6] = [{n}, 6] (one row per image), got {arr.shape}"
                )
        fac = classes[:, 1:].astype(np.int64)  # drop colour
        sizes = tuple(int(s) for s in fac.max(axis=0) + 1)
        if int(np.prod(sizes)) != n:
            raise FactorDataError(
                f"{self.path}: {n} images but the classes span a grid of {sizes} = {int(np.prod(sizes))}"
            )
        flat = np.ravel_multi_index(fac.T, sizes)
        self._row_of = np.empty(n, dtype=np.int64)
        self._row_of[flat] = np.arange(n)
        if np.unique(flat).size != n:
            raise FactorDataError(f"{self.path}: the latents_classes rows repeat combinations; not a complete grid")
        self.imgs = imgs
        self.factors = fac
        self.factor_values = values[:, 1:]
        self.factor_sizes: tuple[int, ...] = sizes
        self.factor_names: tuple[str, ...] = (
            FACTOR_NAMES if sizes == FACTOR_SIZES else tuple(f"factor_{k}" for k in range(5))
        )
        self.size = int(imgs.shape[1])
        self.scale255 = np.uint8(255) if imgs.max(initial=0) <= 1 else np.uint8(1)

    def __len__(self) -> int:
        return int(self.imgs.shape[0])

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one observation."""
        return (1, self.size, self.size)

    def factors_of(self, indices: np.ndarray | Sequence[int]) -> np.ndarray:
        """Factor classes ``int64 [n, 5]`` of rows of the file."""
        return self.factors[np.asarray(indices, dtype=np.int64)]

    def images(self, indices: np.ndarray | Sequence[int]) -> np.ndarray:
        """``uint8 [n, 1, H, W]`` (0 or 255) of rows of the file."""
        return (self.imgs[np.asarray(indices, dtype=np.int64)] * self.scale255)[:, None]

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``int64 [n, 5]``: each factor independent and uniform over its classes."""
        return np.stack([rng.integers(0, s, size=n) for s in self.factor_sizes], axis=1).astype(np.int64)

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``float32 [n, 1, H, W]`` in [0, 1] of the given factor classes."""
        fac = check_factors(factors, self.factor_sizes, what="dSprites factors")
        rows = self._row_of[np.ravel_multi_index(fac.T, self.factor_sizes)]
        return self.images(rows).astype(np.float32) / np.float32(255.0)
