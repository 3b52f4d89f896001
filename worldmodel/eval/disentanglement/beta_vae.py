"""beta-VAE score (Higgins et al., "beta-VAE: Learning Basic Visual Concepts...", ICLR 2017).

One training point: pick a factor ``k`` uniformly; draw ``batch_size`` pairs of observations whose
factor ``k`` agrees (everything else independent); the feature is the mean over the pairs of
``|z(x1) - z(x2)|`` (one value per latent) and the label is ``k``. A linear classifier
(scikit-learn's ``LogisticRegression``, as disentanglement_lib's ``beta_vae_sklearn``) is fitted
on ``num_train`` points; the score is its accuracy on ``num_eval`` fresh points. A constant
representation scores chance (the majority class, about 1/F). Defaults: disentanglement_lib's
(``batch_size`` 64, 10000 training and 5000 evaluation points).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from worldmodel.data.factors import FactorDataset, check_factors
from worldmodel.eval.disentanglement.common import DisentanglementError, RepresentationFn, encode


@dataclass(frozen=True)
class BetaVAEConfig:
    """Settings of the beta-VAE score."""

    batch_size: int = 64
    """Pairs averaged into one classifier input (disentanglement_lib: 64)."""
    num_train: int = 10000
    """Classifier training points (disentanglement_lib: 10000)."""
    num_eval: int = 5000
    """Evaluation points (disentanglement_lib: 5000)."""
    encode_batch_size: int = 1024
    """Most observations per ``representation_fn`` call."""
    max_iter: int = 1000
    """Iterations of the logistic regression solver."""

    def __post_init__(self) -> None:
        for name in ("batch_size", "num_train", "num_eval", "encode_batch_size", "max_iter"):
            if int(getattr(self, name)) < 1:
                raise DisentanglementError(f"BetaVAEConfig.{name} must be a positive count, got {getattr(self, name)}")


def _points(
    dataset: FactorDataset,
    representation_fn: RepresentationFn,
    n: int,
    config: BetaVAEConfig,
    rng: np.random.Generator,
    bar: Any,
) -> tuple[np.ndarray, np.ndarray]:
    n_factors = len(dataset.factor_sizes)
    b = config.batch_size
    per_call = max(1, config.encode_batch_size // (2 * b))
    feats, labels = [], []
    for start in range(0, n, per_call):
        m = min(per_call, n - start)
        ks = rng.integers(0, n_factors, size=m)
        f1 = check_factors(dataset.sample_factors(m * b, rng), dataset.factor_sizes, what="dataset.sample_factors()")
        f2 = check_factors(dataset.sample_factors(m * b, rng), dataset.factor_sizes, what="dataset.sample_factors()")
        cols = np.repeat(ks, b)
        rows = np.arange(m * b)
        f2[rows, cols] = f1[rows, cols]
        obs = dataset.sample_observations_from_factors(np.concatenate([f1, f2]), rng)
        z = encode(representation_fn, obs, config.encode_batch_size)
        z1, z2 = z[: m * b], z[m * b :]
        feats.append(np.abs(z1 - z2).reshape(m, b, -1).mean(axis=1))
        labels.append(ks)
        bar.update(m)
    return np.concatenate(feats), np.concatenate(labels)


def beta_vae_score(
    dataset: FactorDataset,
    representation_fn: RepresentationFn,
    rng: np.random.Generator,
    config: BetaVAEConfig = BetaVAEConfig(),  # noqa: B008 - a frozen dataclass
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """beta-VAE score: ``{"score": eval accuracy, "train_accuracy", "eval_accuracy"}``."""
    from sklearn.linear_model import LogisticRegression
    from tqdm import tqdm

    with tqdm(
        total=config.num_train + config.num_eval,
        desc="betavae points",
        unit="pt",
        disable=not progress,
        dynamic_ncols=True,
        leave=False,
    ) as bar:
        x_train, y_train = _points(dataset, representation_fn, config.num_train, config, rng, bar)
        x_eval, y_eval = _points(dataset, representation_fn, config.num_eval, config, rng, bar)
    if np.unique(y_train).size < 2:
        raise DisentanglementError("beta-VAE score needs at least 2 factors (and num_train large enough to see them)")
    model = LogisticRegression(max_iter=config.max_iter, random_state=int(rng.integers(2**31 - 1)))
    model.fit(x_train, y_train)
    train_acc = float(np.mean(model.predict(x_train) == y_train))
    eval_acc = float(np.mean(model.predict(x_eval) == y_eval))
    return {"score": eval_acc, "train_accuracy": train_acc, "eval_accuracy": eval_acc}
