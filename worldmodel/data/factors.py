"""Ground-truth factor datasets: the protocol the disentanglement metrics read, an in-memory implementation.

A *factor dataset* (the ``GroundTruthData`` of disentanglement_lib, Locatello et al. 2019) knows
``F`` discrete factors of variation, factor ``k`` taking the classes ``0 .. factor_sizes[k]-1``,
and can render observations for any factor combination. Metrics that intervene on factors
(FactorVAE, beta-VAE scores) draw factors, fix some of them and render; sample-based metrics
(MIG, DCI, SAP) only need ``(codes, factors)`` pairs drawn through the same two methods.

:class:`ArrayFactorDataset` serves arrays of ``(observations, factor classes)`` held in memory,
for example a dSprites-style grid rendered once, or the on-disk ``.npz`` format below.

File format (``.npz``, written by :func:`save_factor_npz`, read by :func:`load_factor_npz`):

* ``observations``: ``[n, C, H, W]`` ``uint8`` (0..255, divided by 255 when served) or floating point;
* ``factors``: ``[n, F]`` integer classes, column ``k`` in ``0 .. factor_sizes[k]-1``;
* ``factor_names``: ``[F]`` strings (unique);
* ``factor_sizes`` (optional): ``[F]`` integers; defaults to ``factors.max(0) + 1``.

A dataset directory holds that file as ``factors.npz`` (:data:`FACTOR_FILE`).

This module never imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

FACTOR_FILE = "factors.npz"
"""File name of the factor arrays inside a dataset directory."""


class FactorDataError(ValueError):
    """A factor dataset or factor array is malformed (wrong shape, dtype, range or a missing key)."""


@runtime_checkable
class FactorDataset(Protocol):
    """Ground-truth data with discrete factors of variation (torch-free).

    Implementations: :class:`ArrayFactorDataset` here, ``worldmodel.data.shapes.ShapesDataset``.
    """

    factor_names: tuple[str, ...]
    """Name of each factor, in column order."""
    factor_sizes: tuple[int, ...]
    """Number of classes of each factor; factor ``k`` takes ``0 .. factor_sizes[k]-1``."""

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` factor combinations: ``int64 [n, F]`` (each factor independent and uniform on a grid)."""
        ...

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Render one observation per row of ``factors`` (``int [n, F]``): ``float32 [n, C, H, W]`` in ``[0, 1]``."""
        ...


def check_factors(factors: np.ndarray, factor_sizes: Sequence[int], *, what: str = "factors") -> np.ndarray:
    """Validate an integer factor array against ``factor_sizes``; return it as ``int64 [n, F]``.

    Raises :class:`FactorDataError` naming ``what`` on a wrong rank, width, dtype or class range.
    """
    arr = np.asarray(factors)
    if arr.ndim != 2 or arr.shape[1] != len(factor_sizes):
        raise FactorDataError(
            f"{what} must have shape [n, {len(factor_sizes)}] (one column per factor), got {arr.shape}"
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise FactorDataError(f"{what} must hold integer class indices, got dtype {arr.dtype} with fractions")
    arr = arr.astype(np.int64)
    sizes = np.asarray(factor_sizes, dtype=np.int64)
    if arr.size and (arr.min() < 0 or np.any(arr.max(axis=0) >= sizes)):
        bad = int(np.argmax((arr.max(axis=0) >= sizes) | (arr.min(axis=0) < 0)))
        raise FactorDataError(
            f"{what}: column {bad} holds classes {arr[:, bad].min()}..{arr[:, bad].max()}, "
            f"allowed 0..{sizes[bad] - 1} (factor_sizes={tuple(int(s) for s in sizes)})"
        )
    return arr


def _to_float_observations(obs: np.ndarray) -> np.ndarray:
    """``uint8`` -> ``float32 / 255``; floating arrays -> ``float32`` unchanged."""
    if obs.dtype == np.uint8:
        return obs.astype(np.float32) / np.float32(255.0)
    return obs.astype(np.float32, copy=False)


class ArrayFactorDataset:
    """A :class:`FactorDataset` over in-memory arrays of observations and their factor classes.

    ``sample_factors`` draws every factor independently and uniformly (the product grid), so the
    intervention metrics see the distribution they assume; this needs every combination of
    classes to be present at least once (``require_complete=True``, checked at construction).
    With ``require_complete=False`` an incomplete dataset is accepted: ``sample_factors`` then
    draws rows of the data uniformly (fine for MIG/DCI/SAP) and rendering a missing combination
    raises :class:`FactorDataError`. Several rows with the same combination are picked at random.
    """

    def __init__(
        self,
        observations: np.ndarray,
        factors: np.ndarray,
        factor_names: Sequence[str] | None = None,
        factor_sizes: Sequence[int] | None = None,
        *,
        require_complete: bool = True,
    ) -> None:
        obs = np.asarray(observations)
        if obs.ndim != 4:
            raise FactorDataError(f"observations must have shape [n, C, H, W], got {obs.shape}")
        if not (obs.dtype == np.uint8 or np.issubdtype(obs.dtype, np.floating)):
            raise FactorDataError(f"observations must be uint8 or floating point, got dtype {obs.dtype}")
        fac = np.asarray(factors)
        if fac.ndim != 2:
            raise FactorDataError(f"factors must have shape [n, F], got {fac.shape}")
        if fac.shape[0] != obs.shape[0]:
            raise FactorDataError(
                f"observations and factors disagree on n: {obs.shape[0]} observations, {fac.shape[0]} factor rows"
            )
        if fac.shape[0] == 0:
            raise FactorDataError("factor dataset is empty (n = 0)")
        n_factors = fac.shape[1]
        if factor_sizes is None:
            factor_sizes = tuple(int(s) for s in np.asarray(fac).astype(np.int64).max(axis=0) + 1)
        if len(factor_sizes) != n_factors or any(int(s) < 1 for s in factor_sizes):
            raise FactorDataError(f"factor_sizes must be {n_factors} positive integers, got {tuple(factor_sizes)}")
        self.factor_sizes: tuple[int, ...] = tuple(int(s) for s in factor_sizes)
        if factor_names is None:
            factor_names = tuple(f"factor_{k}" for k in range(n_factors))
        names = tuple(str(x) for x in factor_names)
        if len(names) != n_factors or len(set(names)) != n_factors:
            raise FactorDataError(f"factor_names must be {n_factors} unique names, got {names}")
        self.factor_names: tuple[str, ...] = names
        self.factors = check_factors(fac, self.factor_sizes)
        self.observations = obs
        # Flat grid index of each row, rows sorted by it: lookup of a combination is a binary search.
        flat = np.ravel_multi_index(self.factors.T, self.factor_sizes)
        self._order = np.argsort(flat, kind="stable")
        self._sorted_flat = flat[self._order]
        self.n_combinations = int(np.prod(self.factor_sizes, dtype=np.int64))
        self.n_present = int(np.unique(flat).size)
        self.complete = self.n_present == self.n_combinations
        if require_complete and not self.complete:
            raise FactorDataError(
                f"factor dataset is not a complete grid: {self.n_present} of {self.n_combinations} class "
                f"combinations of factor_sizes={self.factor_sizes} are present (pass require_complete=False "
                "to use it for sample-based metrics only)"
            )

    def __len__(self) -> int:
        return int(self.observations.shape[0])

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one observation."""
        return tuple(int(s) for s in self.observations.shape[1:])  # type: ignore[return-value]

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``int64 [n, F]``: independent uniform classes if the grid is complete, else uniform rows."""
        if n < 0:
            raise FactorDataError(f"n must be >= 0, got {n}")
        if self.complete:
            return np.stack([rng.integers(0, s, size=n) for s in self.factor_sizes], axis=1).astype(np.int64)
        return self.factors[rng.integers(0, len(self), size=n)].copy()

    def indices_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Row index for each factor combination (a random one among duplicates)."""
        fac = check_factors(factors, self.factor_sizes)
        flat = np.ravel_multi_index(fac.T, self.factor_sizes)
        lo = np.searchsorted(self._sorted_flat, flat, side="left")
        hi = np.searchsorted(self._sorted_flat, flat, side="right")
        missing = hi == lo
        if np.any(missing):
            row = fac[int(np.argmax(missing))]
            raise FactorDataError(
                f"{int(missing.sum())} requested factor combinations are not in the dataset, e.g. "
                f"{dict(zip(self.factor_names, (int(v) for v in row), strict=True))}"
            )
        pick = lo + np.floor(rng.random(flat.shape[0]) * (hi - lo)).astype(np.int64)
        return self._order[pick]

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``float32 [n, C, H, W]`` observations of the given combinations (``uint8`` data scaled to [0, 1])."""
        return _to_float_observations(self.observations[self.indices_from_factors(factors, rng)])


def save_factor_npz(
    path: str | Path,
    observations: np.ndarray,
    factors: np.ndarray,
    factor_names: Sequence[str],
    factor_sizes: Sequence[int] | None = None,
) -> Path:
    """Write the ``.npz`` factor file format (validated first); a directory gets ``factors.npz`` inside."""
    path = Path(path)
    if path.is_dir():
        path = path / FACTOR_FILE
    ds = ArrayFactorDataset(observations, factors, factor_names, factor_sizes, require_complete=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(
        tmp,
        observations=ds.observations,
        factors=ds.factors,
        factor_names=np.asarray(ds.factor_names, dtype=str),
        factor_sizes=np.asarray(ds.factor_sizes, dtype=np.int64),
    )
    tmp.replace(path)
    return path


def load_factor_npz(path: str | Path, *, require_complete: bool = True) -> ArrayFactorDataset:
    """Read a factor ``.npz`` file (or a directory holding ``factors.npz``) into an :class:`ArrayFactorDataset`.

    Raises :class:`FactorDataError` naming the file on a missing key or a malformed array.
    """
    path = Path(path)
    if path.is_dir():
        path = path / FACTOR_FILE
    if not path.is_file():
        raise FactorDataError(f"no factor file at {path} (expected a .npz or a directory holding {FACTOR_FILE})")
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in ("observations", "factors", "factor_names") if k not in z.files]
        if missing:
            raise FactorDataError(
                f"{path}: missing arrays {missing}; a factor file holds observations [n,C,H,W], "
                f"factors int [n,F], factor_names [F] and optionally factor_sizes [F] (has {sorted(z.files)})"
            )
        sizes = z["factor_sizes"].tolist() if "factor_sizes" in z.files else None
        try:
            return ArrayFactorDataset(
                z["observations"], z["factors"], z["factor_names"].tolist(), sizes, require_complete=require_complete
            )
        except FactorDataError as exc:
            raise FactorDataError(f"{path}: {exc}") from None
