"""SAP score (Kumar et al., "Variational Inference of Disentangled Latent Concepts...", ICLR 2018).

A score matrix ``S [D, F]`` says how well each single latent predicts each factor:

* discrete factors (default): test accuracy of scikit-learn's ``LinearSVC(C=0.01,
  class_weight="balanced")`` on that one latent (disentanglement_lib's choice);
* ``continuous_factors=True``: ``R^2`` of a linear fit, ``cov(z_i, v_k)^2 / (var z_i var v_k)``.

SAP is the mean over factors of the gap between the best and the second-best latent. The gap is
written here (a sort and a difference); the classifiers come from scikit-learn. Ceiling: a 1-D
linear classifier cannot always separate every class of a many-valued factor, and the second
latent scores about chance (1/K), so even the true factors score below 1 (about 1 - 1/K).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from worldmodel.eval.disentanglement.common import DisentanglementError, check_codes_factors


@dataclass(frozen=True)
class SAPConfig:
    """Settings of SAP."""

    continuous_factors: bool = False
    """Score latents by R^2 (continuous factors) instead of classification accuracy (disentanglement_lib: False)."""
    train_fraction: float = 2 / 3
    """Share of the samples the classifiers are fitted on (10000:5000); unused with continuous factors."""
    svc_c: float = 0.01
    """Regularisation C of the LinearSVC (disentanglement_lib: 0.01)."""

    def __post_init__(self) -> None:
        if not 0 < self.train_fraction < 1:
            raise DisentanglementError(f"SAPConfig.train_fraction must be in (0, 1), got {self.train_fraction}")


def score_matrix(codes: np.ndarray, factors: np.ndarray, config: SAPConfig, rng: np.random.Generator) -> np.ndarray:
    """``S [D, F]``: how well latent ``i`` alone predicts factor ``k``."""
    z, f = check_codes_factors(codes, factors)
    n_codes, n_factors = z.shape[1], f.shape[1]
    s = np.zeros((n_codes, n_factors))
    if config.continuous_factors:
        zc, fc = z - z.mean(0), f - f.mean(0)
        cov = zc.T @ fc / (z.shape[0] - 1)
        var_z, var_f = zc.var(0, ddof=1), fc.var(0, ddof=1)
        denom = np.outer(var_z, var_f)
        return np.where(denom > 0, cov**2 / np.where(denom > 0, denom, 1.0), 0.0)
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    n_train = int(round(config.train_fraction * z.shape[0]))
    if n_train < 2 or z.shape[0] - n_train < 1:
        raise DisentanglementError(f"SAP: {z.shape[0]} samples are too few to split {config.train_fraction:.2f}")
    for k in range(n_factors):
        y_train, y_test = f[:n_train, k], f[n_train:, k]
        if np.unique(y_train).size < 2:
            raise DisentanglementError(f"SAP: factor {k} takes a single value in the {n_train} training samples")
        for i in range(n_codes):
            x_train, x_test = z[:n_train, i : i + 1], z[n_train:, i : i + 1]
            if np.ptp(x_train) == 0:  # a constant latent predicts nothing: balanced chance
                s[i, k] = np.mean(y_test == np.bincount(y_train).argmax())
                continue
            model = LinearSVC(C=config.svc_c, class_weight="balanced", random_state=int(rng.integers(2**31 - 1)))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(x_train, y_train)
            s[i, k] = np.mean(model.predict(x_test) == y_test)
    return s


def sap_score(
    codes: np.ndarray, factors: np.ndarray, rng: np.random.Generator, config: SAPConfig = SAPConfig()
) -> dict[str, Any]:  # noqa: B008
    """SAP of ``codes [n, D]`` against ``factors [n, F]``: ``{"score", "per_factor", "score_matrix": [D][F]}``."""
    s = score_matrix(codes, factors, config, rng)
    top = -np.sort(-s, axis=0)
    second = top[1] if top.shape[0] > 1 else np.zeros(s.shape[1])
    gaps = top[0] - second
    return {"score": float(gaps.mean()), "per_factor": gaps.tolist(), "score_matrix": s.tolist()}
