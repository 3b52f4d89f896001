"""Disentanglement metrics on ground-truth factor datasets (docs/disentanglement.md).

Two entry styles:

* intervention metrics take a :class:`~worldmodel.data.factors.FactorDataset` and a
  ``representation_fn(obs float32 [n,C,H,W]) -> codes [n, D]``:
  :func:`factor_vae_score` (Kim & Mnih 2018), :func:`beta_vae_score` (Higgins et al. 2017);
* sample metrics take arrays ``codes [n, D]`` and ``factors [n, F]``: :func:`mig_score`,
  :func:`dci_score`, :func:`sap_score`; :func:`sample_codes_and_factors` draws them from a dataset.

:func:`evaluate` runs any subset by name (:data:`METRICS`), seeded (each metric its own
``np.random.Generator`` derived from the seed and the metric's name, so a metric's result does not
depend on which others run), with tqdm bars and wall-clock times.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from worldmodel.data.factors import FactorDataset
from worldmodel.eval.disentanglement.beta_vae import BetaVAEConfig, beta_vae_score
from worldmodel.eval.disentanglement.common import (
    DisentanglementError,
    RepresentationFn,
    check_codes_factors,
    sample_codes_and_factors,
)
from worldmodel.eval.disentanglement.dci import IMPORTANCE_CHOICES, DCIConfig, dci_score
from worldmodel.eval.disentanglement.factor_vae import DISENTANGLEMENT_LIB, KIM_MNIH, FactorVAEConfig, factor_vae_score
from worldmodel.eval.disentanglement.mig import MIGConfig, mig_score
from worldmodel.eval.disentanglement.sap import SAPConfig, sap_score

METRICS = ("factorvae", "betavae", "mig", "dci", "sap")
"""Metric names :func:`evaluate` accepts, in their fixed order."""
INTERVENTION_METRICS = ("factorvae", "betavae")
SAMPLE_METRICS = ("mig", "dci", "sap")
PRESETS = ("paper", "disentanglement_lib", "quick")
"""Named settings: the papers' protocols, disentanglement_lib's study, a fast smoke-test size."""


@dataclass(frozen=True)
class SampleConfig:
    """How many ``(codes, factors)`` samples the sample metrics share."""

    num_train: int = 10000
    """Samples MIG uses and DCI/SAP fit their models on (disentanglement_lib: 10000)."""
    num_test: int = 5000
    """Further samples DCI/SAP measure on (disentanglement_lib: 5000)."""
    batch_size: int = 256
    """Observations per ``representation_fn`` call."""

    def __post_init__(self) -> None:
        if self.num_train < 2 or self.num_test < 1 or self.batch_size < 1:
            raise DisentanglementError(f"SampleConfig needs num_train >= 2, num_test >= 1, batch_size >= 1; got {self}")


@dataclass(frozen=True)
class EvalConfig:
    """Settings of every metric (one dataclass each) and of the shared sample."""

    factorvae: FactorVAEConfig = KIM_MNIH
    """FactorVAE score settings (default: Kim & Mnih's L = 100, 800 + 800 votes)."""
    betavae: BetaVAEConfig = field(default_factory=BetaVAEConfig)
    """beta-VAE score settings (default: disentanglement_lib's)."""
    mig: MIGConfig = field(default_factory=MIGConfig)
    """MIG settings (20 bins)."""
    dci: DCIConfig = field(default_factory=DCIConfig)
    """DCI settings (gradient-boosted trees)."""
    sap: SAPConfig = field(default_factory=SAPConfig)
    """SAP settings (LinearSVC accuracy)."""
    samples: SampleConfig = field(default_factory=SampleConfig)
    """The sample MIG, DCI and SAP share."""


def preset_config(name: str) -> EvalConfig:
    """The :class:`EvalConfig` of a preset in :data:`PRESETS`."""
    if name == "paper":
        return EvalConfig()
    if name == "disentanglement_lib":
        return EvalConfig(factorvae=DISENTANGLEMENT_LIB)
    if name == "quick":
        return EvalConfig(
            factorvae=replace(KIM_MNIH, samples_per_vote=64, num_train=200, num_eval=200, num_variance_estimate=2000),
            betavae=BetaVAEConfig(batch_size=32, num_train=500, num_eval=250),
            dci=DCIConfig(importance="random_forest", n_estimators=50),
            samples=SampleConfig(num_train=2000, num_test=1000),
        )
    raise DisentanglementError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")


def parse_metrics(spec: str | Iterable[str]) -> tuple[str, ...]:
    """``"factorvae,mig"`` (or a list) -> validated names in :data:`METRICS` order; ``"all"`` -> all."""
    names = [s.strip().lower() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if names == ["all"]:
        return METRICS
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise DisentanglementError(f"unknown metric name(s) {unknown or names}; allowed: {', '.join(METRICS)} (or all)")
    return tuple(m for m in METRICS if m in names)


def metric_rng(seed: int, name: str) -> np.random.Generator:
    """The generator of metric ``name`` under ``seed`` (independent of the other metrics run)."""
    key = METRICS.index(name) if name in METRICS else len(METRICS)
    return np.random.default_rng([int(seed), key])


def evaluate(
    dataset: FactorDataset,
    representation_fn: RepresentationFn,
    metrics: str | Iterable[str] = METRICS,
    *,
    seed: int = 0,
    config: EvalConfig | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``metrics`` on ``representation_fn`` over ``dataset``.

    Returns ``{"scores": {name: headline score}, "metrics": {name: full result incl. "seconds"},
    "sampling_seconds": time to draw and encode the shared sample (None if no sample metric ran),
    "config": asdict(config)}``.
    """
    config = config or EvalConfig()
    names = parse_metrics(metrics)
    results: dict[str, dict[str, Any]] = {}
    if "factorvae" in names:
        t0 = time.perf_counter()
        results["factorvae"] = factor_vae_score(
            dataset, representation_fn, metric_rng(seed, "factorvae"), config.factorvae, progress=progress
        )
        results["factorvae"]["seconds"] = time.perf_counter() - t0
    if "betavae" in names:
        t0 = time.perf_counter()
        results["betavae"] = beta_vae_score(
            dataset, representation_fn, metric_rng(seed, "betavae"), config.betavae, progress=progress
        )
        results["betavae"]["seconds"] = time.perf_counter() - t0
    sampling_seconds = None
    if any(n in SAMPLE_METRICS for n in names):
        t0 = time.perf_counter()
        s = config.samples
        codes, factors = sample_codes_and_factors(
            dataset,
            representation_fn,
            s.num_train + s.num_test,
            metric_rng(seed, "samples"),
            batch_size=s.batch_size,
            progress=progress,
            desc="sample codes",
        )
        sampling_seconds = time.perf_counter() - t0
        frac = s.num_train / (s.num_train + s.num_test)
        for name in SAMPLE_METRICS:
            if name not in names:
                continue
            t0 = time.perf_counter()
            if name == "mig":
                res = mig_score(codes[: s.num_train], factors[: s.num_train], config.mig)
            elif name == "dci":
                res = dci_score(codes, factors, metric_rng(seed, name), replace(config.dci, train_fraction=frac))
            else:
                res = sap_score(codes, factors, metric_rng(seed, name), replace(config.sap, train_fraction=frac))
            res["seconds"] = time.perf_counter() - t0
            results[name] = res
    return {
        "scores": {n: results[n]["score"] for n in names},
        "metrics": {n: results[n] for n in names},
        "sampling_seconds": sampling_seconds,
        "config": asdict(config),
    }


__all__ = [
    "METRICS",
    "INTERVENTION_METRICS",
    "SAMPLE_METRICS",
    "PRESETS",
    "IMPORTANCE_CHOICES",
    "DisentanglementError",
    "RepresentationFn",
    "EvalConfig",
    "SampleConfig",
    "FactorVAEConfig",
    "BetaVAEConfig",
    "MIGConfig",
    "DCIConfig",
    "SAPConfig",
    "KIM_MNIH",
    "DISENTANGLEMENT_LIB",
    "factor_vae_score",
    "beta_vae_score",
    "mig_score",
    "dci_score",
    "sap_score",
    "sample_codes_and_factors",
    "check_codes_factors",
    "evaluate",
    "parse_metrics",
    "preset_config",
    "metric_rng",
]
