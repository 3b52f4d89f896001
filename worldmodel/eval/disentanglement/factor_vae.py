"""FactorVAE score (Kim & Mnih, "Disentangling by Factorising", ICML 2018).

1. Estimate each latent's variance over the data (``num_variance_estimate`` samples) and prune
   collapsed latents: those whose standard deviation is below ``prune_threshold``.
2. One *vote*: pick a factor ``k`` uniformly, draw ``L = samples_per_vote`` observations that share
   a random value of ``k`` (all other factors random), divide their codes by the global standard
   deviations, and take the active latent ``d`` with the smallest variance. The vote is ``(d, k)``.
3. The majority-vote classifier maps latent ``d`` to the factor it voted for most; the score is its
   accuracy on ``num_eval`` fresh votes (``train_accuracy``: on the ``num_train`` votes it was built from).

Written by hand: the classifier is a vote count and an argmax (scikit-learn has no majority-vote
classifier over a single discrete input, and it is the paper's definition). The defaults are the
paper's (``L = 100``, 800 training votes and 800 evaluation votes, see docs/disentanglement.md);
:data:`DISENTANGLEMENT_LIB` holds disentanglement_lib's study settings.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from worldmodel.data.factors import FactorDataset, check_factors
from worldmodel.eval.disentanglement.common import (
    DisentanglementError,
    RepresentationFn,
    encode,
    sample_codes_and_factors,
)


@dataclass(frozen=True)
class FactorVAEConfig:
    """Settings of the FactorVAE score."""

    samples_per_vote: int = 100
    """L: observations sharing one fixed factor value per vote (Kim & Mnih: 100; disentanglement_lib: 64)."""
    num_train: int = 800
    """Votes the majority-vote classifier is built from (Kim & Mnih: 800; disentanglement_lib: 10000)."""
    num_eval: int = 800
    """Fresh votes the score is measured on (Kim & Mnih: 800; disentanglement_lib: 5000)."""
    num_variance_estimate: int = 10000
    """Samples for each latent's global variance (both: 10000)."""
    prune_threshold: float = 0.05
    """Latents with a global standard deviation below this are collapsed and dropped (disentanglement_lib: 0.05)."""
    batch_size: int = 1024
    """Most observations per ``representation_fn`` call (several votes share a call)."""

    def __post_init__(self) -> None:
        for name in ("samples_per_vote", "num_train", "num_eval", "num_variance_estimate", "batch_size"):
            if int(getattr(self, name)) < (2 if name in ("samples_per_vote", "num_variance_estimate") else 1):
                raise DisentanglementError(
                    f"FactorVAEConfig.{name} must be a positive count, got {getattr(self, name)}"
                )
        if self.prune_threshold < 0:
            raise DisentanglementError(f"FactorVAEConfig.prune_threshold must be >= 0, got {self.prune_threshold}")


KIM_MNIH = FactorVAEConfig()
"""The paper's protocol (the default)."""
DISENTANGLEMENT_LIB = replace(KIM_MNIH, samples_per_vote=64, num_train=10000, num_eval=5000)
"""disentanglement_lib's ``factor_vae_metric.gin`` of the Locatello et al. (2019) study."""


def _votes(
    dataset: FactorDataset,
    representation_fn: RepresentationFn,
    n_votes: int,
    global_std: np.ndarray,
    active: np.ndarray,
    config: FactorVAEConfig,
    rng: np.random.Generator,
    bar: Any,
) -> np.ndarray:
    """``int [n_votes, 2]``: (active latent with least normalised variance, fixed factor) per vote."""
    n_factors = len(dataset.factor_sizes)
    big_l = config.samples_per_vote
    per_call = max(1, config.batch_size // big_l)
    out = np.empty((n_votes, 2), dtype=np.int64)
    for start in range(0, n_votes, per_call):
        m = min(per_call, n_votes - start)
        ks = rng.integers(0, n_factors, size=m)
        factors = check_factors(
            dataset.sample_factors(m * big_l, rng), dataset.factor_sizes, what="dataset.sample_factors()"
        ).reshape(m, big_l, n_factors)
        # Fix factor k of each vote to the value its first sample drew.
        factors[np.arange(m), :, ks] = factors[np.arange(m), 0, ks][:, None]
        obs = dataset.sample_observations_from_factors(factors.reshape(m * big_l, n_factors), rng)
        codes = encode(representation_fn, obs, config.batch_size).reshape(m, big_l, -1)
        if codes.shape[-1] != global_std.shape[0]:
            raise DisentanglementError(
                f"representation_fn changed its code size from {global_std.shape[0]} to {codes.shape[-1]}"
            )
        local_var = np.var(codes[:, :, active] / global_std[active], axis=1, ddof=1)
        out[start : start + m, 0] = np.argmin(local_var, axis=1)
        out[start : start + m, 1] = ks
        bar.update(m)
    return out


def factor_vae_score(
    dataset: FactorDataset,
    representation_fn: RepresentationFn,
    rng: np.random.Generator,
    config: FactorVAEConfig = KIM_MNIH,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """FactorVAE score of ``representation_fn`` on ``dataset``.

    Returns ``{"score": eval accuracy, "train_accuracy", "eval_accuracy", "num_active_dims",
    "active_dims", "votes": [[count per factor] per active latent]}``. With every latent collapsed
    the score is 0 (as in disentanglement_lib).
    """
    from tqdm import tqdm

    codes, _ = sample_codes_and_factors(
        dataset,
        representation_fn,
        config.num_variance_estimate,
        rng,
        batch_size=config.batch_size,
        progress=progress,
        desc="factorvae variance",
    )
    global_var = np.var(codes, axis=0, ddof=1)
    global_std = np.sqrt(global_var)
    active = global_std >= config.prune_threshold
    result: dict[str, Any] = {"num_active_dims": int(active.sum()), "active_dims": np.flatnonzero(active).tolist()}
    if not active.any():
        return {"score": 0.0, "train_accuracy": 0.0, "eval_accuracy": 0.0, **result, "votes": []}
    n_factors = len(dataset.factor_sizes)
    with tqdm(
        total=config.num_train + config.num_eval,
        desc="factorvae votes",
        unit="vote",
        disable=not progress,
        dynamic_ncols=True,
        leave=False,
    ) as bar:
        train = _votes(dataset, representation_fn, config.num_train, global_std, active, config, rng, bar)
        evals = _votes(dataset, representation_fn, config.num_eval, global_std, active, config, rng, bar)
    n_active = int(active.sum())
    counts = np.zeros((n_active, n_factors), dtype=np.int64)
    np.add.at(counts, (train[:, 0], train[:, 1]), 1)
    classifier = np.argmax(counts, axis=1)  # majority vote: latent d -> the factor it voted for most
    train_acc = float(counts.max(axis=1).sum() / config.num_train)
    eval_acc = float(np.mean(classifier[evals[:, 0]] == evals[:, 1]))
    return {
        "score": eval_acc,
        "train_accuracy": train_acc,
        "eval_accuracy": eval_acc,
        **result,
        "votes": counts.tolist(),
    }
