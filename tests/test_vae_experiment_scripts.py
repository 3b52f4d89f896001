"""Helpers of scripts/vae_pinwheel.py and scripts/vae_beta_sweep.py: OT cost, bootstrap CI, settings, PCA prior."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_w2sq_is_zero_on_identical_clouds_and_the_squared_shift_on_a_translation():
    pytest.importorskip("ot")
    pinwheel = _load("vae_pinwheel")
    x = np.random.default_rng(0).normal(size=(300, 2))
    assert pinwheel._w2sq(x, x) == pytest.approx(0.0, abs=1e-12)
    assert pinwheel._w2sq(x, x + np.array([0.3, -0.4])) == pytest.approx(0.25, rel=1e-9)


def test_bootstrap_ci_brackets_the_mean_and_collapses_on_constant_values():
    sweep = _load("vae_beta_sweep")
    values = [0.2, 0.5, 0.4, 0.9, 0.3]
    lo, hi = sweep.bootstrap_ci(values)
    assert min(values) <= lo < np.mean(values) < hi <= max(values)
    assert sweep.bootstrap_ci([0.7, 0.7, 0.7]) == pytest.approx((0.7, 0.7))


def test_sweep_settings_parse_and_bad_priors_are_named():
    sweep = _load("vae_beta_sweep")
    assert sweep.parse_setting("aniso:16") == ("aniso", 16.0)
    with pytest.raises(ValueError, match="iso"):
        sweep.parse_setting("student:1")


def test_pca_variances_sum_to_the_latent_size_and_are_sorted():
    sweep = _load("vae_beta_sweep")
    v = np.array(sweep.pca_variances(4, images=300))
    assert v.sum() == pytest.approx(4.0, abs=1e-3)
    assert np.all(np.diff(v) <= 0) and v[0] > v[-1] > 0
