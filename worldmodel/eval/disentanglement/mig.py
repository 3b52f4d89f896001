"""Mutual Information Gap (Chen et al., "Isolating Sources of Disentanglement in VAEs", NeurIPS 2018).

Each latent is discretised into ``num_bins`` equal-width bins over its range (disentanglement_lib's
histogram discretiser, 20 bins); ``I(z_i; v_k)`` is scikit-learn's ``mutual_info_score`` of the
binned latent and the factor classes (nats). For each factor, the gap between the largest and the
second largest ``I`` over latents is divided by the factor's entropy ``H(v_k)``; MIG is the mean
over factors. Factors with a single observed class (``H = 0``) are left out (reported).

The gap and the normalisation are a few lines written here (no library has them); the mutual
information comes from scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from worldmodel.eval.disentanglement.common import DisentanglementError, check_codes_factors


@dataclass(frozen=True)
class MIGConfig:
    """Settings of MIG."""

    num_bins: int = 20
    """Equal-width bins per latent (disentanglement_lib: 20)."""

    def __post_init__(self) -> None:
        if self.num_bins < 2:
            raise DisentanglementError(f"MIGConfig.num_bins must be >= 2, got {self.num_bins}")


def discretize(codes: np.ndarray, num_bins: int) -> np.ndarray:
    """Bin each column of ``codes`` into ``num_bins`` equal-width bins over its range: ``int [n, D]``."""
    out = np.zeros(codes.shape, dtype=np.int64)
    for i in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, i], bins=num_bins)
        out[:, i] = np.digitize(codes[:, i], edges[1:-1])
    return out


def mutual_info_matrix(discrete_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """``I(z_i; v_k)`` in nats for every latent ``i`` and factor ``k``: ``[D, F]``."""
    from sklearn.metrics import mutual_info_score

    return np.array(
        [
            [mutual_info_score(factors[:, k], discrete_codes[:, i]) for k in range(factors.shape[1])]
            for i in range(discrete_codes.shape[1])
        ]
    )


def mig_score(codes: np.ndarray, factors: np.ndarray, config: MIGConfig = MIGConfig()) -> dict[str, Any]:  # noqa: B008
    """MIG of ``codes [n, D]`` against ``factors [n, F]``.

    Returns ``{"score", "per_factor": gap / H per factor (None when H = 0), "mutual_info": [D][F],
    "factor_entropy": [F]}``.
    """
    from sklearn.metrics import mutual_info_score

    z, f = check_codes_factors(codes, factors)
    mi = mutual_info_matrix(discretize(z, config.num_bins), f)
    entropy = np.array([mutual_info_score(f[:, k], f[:, k]) for k in range(f.shape[1])])
    top = -np.sort(-mi, axis=0)
    second = top[1] if top.shape[0] > 1 else np.zeros(f.shape[1])
    valid = entropy > 0
    if not valid.any():
        raise DisentanglementError("MIG: every factor takes a single value in the sample (zero entropy)")
    gaps = np.where(valid, (top[0] - second) / np.where(valid, entropy, 1.0), np.nan)
    return {
        "score": float(np.nanmean(gaps)),
        "per_factor": [None if np.isnan(g) else float(g) for g in gaps],
        "mutual_info": mi.tolist(),
        "factor_entropy": entropy.tolist(),
    }
