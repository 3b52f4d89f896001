"""Pluggable priors p(z) of the VAE family (Mathieu et al. 2019), over ``torch.distributions``.

Every prior is a :class:`Prior` (an ``nn.Module``, so learned parameters train and checkpoint
with the model) with ``log_prob(z [..., D]) -> [...]`` (the joint density of the D latents),
``sample(n)`` / ``rsample(n) -> [n, D]`` and ``gaussian()`` (a diagonal ``Normal`` when the
prior is Gaussian, which gives the closed-form KL with the Gaussian posterior; otherwise None and
the objective uses a Monte-Carlo KL).

==============  ===========================================================================
name            p(z)
==============  ===========================================================================
isotropic       N(0, s I)
anisotropic     N(0, diag(v)), ``v = s D softmax(w)`` (sum of variances D s, the paper's
                parametrisation); ``w`` fixed from given relative variances, or learned
student_t       independent Student-t per dimension, ``df``, location 0, scale sqrt(s)
mixture         equal-weight mixture of K Gaussians N(mu_k, s I) (the pinwheel layout:
                mu = (0,-1), (0,1), (1,0), (-1,0))
spike_slab      independent per dimension: gamma N(0, spike_std^2) + (1 - gamma) N(0, s)
==============  ===========================================================================
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import distributions as td
from torch import nn

PRIOR_NAMES: tuple[str, ...] = ("isotropic", "anisotropic", "student_t", "mixture", "spike_slab")


class Prior(nn.Module, ABC):
    """A prior over ``latent_dim`` latents; subclasses give :meth:`distribution` (event shape ``[D]``)."""

    name: str = "prior"

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.latent_dim = int(latent_dim)
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)  # device/dtype of the parameters

    @abstractmethod
    def distribution(self) -> td.Distribution:
        """The ``torch.distributions`` object, event shape ``[latent_dim]``."""

    @property
    def has_rsample(self) -> bool:
        """Whether :meth:`rsample` is reparameterised (else it is :meth:`sample`)."""
        return bool(self.distribution().has_rsample)

    def _check(self, z: torch.Tensor) -> None:
        if z.shape[-1] != self.latent_dim:
            raise ValueError(
                f"latent size mismatch: the {self.name} prior has {self.latent_dim} dimensions, got z of shape "
                f"{tuple(z.shape)}"
            )

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) of ``z [..., D]`` -> ``[...]``."""
        self._check(z)
        return self.distribution().log_prob(z)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """``n`` draws ``[n, D]`` (no gradient)."""
        return self.distribution().sample((int(n),))

    def rsample(self, n: int) -> torch.Tensor:
        """``n`` reparameterised draws ``[n, D]`` where the distribution allows it, else plain draws."""
        d = self.distribution()
        return d.rsample((int(n),)) if d.has_rsample else d.sample((int(n),))

    def gaussian(self) -> td.Normal | None:
        """A diagonal ``Normal`` (batch shape ``[D]``) equal to the prior, or None if it is not Gaussian."""
        return None

    def extra_repr(self) -> str:
        return f"{self.name}, latent_dim={self.latent_dim}"


class GaussianPrior(Prior):
    """N(0, diag(v)) with ``v = s D softmax(w)`` (isotropic when ``w`` is constant).

    Args:
        latent_dim: D.
        variance_scale: s (the mean variance).
        relative_variances: D positive values fixing ``w = log(values)``; None: isotropic start.
        learn: make ``w`` a trained parameter (the anisotropic prior with learned variances).
    """

    def __init__(
        self,
        latent_dim: int,
        variance_scale: float = 1.0,
        relative_variances: Sequence[float] | None = None,
        learn: bool = False,
    ) -> None:
        super().__init__(latent_dim)
        if variance_scale <= 0:
            raise ValueError(f"variance_scale must be > 0, got {variance_scale}")
        if relative_variances is None:
            logits = torch.zeros(latent_dim)
        else:
            rel = torch.as_tensor(list(relative_variances), dtype=torch.float32)
            if rel.shape != (latent_dim,):
                raise ValueError(f"latent size mismatch: {rel.numel()} relative variances for latent_dim={latent_dim}")
            if bool((rel <= 0).any()):
                raise ValueError(f"relative variances must be > 0, got {rel.tolist()}")
            logits = rel.log()
        self.variance_scale = float(variance_scale)
        self.logits = nn.Parameter(logits, requires_grad=learn)
        self.name = "anisotropic" if learn or relative_variances is not None else "isotropic"

    @property
    def variances(self) -> torch.Tensor:
        """Per-dimension variances ``[D]``."""
        return self.variance_scale * self.latent_dim * torch.softmax(self.logits, dim=0)

    def gaussian(self) -> td.Normal:
        return td.Normal(torch.zeros_like(self.logits), self.variances.sqrt())

    def distribution(self) -> td.Distribution:
        return td.Independent(self.gaussian(), 1)


class StudentTPrior(Prior):
    """Independent Student-t per dimension: ``df``, location 0, scale sqrt(s)."""

    name = "student_t"

    def __init__(self, latent_dim: int, df: float = 2.0, variance_scale: float = 1.0) -> None:
        super().__init__(latent_dim)
        if df <= 0 or variance_scale <= 0:
            raise ValueError(f"df and variance_scale must be > 0, got {df}, {variance_scale}")
        self.register_buffer("df", torch.full((latent_dim,), float(df)))
        self.register_buffer("scale", torch.full((latent_dim,), math.sqrt(variance_scale)))

    def distribution(self) -> td.Distribution:
        return td.Independent(td.StudentT(self.df, torch.zeros_like(self.scale), self.scale), 1)


