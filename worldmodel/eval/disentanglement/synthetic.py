"""A small synthetic factor dataset and representations with known disentanglement answers.

:class:`SyntheticFactorDataset` renders each factor combination through a fixed random
non-linear embedding ``x = tanh(A v + b)`` of the standardised factors ``v`` (``A`` has full
column rank), so :meth:`~SyntheticFactorDataset.decode_factors` can invert it exactly. On top of
that inverse the representations of the known-answer tests are built:

* :func:`identity_representation`: the factor classes themselves (every metric near its ceiling);
* :func:`rotated_representation`: the standardised factors times an orthogonal matrix
  (:func:`mixing_rotation` spreads every factor evenly over every latent; axis-alignment metrics drop);
* :func:`constant_representation`: zeros (chance, or 0).

Used by the tests and by ``scripts/bench_disentanglement.py``; torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from worldmodel.data.factors import FactorDataError, check_factors
from worldmodel.eval.disentanglement.common import RepresentationFn


class SyntheticFactorDataset:
    """A :class:`~worldmodel.data.factors.FactorDataset` of ``tanh(A v + b)`` images of the factors.

    Args:
        factor_sizes: classes per factor, e.g. ``(3, 4, 5, 6)``.
        observation_shape: ``(C, H, W)`` of an observation; ``C*H*W`` must be >= the number of factors.
        seed: seed of the embedding ``A, b`` (the data, not the sampling).
    """

    def __init__(
        self,
        factor_sizes: Sequence[int] = (3, 4, 5, 6),
        observation_shape: tuple[int, int, int] = (1, 4, 4),
        seed: int = 0,
    ) -> None:
        self.factor_sizes = tuple(int(s) for s in factor_sizes)
        if not self.factor_sizes or any(s < 1 for s in self.factor_sizes):
            raise FactorDataError(f"factor_sizes must be positive integers, got {tuple(factor_sizes)}")
        self.factor_names = tuple(f"factor_{k}" for k in range(len(self.factor_sizes)))
        self.observation_shape = tuple(int(s) for s in observation_shape)
        dim = int(np.prod(self.observation_shape))
        if dim < len(self.factor_sizes):
            raise FactorDataError(
                f"observation_shape {self.observation_shape} has fewer pixels than the {len(self.factor_sizes)} factors"
            )
        g = np.random.default_rng(seed)
        self._a = g.normal(size=(dim, len(self.factor_sizes))) / np.sqrt(len(self.factor_sizes))
        self._b = g.normal(scale=0.1, size=dim)
        sizes = np.asarray(self.factor_sizes, dtype=np.float64)
        self._mean = (sizes - 1) / 2
        self._std = np.sqrt(np.maximum(sizes**2 - 1, 1) / 12)  # std of a uniform discrete variable

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Independent uniform classes per factor: ``int64 [n, F]``."""
        return np.stack([rng.integers(0, s, size=n) for s in self.factor_sizes], axis=1).astype(np.int64)

    def standardise(self, factors: np.ndarray) -> np.ndarray:
        """Factor classes -> zero-mean, unit-variance values (under the uniform grid)."""
        return (np.asarray(factors, dtype=np.float64) - self._mean) / self._std

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``float32 [n, C, H, W]`` = ``tanh(A v + b)`` (deterministic; ``rng`` unused)."""
        v = self.standardise(check_factors(factors, self.factor_sizes))
        x = np.tanh(v @ self._a.T + self._b)
        return x.astype(np.float32).reshape(-1, *self.observation_shape)

    def decode_factors(self, observations: np.ndarray) -> np.ndarray:
        """Invert the embedding: the standardised factors ``float64 [n, F]`` of observations."""
        x = np.asarray(observations, dtype=np.float64).reshape(observations.shape[0], -1)
        y = np.arctanh(np.clip(x, -1 + 1e-7, 1 - 1e-7)) - self._b
        sol, *_ = np.linalg.lstsq(self._a, y.T, rcond=None)
        return sol.T


def identity_representation(dataset: SyntheticFactorDataset) -> RepresentationFn:
    """Codes = the factor classes themselves (as floats)."""
    return lambda obs: dataset.decode_factors(obs) * dataset._std + dataset._mean


def rotated_representation(dataset: SyntheticFactorDataset, rotation: np.ndarray) -> RepresentationFn:
    """Codes = standardised factors times ``rotation`` (``[F, F]`` orthogonal)."""
    return lambda obs: dataset.decode_factors(obs) @ rotation.T


def constant_representation(dim: int = 4) -> RepresentationFn:
    """Codes = zeros ``[n, dim]`` whatever the input."""
    return lambda obs: np.zeros((obs.shape[0], dim))


def mixing_rotation(n: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """An orthogonal ``[n, n]`` matrix that mixes every factor into every latent.

    A normalised Hadamard matrix when ``n`` is a power of two (every entry ``+-1/sqrt(n)``: no
    latent is closer to one factor than to another); otherwise a Haar-random rotation from ``rng``.
    """
    if n >= 1 and n & (n - 1) == 0:
        from scipy.linalg import hadamard

        return hadamard(n).astype(np.float64) / np.sqrt(n)
    return random_rotation(n, rng if rng is not None else np.random.default_rng(0))


def random_rotation(n: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-random rotation ``[n, n]`` (scipy's ``special_ortho_group``) drawn from ``rng``."""
    from scipy.stats import special_ortho_group

    return special_ortho_group.rvs(n, random_state=rng) if n > 1 else np.ones((1, 1))
