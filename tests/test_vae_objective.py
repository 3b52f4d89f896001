"""The alpha-beta objective and its estimators: closed forms, brute force, the VAE ELBO at alpha=0, beta=1."""

import math

import numpy as np
import pytest
import torch
from torch import distributions as td

from worldmodel.models.vae import VAE
from worldmodel.models.vae_config import VAEConfig
from worldmodel.models.vae_objective import (
    aggregate_log_density,
    imq_mmd,
    kl_to_prior,
    minibatch_kl_prior_aggregate,
    prior_divergence,
)
from worldmodel.models.vae_priors import make_prior


def _kl_normal(m_p, s_p, m_q, s_q):
    """KL(N(m_p, s_p^2) || N(m_q, s_q^2)) per dimension (closed form)."""
    return math.log(s_q / s_p) + (s_p**2 + (m_p - m_q) ** 2) / (2 * s_q**2) - 0.5


def test_minibatch_kl_p_q_matches_the_closed_form_when_q_is_one_gaussian():
    torch.manual_seed(0)
    d, b = 2, 256
    prior = make_prior("isotropic", d)
    loc, scale = (
        torch.full((b, d), 0.5),
        torch.full((b, d), 1.5),
    )  # every q(z|x_j) = N(0.5, 1.5^2): q(z) is that Gaussian
    est = torch.stack([minibatch_kl_prior_aggregate(prior, loc, scale) for _ in range(40)])
    exact = d * _kl_normal(0.0, 1.0, 0.5, 1.5)
    se = float(est.std()) / math.sqrt(len(est))
    assert abs(float(est.mean()) - exact) < 4 * se + 1e-3, (float(est.mean()), exact, se)


def test_minibatch_kl_p_q_approaches_the_closed_form_for_a_gaussian_aggregate():
    """q(z|x_j) = N(mu_j, s^2) with mu_j ~ N(0, t^2): q(z) = N(0, s^2 + t^2); the minibatch mixture estimates it."""
    torch.manual_seed(1)
    d, b, s, t = 1, 2000, 0.5, 0.6
    prior = make_prior("isotropic", d)
    est = []
    for _ in range(10):
        loc = torch.randn(b, d) * t
        est.append(float(minibatch_kl_prior_aggregate(prior, loc, torch.full((b, d), s))))
    exact = d * _kl_normal(0.0, 1.0, 0.0, math.sqrt(s**2 + t**2))
    assert abs(np.mean(est) - exact) < 0.03, (np.mean(est), exact)
    # and it tells a mismatched aggregate from a matched one
    matched = float(minibatch_kl_prior_aggregate(prior, torch.randn(b, d) * 0.8, torch.full((b, d), 0.6)))
    assert matched < 0.03 < exact


def test_aggregate_log_density_is_the_log_of_the_mixture():
    loc, scale = torch.tensor([[0.0, 0.0], [1.0, -1.0]]), torch.tensor([[1.0, 0.5], [0.3, 2.0]])
    z = torch.tensor([[0.2, 0.1], [1.5, -2.0], [-3.0, 4.0]])
    dens = [sum(math.exp(td.Normal(loc[j], scale[j]).log_prob(zi).sum()) for j in range(2)) / 2 for zi in z]
    np.testing.assert_allclose(aggregate_log_density(z, loc, scale).numpy(), np.log(dens), rtol=1e-5)
    with pytest.raises(ValueError, match="latent size mismatch"):
        aggregate_log_density(torch.zeros(3, 3), loc, scale)


