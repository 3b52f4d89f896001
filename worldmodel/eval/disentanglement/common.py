"""Shared pieces of the disentanglement metrics: errors, input checks, batched sampling of codes.

A *representation function* maps a batch of observations ``float32 [n, C, H, W]`` to codes
``[n, D]`` (numpy or anything ``np.asarray`` accepts). Everything here draws randomness from the
``np.random.Generator`` it is given; nothing touches global random state.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from worldmodel.data.factors import FactorDataset, check_factors

RepresentationFn = Callable[[np.ndarray], np.ndarray]
"""``representation_fn(observations float32 [n, C, H, W]) -> codes [n, D]``."""


class DisentanglementError(ValueError):
    """Bad input to a disentanglement metric (shapes, sizes, names); the message names the thing and what is allowed."""


def check_codes_factors(
    codes: np.ndarray, factors: np.ndarray, *, what: str = "codes"
) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``codes [n, D]`` (finite floats) against ``factors [n, F]`` (non-negative integers).

    Returns ``(codes float64, factors int64)``; raises :class:`DisentanglementError` on a rank,
    length, dtype or finiteness mismatch.
    """
    z = np.asarray(codes)
    f = np.asarray(factors)
    if z.ndim != 2:
        raise DisentanglementError(f"{what} must have shape [n, D], got {z.shape}")
    if f.ndim != 2:
        raise DisentanglementError(f"factors must have shape [n, F], got {f.shape}")
    if z.shape[0] != f.shape[0]:
        raise DisentanglementError(
            f"{what} and factors disagree on n: {z.shape[0]} code rows, {f.shape[0]} factor rows"
        )
    if z.shape[0] < 2 or z.shape[1] < 1 or f.shape[1] < 1:
        raise DisentanglementError(
            f"need n >= 2 samples, D >= 1 codes and F >= 1 factors; got {what} {z.shape}, factors {f.shape}"
        )
    if not np.issubdtype(z.dtype, np.number) or not np.all(np.isfinite(z)):
        raise DisentanglementError(f"{what} must be finite numbers (dtype {z.dtype})")
    if not np.issubdtype(f.dtype, np.integer):
        if not (np.issubdtype(f.dtype, np.number) and np.all(np.mod(f, 1) == 0)):
            raise DisentanglementError(f"factors must be integer class indices, got dtype {f.dtype}")
    f = f.astype(np.int64)
    if f.min() < 0:
        raise DisentanglementError(f"factors must be class indices >= 0, got a minimum of {f.min()}")
    return z.astype(np.float64), f


def encode(representation_fn: RepresentationFn, observations: np.ndarray, batch_size: int) -> np.ndarray:
    """Codes ``float64 [n, D]`` of ``observations`` by calls of at most ``batch_size`` observations.

    Raises :class:`DisentanglementError` if the function returns a wrong shape or non-finite values.
    """
    if batch_size < 1:
        raise DisentanglementError(f"batch_size must be >= 1, got {batch_size}")
    out = []
    for start in range(0, observations.shape[0], batch_size):
        chunk = observations[start : start + batch_size]
        z = np.asarray(representation_fn(chunk))
        if z.ndim != 2 or z.shape[0] != chunk.shape[0]:
            raise DisentanglementError(
                f"representation_fn must return codes [n, D] for n={chunk.shape[0]} observations, got shape {z.shape}"
            )
        if out and z.shape[1] != out[0].shape[1]:
            raise DisentanglementError(
                f"representation_fn changed its code size from {out[0].shape[1]} to {z.shape[1]}"
            )
        if not np.all(np.isfinite(z)):
            raise DisentanglementError("representation_fn returned non-finite codes (nan or inf)")
        out.append(z.astype(np.float64))
    return np.concatenate(out, axis=0)


def sample_codes_and_factors(
    dataset: FactorDataset,
    representation_fn: RepresentationFn,
    n: int,
    rng: np.random.Generator,
    *,
    batch_size: int = 256,
    progress: bool = False,
    desc: str = "codes",
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` factor combinations, render and encode them: ``(codes float64 [n, D], factors int64 [n, F])``.

    The input of the sample-based metrics (MIG, DCI, SAP). Batched by ``batch_size``; a tqdm bar
    when ``progress``.
    """
    from tqdm import tqdm

    if n < 2:
        raise DisentanglementError(f"need at least 2 samples, got n={n}")
    codes, factors = [], []
    with tqdm(total=n, desc=desc, unit="obs", disable=not progress, dynamic_ncols=True, leave=False) as bar:
        for start in range(0, n, batch_size):
            m = min(batch_size, n - start)
            f = check_factors(dataset.sample_factors(m, rng), dataset.factor_sizes, what="dataset.sample_factors()")
            obs = dataset.sample_observations_from_factors(f, rng)
            codes.append(encode(representation_fn, obs, batch_size))
            factors.append(f)
            bar.update(m)
    return np.concatenate(codes, axis=0), np.concatenate(factors, axis=0)
