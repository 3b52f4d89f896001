"""DCI: disentanglement, completeness, informativeness (Eastwood & Williams, ICLR 2018).

For each factor ``k`` a classifier predicts its class from all codes; its feature importances give
column ``k`` of the importance matrix ``R [D, F]`` and its test accuracy the factor's
*informativeness*. Importances (``importance=``):

* ``"gbt"`` (default): scikit-learn's ``GradientBoostingClassifier`` with its defaults, as
  disentanglement_lib (impurity-based ``feature_importances_``);
* ``"random_forest"``: ``RandomForestClassifier`` (Eastwood & Williams' other choice; faster).

With ``P_ik = R_ik / sum_k R_ik``, *disentanglement* of latent ``i`` is ``1 - H_F(P_i.)``
(entropy in base F) and the total is their average weighted by each latent's share of the
importance; *completeness* of factor ``k`` is ``1 - H_D(R_.k / sum_i R_ik)``, averaged over
factors. Latents or factors with zero total importance score 0 and carry no weight. These
entropies are written here (scipy's ``entropy`` does the sums); the paper defines them and no
library has them. The informativeness ceiling is the classifier's: trees on an exact code reach
about 1, a constant code scores the majority-class rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from worldmodel.eval.disentanglement.common import DisentanglementError, check_codes_factors

IMPORTANCE_CHOICES = ("gbt", "random_forest")


@dataclass(frozen=True)
class DCIConfig:
    """Settings of DCI."""

    importance: str = "gbt"
    """Classifier whose feature importances form R: 'gbt' (disentanglement_lib) or 'random_forest'."""
    train_fraction: float = 2 / 3
    """Share of the samples the classifiers are fitted on; the rest measure informativeness (10000:5000)."""
    n_estimators: int = 100
    """Trees (boosting stages) per classifier (scikit-learn's default)."""
    n_jobs: int | None = None
    """Parallel jobs of the random forest (None: one)."""

    def __post_init__(self) -> None:
        if self.importance not in IMPORTANCE_CHOICES:
            raise DisentanglementError(
                f"DCIConfig.importance {self.importance!r} is unknown; allowed: {', '.join(IMPORTANCE_CHOICES)}"
            )
        if not 0 < self.train_fraction < 1:
            raise DisentanglementError(f"DCIConfig.train_fraction must be in (0, 1), got {self.train_fraction}")
        if self.n_estimators < 1:
            raise DisentanglementError(f"DCIConfig.n_estimators must be >= 1, got {self.n_estimators}")


def _classifier(config: DCIConfig, seed: int) -> Any:
    if config.importance == "gbt":
        from sklearn.ensemble import GradientBoostingClassifier

        return GradientBoostingClassifier(n_estimators=config.n_estimators, random_state=seed)
    from sklearn.ensemble import RandomForestClassifier

    # max_features=None: every split sees every latent, so unrelated latents get no importance from
    # splits forced onto them (with the usual sqrt(D) subset the true factors score D ~ 0.87, not ~1).
    return RandomForestClassifier(
        n_estimators=config.n_estimators, max_features=None, random_state=seed, n_jobs=config.n_jobs
    )


def importance_matrix(
    codes: np.ndarray, factors: np.ndarray, config: DCIConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(R [D, F], train accuracy [F], test accuracy [F])`` from the first ``train_fraction`` of the samples."""
    z, f = check_codes_factors(codes, factors)
    n_train = int(round(config.train_fraction * z.shape[0]))
    if n_train < 2 or z.shape[0] - n_train < 1:
        raise DisentanglementError(
            f"DCI: {z.shape[0]} samples are too few to split {config.train_fraction:.2f} for training"
        )
    r = np.zeros((z.shape[1], f.shape[1]))
    train_acc, test_acc = np.zeros(f.shape[1]), np.zeros(f.shape[1])
    for k in range(f.shape[1]):
        y_train, y_test = f[:n_train, k], f[n_train:, k]
        if np.unique(y_train).size < 2:
            raise DisentanglementError(f"DCI: factor {k} takes a single value in the {n_train} training samples")
        model = _classifier(config, int(rng.integers(2**31 - 1)))
        model.fit(z[:n_train], y_train)
        r[:, k] = np.abs(model.feature_importances_)
        train_acc[k] = np.mean(model.predict(z[:n_train]) == y_train)
        test_acc[k] = np.mean(model.predict(z[n_train:]) == y_test)
    return r, train_acc, test_acc


def _one_minus_entropy(p: np.ndarray, base: int) -> float:
    """``1 - H_base(p / sum p)``; 0 for an all-zero ``p``, 1 when ``base < 2`` (a single option)."""
    from scipy.stats import entropy

    total = p.sum()
    if total <= 0:
        return 0.0
    if base < 2:
        return 1.0
    return float(1.0 - entropy(p / total, base=base))


def dci_from_importance(r: np.ndarray) -> dict[str, Any]:
    """Disentanglement and completeness of an importance matrix ``R [D, F]``."""
    n_codes, n_factors = r.shape
    per_code = np.array([_one_minus_entropy(r[i], n_factors) for i in range(n_codes)])
    per_factor = np.array([_one_minus_entropy(r[:, k], n_codes) for k in range(n_factors)])
    total = r.sum()
    weights = r.sum(axis=1) / total if total > 0 else np.zeros(n_codes)
    return {
        "disentanglement": float(np.sum(per_code * weights)),
        "completeness": float(per_factor.mean()),
        "disentanglement_per_code": per_code.tolist(),
        "completeness_per_factor": per_factor.tolist(),
    }


def dci_score(
    codes: np.ndarray, factors: np.ndarray, rng: np.random.Generator, config: DCIConfig = DCIConfig()
) -> dict[str, Any]:  # noqa: B008
    """DCI of ``codes [n, D]`` against ``factors [n, F]``.

    Returns ``{"score": disentanglement, "disentanglement", "completeness", "informativeness"
    (mean test accuracy), "informativeness_train", "importance": R [D][F], ...}``.
    """
    r, train_acc, test_acc = importance_matrix(codes, factors, config, rng)
    out = dci_from_importance(r)
    return {
        "score": out["disentanglement"],
        **out,
        "informativeness": float(test_acc.mean()),
        "informativeness_train": float(train_acc.mean()),
        "informativeness_per_factor": test_acc.tolist(),
        "importance_model": config.importance,
        "importance": r.tolist(),
    }
