"""Priors of the VAE family: log-densities and samples against scipy, learned variances, bad input."""

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp

from worldmodel.models.vae_config import PINWHEEL_MEANS, VAEConfig
from worldmodel.models.vae_priors import PRIOR_NAMES, GaussianPrior, MixturePrior, make_prior, prior_from_config

D = 3


def _z(n=50, d=D, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(0, 1.5, size=(n, d)).astype(np.float32))


def _ks_ok(samples: np.ndarray, cdf) -> bool:
    return stats.kstest(samples, cdf).pvalue > 1e-3


def test_gaussian_priors_match_scipy_multivariate_normal():
    z = _z()
    iso = make_prior("isotropic", D, variance_scale=0.5)
    ref = stats.multivariate_normal(np.zeros(D), 0.5 * np.eye(D)).logpdf(z.numpy())
    np.testing.assert_allclose(iso.log_prob(z).numpy(), ref, rtol=1e-5, atol=1e-5)
    aniso = make_prior("anisotropic", D, variance_scale=2.0, relative_variances=[4.0, 1.0, 1.0])
    var = aniso.variances.detach().numpy()
    np.testing.assert_allclose(var, [4.0, 1.0, 1.0], rtol=1e-5)  # normalised to sum D * s = 6
    ref = stats.multivariate_normal(np.zeros(D), np.diag(var)).logpdf(z.numpy())
    np.testing.assert_allclose(aniso.log_prob(z).detach().numpy(), ref, rtol=1e-5, atol=1e-5)
    torch.manual_seed(0)
    draws = aniso.sample(20000).numpy()
    for d in range(D):
        assert _ks_ok(draws[:, d], stats.norm(0, np.sqrt(var[d])).cdf)


def test_student_t_prior_matches_scipy_t():
    z = _z()
    prior = make_prior("student_t", D, df=5.0, variance_scale=0.25)
    ref = stats.t(df=5.0, loc=0.0, scale=0.5).logpdf(z.numpy()).sum(-1)
    np.testing.assert_allclose(prior.log_prob(z).numpy(), ref, rtol=1e-5, atol=1e-5)
    torch.manual_seed(1)
    draws = prior.sample(20000).numpy()
    for d in range(D):
        assert _ks_ok(draws[:, d], stats.t(df=5.0, scale=0.5).cdf)


def test_pinwheel_mixture_matches_logsumexp_of_scipy_components():
    z = _z(d=2)
    prior = make_prior("mixture", 2, variance_scale=0.03, means=PINWHEEL_MEANS)
    comps = np.stack([stats.multivariate_normal(m, 0.03 * np.eye(2)).logpdf(z.numpy()) for m in PINWHEEL_MEANS])
    ref = logsumexp(comps + np.log(0.25), axis=0)
    np.testing.assert_allclose(prior.log_prob(z).numpy(), ref, rtol=1e-5, atol=1e-4)
    torch.manual_seed(2)
    draws = prior.sample(20000).numpy()
    # each of the 4 modes gets ~1/4 of the draws, spread sqrt(0.03) around it
    nearest = np.argmin(((draws[:, None] - np.array(PINWHEEL_MEANS)[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_allclose(np.bincount(nearest, minlength=4) / len(draws), 0.25, atol=0.02)

    def marginal_cdf(x):
        return np.mean([stats.norm(m[0], np.sqrt(0.03)).cdf(x) for m in PINWHEEL_MEANS], axis=0)

    assert _ks_ok(draws[:, 0], marginal_cdf)


def test_spike_and_slab_matches_a_two_component_scipy_mixture_per_dimension():
    z = _z()
    prior = make_prior("spike_slab", D, spike_weight=0.8, spike_std=0.05, variance_scale=1.0)
    per_dim = logsumexp(
        np.stack(
            [np.log(0.8) + stats.norm(0, 0.05).logpdf(z.numpy()), np.log(0.2) + stats.norm(0, 1.0).logpdf(z.numpy())]
        ),
        axis=0,
    )
    np.testing.assert_allclose(prior.log_prob(z).numpy(), per_dim.sum(-1), rtol=1e-5, atol=1e-4)
    torch.manual_seed(3)
    draws = prior.sample(20000).numpy()
    assert abs(np.mean(np.abs(draws) < 0.15) - (0.8 * 0.997 + 0.2 * 0.119)) < 0.02
    assert _ks_ok(draws[:, 0], lambda x: 0.8 * stats.norm(0, 0.05).cdf(x) + 0.2 * stats.norm(0, 1).cdf(x))


def test_learned_anisotropic_variances_train_and_keep_their_sum():
    prior = make_prior("anisotropic", D, learn_variance=True)
    assert prior.logits.requires_grad and prior.has_rsample
    opt = torch.optim.SGD(prior.parameters(), lr=0.5)
    data = torch.randn(512, D) * torch.tensor([2.0, 0.5, 0.5])
    for _ in range(50):
        opt.zero_grad()
        (-prior.log_prob(data).mean()).backward()
        opt.step()
    var = prior.variances.detach()
    assert var[0] > 2 * var[1] and abs(float(var.sum()) - D) < 1e-4
    assert not make_prior("isotropic", D).logits.requires_grad


def test_prior_from_config_builds_each_named_prior():
    for name in PRIOR_NAMES:
        extra = {"prior_variances": (1.0, 2.0)} if name == "anisotropic" else {}
        prior = prior_from_config(VAEConfig(latent_dim=2, prior=name, **extra))
        assert prior.latent_dim == 2 and prior.sample(5).shape == (5, 2)
        assert torch.isfinite(prior.log_prob(prior.sample(5))).all()
    assert isinstance(prior_from_config(VAEConfig(latent_dim=2, prior="mixture")), MixturePrior)
    assert isinstance(prior_from_config(VAEConfig(latent_dim=2)), GaussianPrior)


def test_bad_prior_input_gives_clear_errors():
    with pytest.raises(ValueError, match="unknown prior 'laplace'.*'isotropic'.*'spike_slab'"):
        make_prior("laplace", D)
    with pytest.raises(ValueError, match="prior='laplace' is not valid; valid values"):
        VAEConfig(prior="laplace")
    with pytest.raises(ValueError, match="latent size mismatch"):
        make_prior("anisotropic", D, relative_variances=[1.0, 2.0])
    with pytest.raises(ValueError, match="latent size mismatch"):
        make_prior("isotropic", D).log_prob(torch.zeros(4, D + 1))
    with pytest.raises(ValueError, match="latent size mismatch"):
        make_prior("mixture", 3, means=PINWHEEL_MEANS)
    with pytest.raises(ValueError, match="latent size mismatch"):
        VAEConfig(latent_dim=4, prior="anisotropic", prior_variances=(1.0, 2.0))
    with pytest.raises(ValueError, match="latent size mismatch.*pinwheel"):
        VAEConfig(latent_dim=10, prior="mixture")
    with pytest.raises(ValueError, match="needs prior_variances"):
        VAEConfig(prior="anisotropic")