def test_imq_mmd_equals_brute_force_and_separates_distributions():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 3)), rng.normal(1.0, 1.0, size=(5, 3))
    scales = (0.1, 1.0, 5.0)

    def k(a, b):
        return sum(sum(2 * c / (2 * c + (a[d] - b[d]) ** 2) for c in scales) for d in range(3))

    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    got = float(imq_mmd(torch.tensor(x), torch.tensor(y), scales))
    assert got == pytest.approx(xx + yy - 2 * xy, rel=1e-6)
    torch.manual_seed(0)
    same = torch.stack([imq_mmd(torch.randn(64, 2), torch.randn(64, 2)) for _ in range(30)])
    assert abs(float(same.mean())) < 4 * float(same.std()) / math.sqrt(30)  # unbiased: zero on average
    shifted = float(imq_mmd(torch.randn(64, 2), torch.randn(64, 2) + 1.0))
    assert shifted > float(same.mean()) + 5 * float(same.std())
    with pytest.raises(ValueError, match="latent size mismatch"):
        imq_mmd(torch.zeros(4, 2), torch.zeros(4, 3))


def test_monte_carlo_kl_agrees_with_the_closed_form():
    torch.manual_seed(0)
    loc, scale = torch.tensor([[0.3, -0.2]]), torch.tensor([[0.5, 1.2]])
    exact = float(kl_to_prior(loc, scale, None, make_prior("isotropic", 2)))
    assert exact == pytest.approx(_kl_normal(0.3, 0.5, 0, 1) + _kl_normal(-0.2, 1.2, 0, 1), rel=1e-5)
    near_gauss = make_prior("student_t", 2, df=1000.0)  # no closed form: Monte-Carlo path
    z = loc + scale * torch.randn(200_000, 2)
    mc = kl_to_prior(loc.expand_as(z), scale.expand_as(z), z, near_gauss)
    assert float(mc.mean()) == pytest.approx(exact, abs=0.01)


def _batch(n=6, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": torch.from_numpy((rng.random((n, 1, size, size)) > 0.7).astype(np.uint8) * 255)}


def _model(**over):
    torch.manual_seed(0)
    return VAE(VAEConfig(image_size=16, in_channels=1, latent_dim=3, conv_channels=(4, 4, 8, 8), fc_dim=16, **over))


def test_objective_is_the_vae_elbo_at_alpha_0_beta_1():
    model, batch = _model(alpha=0.0, beta=1.0), _batch()
    torch.manual_seed(5)
    out = model.loss(batch)
    # by hand: one reparameterised draw with the same random numbers
    x = batch["image"].float() / 255
    mu, sigma = model.posterior(x)
    torch.manual_seed(5)
    z = mu + sigma * torch.randn_like(mu)
    log_px = td.Bernoulli(logits=model.decoder(z)).log_prob(x).flatten(1).sum(1)
    kl = td.kl_divergence(td.Normal(mu, sigma), td.Normal(0.0, 1.0)).sum(1)
    elbo = (log_px - kl).mean().detach()
    assert float(out["loss"]) == pytest.approx(-float(elbo), rel=1e-5)
    assert float(out["elbo"]) == pytest.approx(float(elbo), rel=1e-5)
    # beta weighs the KL only, alpha adds alpha * D
    torch.manual_seed(5)
    beta4 = _model(beta=4.0).loss(batch)
    assert float(beta4["loss"]) == pytest.approx(float(out["recon"]) + 4 * float(out["kl"]), rel=1e-5)
    torch.manual_seed(5)
    ab = _model(alpha=2.0, beta=1.0).loss(batch)
    assert float(ab["loss"]) == pytest.approx(-float(ab["elbo"]) + 2 * float(ab["divergence"]), rel=1e-5)


def test_alpha_term_has_gradients_to_the_encoder_for_both_divergences():
    for divergence in ("kl", "mmd"):
        model = _model(alpha=1.0, beta=0.0, divergence=divergence)
        x = _batch()["image"].float() / 255
        t = model.terms(x)
        t["divergence"].backward()
        grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
        assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    with pytest.raises(ValueError, match="unknown divergence 'js'"):
        prior_divergence("js", make_prior("isotropic", 2), torch.zeros(3, 2), torch.ones(3, 2), torch.zeros(3, 2))
