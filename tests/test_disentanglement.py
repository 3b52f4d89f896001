"""Disentanglement metrics on synthetic representations with known answers, the factor file format, the CLI.

The synthetic dataset renders 4 factors (3, 4, 5, 6 classes) through a fixed random tanh
embedding that ``decode_factors`` inverts, so the representation can be the factors themselves
(every metric near its ceiling), the factors mixed by an orthogonal matrix (the axis-alignment
metrics drop), or a constant (chance or 0).
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from worldmodel.data.factors import (
    ArrayFactorDataset,
    FactorDataError,
    FactorDataset,
    load_factor_npz,
    save_factor_npz,
)
from worldmodel.eval.disentanglement import (
    BetaVAEConfig,
    DCIConfig,
    DisentanglementError,
    FactorVAEConfig,
    SAPConfig,
    beta_vae_score,
    dci_score,
    evaluate,
    factor_vae_score,
    mig_score,
    parse_metrics,
    preset_config,
    sample_codes_and_factors,
    sap_score,
)
from worldmodel.eval.disentanglement.synthetic import (
    SyntheticFactorDataset,
    constant_representation,
    identity_representation,
    mixing_rotation,
    random_rotation,
    rotated_representation,
)

SIZES = (3, 4, 5, 6)
FVAE = FactorVAEConfig(samples_per_vote=64, num_train=200, num_eval=200, num_variance_estimate=2000)
BVAE = BetaVAEConfig(batch_size=32, num_train=300, num_eval=150)


@pytest.fixture(scope="module")
def ds() -> SyntheticFactorDataset:
    return SyntheticFactorDataset(SIZES, observation_shape=(1, 4, 4), seed=0)


@pytest.fixture(scope="module")
def reps(ds):
    return {
        "identity": identity_representation(ds),
        "mixed": rotated_representation(ds, mixing_rotation(len(SIZES))),
        "constant": constant_representation(len(SIZES)),
    }


@pytest.fixture(scope="module")
def samples(ds, reps):
    rng = np.random.default_rng(0)
    return {name: sample_codes_and_factors(ds, fn, 1500, rng) for name, fn in reps.items()}


def test_synthetic_dataset_is_a_factor_dataset_and_inverts(ds):
    assert isinstance(ds, FactorDataset)
    rng = np.random.default_rng(1)
    f = ds.sample_factors(50, rng)
    obs = ds.sample_observations_from_factors(f, rng)
    assert obs.shape == (50, 1, 4, 4) and obs.dtype == np.float32
    np.testing.assert_allclose(identity_representation(ds)(obs), f, atol=1e-4)


def test_factor_vae_known_answers(ds, reps):
    scores = {n: factor_vae_score(ds, fn, np.random.default_rng(0), FVAE, progress=False) for n, fn in reps.items()}
    assert scores["identity"]["score"] == 1.0 and scores["identity"]["num_active_dims"] == 4
    assert scores["mixed"]["score"] < 0.5  # chance is 1/4; the majority vote fits a little noise
    assert scores["constant"]["score"] == 0.0 and scores["constant"]["num_active_dims"] == 0
    # Same seed, same votes.
    again = factor_vae_score(ds, reps["mixed"], np.random.default_rng(0), FVAE, progress=False)
    assert again["votes"] == scores["mixed"]["votes"]


def test_factor_vae_prunes_a_collapsed_latent(ds):
    ident = identity_representation(ds)

    def with_dead(obs):
        z = ident(obs)
        return np.concatenate([z, np.full((z.shape[0], 1), 3.0) + 1e-4 * z[:, :1]], axis=1)

    res = factor_vae_score(ds, with_dead, np.random.default_rng(0), FVAE, progress=False)
    assert res["active_dims"] == [0, 1, 2, 3] and res["score"] == 1.0


def test_beta_vae_known_answers(ds, reps):
    ident = beta_vae_score(ds, reps["identity"], np.random.default_rng(0), BVAE, progress=False)
    const = beta_vae_score(ds, reps["constant"], np.random.default_rng(0), BVAE, progress=False)
    assert ident["score"] > 0.98
    assert const["score"] < 0.4  # a constant feature: the majority class, about 1/4


def test_mig_known_answers(samples):
    assert mig_score(*samples["identity"])["score"] > 0.95
    assert mig_score(*samples["mixed"])["score"] < 0.1
    assert mig_score(*samples["constant"])["score"] == 0.0


@pytest.mark.parametrize("importance", ["gbt", "random_forest"])
def test_dci_known_answers(samples, importance):
    cfg = DCIConfig(importance=importance, n_estimators=10)
    ident = dci_score(*samples["identity"], np.random.default_rng(0), cfg)
    mixed = dci_score(*samples["mixed"], np.random.default_rng(0), cfg)
    const = dci_score(*samples["constant"], np.random.default_rng(0), cfg)
    assert ident["disentanglement"] > 0.95 and ident["completeness"] > 0.95 and ident["informativeness"] > 0.95
    assert mixed["disentanglement"] < 0.2 and mixed["completeness"] < 0.2
    # Rotating loses no information, but axis-aligned trees need more splits for oblique boundaries:
    # informativeness depends on the classifier (few boosting stages reach ~0.8 here).
    assert mixed["informativeness"] > 0.75
    assert const["disentanglement"] == 0.0 and const["completeness"] == 0.0
    assert const["informativeness"] < 0.4  # majority class of a 3..6-class factor


def test_dci_random_rotation_is_between(samples, ds):
    """A Haar-random rotation keeps some alignment: clearly below the factors, above the even mix."""
    rng = np.random.default_rng(3)
    z, f = sample_codes_and_factors(ds, rotated_representation(ds, random_rotation(4, rng)), 1500, rng)
    cfg = DCIConfig(importance="random_forest", n_estimators=20)
    d = dci_score(z, f, rng, cfg)["disentanglement"]
    assert 0.05 < d < 0.8


def test_sap_known_answers(samples):
    rng = np.random.default_rng(0)
    ident = sap_score(*samples["identity"], rng)
    mixed = sap_score(*samples["mixed"], rng)
    assert ident["score"] > 0.3 and mixed["score"] < 0.1 and ident["score"] > mixed["score"] + 0.25
    assert sap_score(*samples["constant"], rng)["score"] == pytest.approx(0.0, abs=1e-9)
    cont = SAPConfig(continuous_factors=True)
    assert sap_score(*samples["identity"], rng, cont)["score"] > 0.99  # R^2 = 1 on the true factor
    assert sap_score(*samples["mixed"], rng, cont)["score"] < 0.1


def test_evaluate_seeded_and_independent_of_selection(ds, reps):
    cfg = replace(
        preset_config("quick"), factorvae=FVAE, betavae=BVAE, dci=DCIConfig(importance="random_forest", n_estimators=10)
    )
    cfg = replace(cfg, samples=replace(cfg.samples, num_train=600, num_test=300))
    a = evaluate(ds, reps["mixed"], "factorvae,mig,sap", seed=5, config=cfg, progress=False)
    b = evaluate(ds, reps["mixed"], ["sap", "mig", "factorvae", "dci"], seed=5, config=cfg, progress=False)
    for name in ("factorvae", "mig", "sap"):
        assert a["scores"][name] == b["scores"][name]
    assert list(a["scores"]) == ["factorvae", "mig", "sap"] and a["metrics"]["mig"]["seconds"] >= 0
    c = evaluate(ds, reps["mixed"], "factorvae", seed=6, config=cfg, progress=False)
    assert c["metrics"]["factorvae"]["votes"] != a["metrics"]["factorvae"]["votes"]


def test_bad_input_errors():
    z, f = np.zeros((10, 3)), np.zeros((9, 2), dtype=int)
    with pytest.raises(DisentanglementError, match="10 code rows, 9 factor rows"):
        mig_score(z, f)
    with pytest.raises(DisentanglementError, match=r"factors must have shape \[n, F\]"):
        mig_score(z, np.zeros(10, dtype=int))
    with pytest.raises(DisentanglementError, match="allowed: factorvae, betavae, mig, dci, sap"):
        parse_metrics("mig,irs")
    with pytest.raises(DisentanglementError, match="allowed: gbt, random_forest"):
        DCIConfig(importance="lasso")
    with pytest.raises(DisentanglementError, match="allowed: paper"):
        preset_config("huge")


def test_representation_fn_shape_is_checked(ds):
    with pytest.raises(DisentanglementError, match=r"codes \[n, D\] for n=64"):
        factor_vae_score(
            ds,
            lambda obs: np.zeros(obs.shape[0]),
            np.random.default_rng(0),
            replace(FVAE, batch_size=64),
            progress=False,
        )


def test_factor_file_round_trip_and_errors(tmp_path, ds):
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in SIZES], indexing="ij"), -1).reshape(-1, len(SIZES))
    obs = ((ds.sample_observations_from_factors(grid, None) + 1) * 127.5).astype(np.uint8)
    path = save_factor_npz(tmp_path / "f.npz", obs, grid, ["a", "b", "c", "d"])
    loaded = load_factor_npz(path)
    assert loaded.factor_names == ("a", "b", "c", "d") and loaded.factor_sizes == SIZES and loaded.complete
    rng = np.random.default_rng(0)
    f = loaded.sample_factors(20, rng)
    got = loaded.sample_observations_from_factors(f, rng)
    np.testing.assert_allclose(got, obs[np.ravel_multi_index(f.T, SIZES)] / 255.0, atol=1e-6)
    # Wrong shapes and ranges name the problem.
    np.savez(tmp_path / "bad.npz", observations=obs, factors=grid[:, :3], factor_names=np.array(["a", "b", "c", "d"]))
    with pytest.raises(FactorDataError, match="factor_names must be 3 unique names"):
        load_factor_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "short.npz", observations=obs[:5], factors=grid, factor_names=np.array(list("abcd")))
    with pytest.raises(FactorDataError, match="5 observations, 360 factor rows"):
        load_factor_npz(tmp_path / "short.npz")
    np.savez(tmp_path / "nokey.npz", observations=obs, factors=grid)
    with pytest.raises(FactorDataError, match=r"missing arrays \['factor_names'\]"):
        load_factor_npz(tmp_path / "nokey.npz")
    with pytest.raises(FactorDataError, match="not a complete grid: 359 of 360"):
        ArrayFactorDataset(obs[1:], grid[1:])
    part = ArrayFactorDataset(obs[1:], grid[1:], factor_sizes=SIZES, require_complete=False)
    with pytest.raises(FactorDataError, match="not in the dataset"):
        part.sample_observations_from_factors(grid[:1], rng)


def test_cli_writes_json_and_plot(tmp_path, ds, capsys):
    pytest.importorskip("torch")
    from agents.cli import main
    from tests.agents_fake_env import save_tiny_gqn

    ckpt = save_tiny_gqn(tmp_path / "gqn", size=16)
    emb = SyntheticFactorDataset(SIZES, observation_shape=(3, 16, 16), seed=1)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in SIZES], indexing="ij"), -1).reshape(-1, len(SIZES))
    obs = ((emb.sample_observations_from_factors(grid, None) + 1) * 127.5).astype(np.uint8)
    data = tmp_path / "data"
    data.mkdir()
    save_factor_npz(data, obs, grid, ["w", "x", "y", "z"])
    out = tmp_path / "res" / "scores.json"
    args = [
        "eval",
        "disentanglement",
        "--run",
        str(ckpt),
        "--data",
        str(data),
        "--preset",
        "quick",
        "--metrics",
        "factorvae,mig,sap",
        "--seed",
        "3",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    res = json.loads(out.read_text())
    assert set(res["scores"]) == {"factorvae", "mig", "sap"} and res["factors"]["sizes"] == list(SIZES)
    assert all(0.0 <= v <= 1.0 for v in res["scores"].values())
    assert res["versions"]["scikit-learn"] and res["config"]["factorvae"]["samples_per_vote"] == 64
    assert res["encoder"]["viewpoint"] == "zeros" and res["seconds"]["factorvae"] > 0
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = list(args)
    bad[bad.index("factorvae,mig,sap")] = "mig,bogus"
    assert main(bad) == 2
    assert "unknown metric name(s) ['bogus']; allowed: factorvae, betavae, mig, dci, sap" in capsys.readouterr().err
    np.savez(data / "factors.npz", observations=obs, factors=grid[:, 0], factor_names=np.array(list("wxyz")))
    assert main(args) == 2
    assert "factors must have shape [n, F], got (360,)" in capsys.readouterr().err


def test_cli_data_shapes_is_a_factor_dataset():
    pytest.importorskip("worldmodel.data.shapes")
    from worldmodel.eval.disentanglement_cli import load_factor_data

    shapes = load_factor_data("shapes", 32)
    assert isinstance(shapes, FactorDataset) and tuple(shapes.factor_sizes) == (3, 6, 40, 32, 32)
    rng = np.random.default_rng(0)
    obs = shapes.sample_observations_from_factors(shapes.sample_factors(4, rng), rng)
    assert obs.shape == (4, 1, 32, 32) and obs.dtype == np.float32
    with pytest.raises(FileNotFoundError, match="expected 'shapes'"):
        load_factor_data("no/such/dir")