class MixturePrior(Prior):
    """Mixture of K diagonal Gaussians ``N(mu_k, diag(sigma_k^2))`` with weights ``pi_k`` (equal by default).

    Draws are not reparameterised (a discrete component choice); the means and scales are fixed.
    """

    name = "mixture"

    def __init__(
        self,
        means: Sequence[Sequence[float]] | torch.Tensor,
        stds: float | torch.Tensor = 1.0,
        weights: Sequence[float] | torch.Tensor | None = None,
    ) -> None:
        mu = torch.as_tensor(means, dtype=torch.float32)
        if mu.ndim != 2 or mu.shape[0] < 1:
            raise ValueError(f"means must be a [K, D] array with K >= 1, got shape {tuple(mu.shape)}")
        super().__init__(mu.shape[1])
        sd = torch.as_tensor(stds, dtype=torch.float32).expand_as(mu).clone()
        if bool((sd <= 0).any()):
            raise ValueError("mixture standard deviations must be > 0")
        w = (
            torch.full((mu.shape[0],), 1.0 / mu.shape[0])
            if weights is None
            else torch.as_tensor(weights, dtype=torch.float32)
        )
        if w.shape != (mu.shape[0],) or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise ValueError(
                f"weights must be K={mu.shape[0]} non-negative numbers with a positive sum, got {w.tolist()}"
            )
        self.register_buffer("means", mu)
        self.register_buffer("stds", sd)
        self.register_buffer("weights", w / w.sum())

    def distribution(self) -> td.Distribution:
        return td.MixtureSameFamily(
            td.Categorical(probs=self.weights), td.Independent(td.Normal(self.means, self.stds), 1)
        )

    def component_log_probs(self, z: torch.Tensor) -> torch.Tensor:
        """log pi_k + log N(z; mu_k, sigma_k) per component: ``[..., K]``."""
        self._check(z)
        comp = td.Independent(td.Normal(self.means, self.stds), 1)
        return comp.log_prob(z.unsqueeze(-2)) + self.weights.log()


class SpikeSlabPrior(Prior):
    """Sparse prior, independent per dimension: ``gamma N(0, spike_std^2) + (1 - gamma) N(0, s)``."""

    name = "spike_slab"

    def __init__(
        self, latent_dim: int, spike_weight: float = 0.8, spike_std: float = 0.05, variance_scale: float = 1.0
    ) -> None:
        super().__init__(latent_dim)
        if not 0.0 <= spike_weight < 1.0 or spike_std <= 0 or variance_scale <= 0:
            raise ValueError(
                f"need 0 <= spike_weight < 1, spike_std > 0, variance_scale > 0; got {spike_weight}, {spike_std}, "
                f"{variance_scale}"
            )
        self.register_buffer("mix", torch.tensor([spike_weight, 1.0 - spike_weight]).expand(latent_dim, 2).clone())
        self.register_buffer("stds", torch.tensor([spike_std, math.sqrt(variance_scale)]).expand(latent_dim, 2).clone())

    def distribution(self) -> td.Distribution:
        per_dim = td.MixtureSameFamily(
            td.Categorical(probs=self.mix), td.Normal(torch.zeros_like(self.stds), self.stds)
        )
        return td.Independent(per_dim, 1)


def make_prior(
    name: str,
    latent_dim: int,
    *,
    variance_scale: float = 1.0,
    relative_variances: Sequence[float] | None = None,
    learn_variance: bool = False,
    df: float = 2.0,
    means: Sequence[Sequence[float]] | None = None,
    spike_weight: float = 0.8,
    spike_std: float = 0.05,
) -> Prior:
    """The prior called ``name`` (one of :data:`PRIOR_NAMES`) over ``latent_dim`` latents.

    Raises:
        ValueError: an unknown name (listing the valid ones), or options that do not fit
            ``latent_dim`` (latent size mismatch).
    """
    if name not in PRIOR_NAMES:
        raise ValueError(f"unknown prior {name!r}; valid values: {', '.join(map(repr, PRIOR_NAMES))}")
    if name == "isotropic":
        return GaussianPrior(latent_dim, variance_scale)
    if name == "anisotropic":
        if relative_variances is None and not learn_variance:
            raise ValueError("the anisotropic prior needs relative_variances or learn_variance=True")
        return GaussianPrior(latent_dim, variance_scale, relative_variances, learn=learn_variance)
    if name == "student_t":
        return StudentTPrior(latent_dim, df, variance_scale)
    if name == "mixture":
        if means is None:
            raise ValueError("the mixture prior needs its component means ([K, D])")
        prior = MixturePrior(means, math.sqrt(variance_scale))
        if prior.latent_dim != latent_dim:
            raise ValueError(f"latent size mismatch: mixture means are {prior.latent_dim}-d, latent_dim={latent_dim}")
        return prior
    return SpikeSlabPrior(latent_dim, spike_weight, spike_std, variance_scale)


def prior_from_config(config) -> Prior:
    """The prior of a :class:`worldmodel.models.vae_config.VAEConfig`."""
    return make_prior(
        config.prior,
        config.latent_dim,
        variance_scale=config.prior_variance_scale,
        relative_variances=config.prior_variances or None,
        learn_variance=config.learn_prior_variance,
        df=config.student_df,
        means=config.mixture_layout() if config.prior == "mixture" else None,
        spike_weight=config.spike_weight,
        spike_std=config.spike_std,
    )
