"""The alpha-beta objective of Mathieu et al. 2019 and its divergence estimators.

Per data point x and one posterior draw z ~ q(z|x) = N(mu(x), diag sigma(x)^2)::

    L_{alpha,beta}(x) = log p(x|z) - beta KL(q(z|x) || p(z)) - alpha D(q(z), p(z))

* KL(q(z|x) || p(z)): closed form when the prior is Gaussian; otherwise the single-sample
  Monte-Carlo estimate ``log q(z|x) - log p(z)`` at the same draw z as the reconstruction term
  (what the official code does for the Student-t, mixture and spike-and-slab priors).
* D, a minibatch quantity shared by the batch:
  ``kl``: the paper's estimate of KL(p(z) || q(z)): draw z_1..z_B from p, estimate the aggregate
  posterior q(z_i) by the minibatch mixture ``(1/B) sum_j q(z_i | x_j)``, return
  ``mean_i [log p(z_i) - log q(z_i)]``;
  ``mmd``: the unbiased MMD^2 between B prior draws and the B posterior draws with a sum of
  per-dimension inverse multiquadratic kernels ``2c / (2c + (x_d - y_d)^2)`` over scales c (the
  official code's ``imq_dim_kernel``, which divides its statistic once more by B; we do not).

The loss minimised is ``-mean_x L``. ``alpha = 0`` is the beta-VAE, ``alpha = 0, beta = 1`` the VAE.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import distributions as td

from worldmodel.models.vae_priors import Prior


def kl_to_prior(q_loc: torch.Tensor, q_scale: torch.Tensor, z: torch.Tensor, prior: Prior) -> torch.Tensor:
    """KL(q(z|x) || p(z)) per data point ``[B]``: closed form for Gaussian priors, else Monte-Carlo at ``z``."""
    gauss = prior.gaussian()
    q = td.Normal(q_loc, q_scale)
    if gauss is not None:
        return td.kl_divergence(q, gauss).sum(-1)
    return q.log_prob(z).sum(-1) - prior.log_prob(z)


def aggregate_log_density(z: torch.Tensor, q_loc: torch.Tensor, q_scale: torch.Tensor) -> torch.Tensor:
    """log of the minibatch mixture ``(1/B) sum_j N(z_i; mu_j, sigma_j)`` for each row of ``z [N, D]`` -> ``[N]``."""
    if z.shape[-1] != q_loc.shape[-1]:
        raise ValueError(f"latent size mismatch: z is {z.shape[-1]}-d, the posteriors {q_loc.shape[-1]}-d")
    log_q = td.Normal(q_loc.unsqueeze(0), q_scale.unsqueeze(0)).log_prob(z.unsqueeze(1)).sum(-1)  # [N, B]
    return torch.logsumexp(log_q, dim=1) - math.log(q_loc.shape[0])


def minibatch_kl_prior_aggregate(
    prior: Prior, q_loc: torch.Tensor, q_scale: torch.Tensor, num_samples: int | None = None
) -> torch.Tensor:
    """The paper's estimate of KL(p(z) || q(z)) (scalar); ``num_samples`` prior draws (default: the batch size)."""
    z = prior.rsample(num_samples or q_loc.shape[0])
    return (prior.log_prob(z) - aggregate_log_density(z, q_loc, q_scale)).mean()


def imq_mmd(x: torch.Tensor, y: torch.Tensor, scales: Sequence[float] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)) -> torch.Tensor:
    """Unbiased MMD^2 of samples ``x [N, D]`` and ``y [M, D]`` (N, M >= 2), summed per-dimension IMQ kernels."""
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"latent size mismatch: x {tuple(x.shape)} and y {tuple(y.shape)} must be [N, D] and [M, D]")
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"the unbiased MMD needs at least 2 samples on each side, got {n} and {m}")

    def gram(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        sq = (a.unsqueeze(1) - b.unsqueeze(0)).pow(2)  # [Na, Nb, D]
        return sum((2 * c) / (2 * c + sq) for c in scales).sum(-1)

    kxx, kyy, kxy = gram(x, x), gram(y, y), gram(x, y)
    xx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    yy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return xx + yy - 2 * kxy.mean()


def prior_divergence(
    kind: str,
    prior: Prior,
    q_loc: torch.Tensor,
    q_scale: torch.Tensor,
    z: torch.Tensor,
    mmd_scales: Sequence[float] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
) -> torch.Tensor:
    """D(q(z), p(z)) of kind ``'kl'`` (minibatch KL(p || q)) or ``'mmd'`` (IMQ MMD^2 of ``z`` against prior draws)."""
    if kind == "kl":
        return minibatch_kl_prior_aggregate(prior, q_loc, q_scale)
    if kind == "mmd":
        return imq_mmd(prior.rsample(z.shape[0]), z, mmd_scales)
    raise ValueError(f"unknown divergence {kind!r}; valid values: 'kl', 'mmd'")


def alpha_beta_objective(
    log_px: torch.Tensor, kl: torch.Tensor, divergence: torch.Tensor, alpha: float, beta: float
) -> dict[str, torch.Tensor]:
    """Batch means of the objective's terms; ``loss = -(mean log p(x|z) - beta mean KL - alpha D)``.

    Also returns ``elbo`` (= mean log p(x|z) - mean KL, the beta = 1, alpha = 0 value), ``recon``
    (= -mean log p(x|z)), ``kl`` and ``divergence``.
    """
    rec, klm = log_px.mean(), kl.mean()
    objective = rec - beta * klm - alpha * divergence
    return {"loss": -objective, "elbo": rec - klm, "recon": -rec, "kl": klm, "divergence": divergence.detach()}
