"""Configuration, presets and registry entry of the VAE family of Mathieu et al. 2019 (torch-free).

"Disentangling Disentanglement in Variational Autoencoders" trains with

    L_{alpha,beta}(x) = E_q[log p(x|z)] - beta KL(q(z|x) || p(z)) - alpha D(q(z), p(z))

(``alpha = 0``: beta-VAE; ``alpha = 0, beta = 1``: the VAE) under a choice of priors. The model
lives in :mod:`worldmodel.models.vae`, the priors in :mod:`worldmodel.models.vae_priors`, the
objective in :mod:`worldmodel.models.vae_objective`.

Data (``--data``): ``shapes`` (our procedural dSprites grid, rendered on demand), a
``dsprites_ndarray_*.npz`` file (DeepMind's dSprites), ``pinwheel`` (the 2-d pinwheel), or a scene
dataset directory (single views through the ``image`` loader kind).

Presets (model overrides + training overrides):

* ``small`` (the default): the paper's dSprites network on ``--data shapes``, CPU-sized (2000
  steps at batch 64, lr 5e-4).
* ``tiny``: a narrow conv VAE on 32 px data for tests.
* ``dsprites``: the paper's dSprites setting (independence experiments): latent 10, Bernoulli
  likelihood, Adam lr 5e-4, batch 64, 20 epochs of the 737,280 images (230,400 steps).
* ``pinwheel``: the paper's clustering experiment: MLP encoder/decoder (one hidden layer of 100),
  2-d latent, the 4-component mixture prior with variance scale 0.03, Gaussian likelihood with a
  learned standard deviation, full batches of the 400 points, lr 1e-3, 500 steps; the paper's
  two runs are ``beta 1, alpha 0`` and ``beta 0, alpha 1`` with the minibatch KL(p || q).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from worldmodel.models.registry import LearnerSpec
from worldmodel.train.config import check_choice

ARCHITECTURES: tuple[str, ...] = ("conv", "mlp")
LIKELIHOODS: tuple[str, ...] = ("bernoulli", "gaussian")
#: Names of the priors of :mod:`worldmodel.models.vae_priors`.
PRIOR_NAMES: tuple[str, ...] = ("isotropic", "anisotropic", "student_t", "mixture", "spike_slab")
DIVERGENCES: tuple[str, ...] = ("kl", "mmd")
#: The pinwheel prior's component means (official code, ``vae_pinwheel.init_pz``).
PINWHEEL_MEANS: tuple[tuple[float, float], ...] = ((0.0, -1.0), (0.0, 1.0), (1.0, 0.0), (-1.0, 0.0))
#: Kernel scales of the IMQ MMD (official code, ``regularisers.imq_dim_kernel``).
MMD_SCALES: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass
class VAEConfig:
    """Architecture, prior and objective of a VAE of the alpha-beta family."""

    architecture: Literal["conv", "mlp"] = "conv"
    """'conv': the paper's dSprites network (4 conv layers 32/32/64/64, 4x4 stride 2, fc 128, mirrored decoder)
    for square images; 'mlp': the paper's pinwheel network for vector data."""
    image_size: int | None = None
    """Conv: square input side (a multiple of 16); None: taken from the data. MLP: not an image model, always 0."""
    in_channels: int | None = None
    """Conv: image channels, 1 (shapes, dSprites) or 3 (scene datasets); None: taken from the data. MLP: unused (0)."""
    point_dim: int = 2
    """MLP: size of a data vector (2 for the pinwheel)."""
    latent_dim: int = 10
    """Size D of the latent z (paper: 10 on dSprites, 2 on the pinwheel)."""
    conv_channels: tuple[int, ...] = (32, 32, 64, 64)
    """Conv: output channels of the encoder's 4x4 stride-2 convolutions (the decoder mirrors them)."""
    fc_dim: int = 128
    """Conv: width of the fully connected layer between the convolutions and the latent heads."""
    mlp_hidden: int = 100
    """MLP: width of the hidden layers."""
    mlp_layers: int = 1
    """MLP: number of hidden layers of the encoder and of the decoder."""
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"
    """p(x|z): 'bernoulli' (logits; data in [0, 1]) or 'gaussian'."""
    likelihood_std: float = 0.0
    """Gaussian likelihood: fixed standard deviation; 0: a decoder head (softplus, the paper's pinwheel)."""
    prior: Literal["isotropic", "anisotropic", "student_t", "mixture", "spike_slab"] = "isotropic"
    """p(z): 'isotropic' N(0, s I), 'anisotropic' N(0, diag(v)), 'student_t' (independent, df), 'mixture' (of
    Gaussians; the 4-component pinwheel layout by default) or 'spike_slab' (sparse: per dimension spike
    N(0, spike_std) + slab N(0, s))."""
    prior_variance_scale: float = 1.0
    """s: prior variance scale (paper: 1 on dSprites, 0.03 on the pinwheel); anisotropic variances sum to D * s."""
    prior_variances: tuple[float, ...] = ()
    """Anisotropic prior: relative variances, one per latent dimension, normalised to sum to D * s (the paper's softmax
    parametrisation); empty: isotropic start (then learn_prior_variance must be on)."""
    learn_prior_variance: bool = False
    """Anisotropic prior: learn the variances (their sum stays D * s)."""
    student_df: float = 2.0
    """Student-t prior: degrees of freedom (official default 2; 9 in the independence experiments)."""
    mixture_means: tuple[float, ...] = ()
    """Mixture prior: component means flattened row-major ([K, D]); empty: the pinwheel layout
    (0,-1), (0,1), (1,0), (-1,0) (D=2)."""
    spike_weight: float = 0.8
    """Spike-and-slab prior: gamma, the probability of the spike of each dimension."""
    spike_std: float = 0.05
    """Spike-and-slab prior: standard deviation of the spike."""
    beta: float = 1.0
    """Weight of KL(q(z|x) || p(z)) (overlap control; 1 with alpha 0 is the VAE)."""
    alpha: float = 0.0
    """Weight of the aggregate-posterior divergence D(q(z), p(z)) (0 gives the beta-VAE)."""
    divergence: Literal["kl", "mmd"] = "kl"
    """D: 'kl', the paper's minibatch estimate of KL(p(z) || q(z)), or 'mmd', an unbiased MMD^2 with IMQ kernels."""
    mmd_scales: tuple[float, ...] = MMD_SCALES
    """MMD: scales c of the per-dimension IMQ kernels 2c / (2c + (x_d - y_d)^2), summed (official code's scales)."""

    def __post_init__(self) -> None:
        check_choice("architecture", self.architecture, ARCHITECTURES)
        check_choice("likelihood", self.likelihood, LIKELIHOODS)
        check_choice("prior", self.prior, PRIOR_NAMES)
        check_choice("divergence", self.divergence, DIVERGENCES)
        self.conv_channels = tuple(int(c) for c in self.conv_channels)
        self.prior_variances = tuple(float(v) for v in self.prior_variances)
        self.mixture_means = tuple(float(v) for v in self.mixture_means)
        self.mmd_scales = tuple(float(v) for v in self.mmd_scales)
        for name in ("latent_dim", "fc_dim", "mlp_hidden", "mlp_layers", "point_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.architecture == "mlp":
            if self.image_size not in (None, 0) or self.in_channels not in (None, 0):
                raise ValueError("the 'mlp' VAE takes vectors, not images: leave image_size and in_channels unset")
            self.image_size, self.in_channels = 0, 0
        else:
            if len(self.conv_channels) != 4 or min(self.conv_channels) < 1:
                raise ValueError(
                    f"conv_channels must be 4 positive widths (the paper's 32, 32, 64, 64), got {self.conv_channels}"
                )
            if self.image_size is not None and (self.image_size < 16 or self.image_size % 16):
                raise ValueError(
                    f"image_size must be a positive multiple of 16 (4 stride-2 convolutions), got {self.image_size}"
                )
            if self.in_channels is not None:
                check_choice("in_channels", self.in_channels, (1, 3))
        if self.beta < 0 or self.alpha < 0:
            raise ValueError(f"alpha and beta must be >= 0, got alpha={self.alpha}, beta={self.beta}")
        if self.likelihood_std < 0 or not math.isfinite(self.likelihood_std):
            raise ValueError(f"likelihood_std must be >= 0 (0: learned), got {self.likelihood_std}")
        if self.prior_variance_scale <= 0:
            raise ValueError(f"prior_variance_scale must be > 0, got {self.prior_variance_scale}")
        if self.student_df <= 0:
            raise ValueError(f"student_df must be > 0, got {self.student_df}")
        if not 0.0 <= self.spike_weight < 1.0 or self.spike_std <= 0:
            raise ValueError(
                f"spike_weight must be in [0, 1) and spike_std > 0, got {self.spike_weight}, {self.spike_std}"
            )
        if not self.mmd_scales or min(self.mmd_scales) <= 0:
            raise ValueError(f"mmd_scales must list positive scales, got {self.mmd_scales}")
        if self.prior_variances:
            if self.prior != "anisotropic":
                raise ValueError(f"prior_variances is only used by the 'anisotropic' prior, not {self.prior!r}")
            if len(self.prior_variances) != self.latent_dim:
                raise ValueError(
                    f"latent size mismatch: prior_variances has {len(self.prior_variances)} values "
                    f"for latent_dim={self.latent_dim}"
                )
            if min(self.prior_variances) <= 0:
                raise ValueError(f"prior_variances must be > 0, got {self.prior_variances}")
        elif self.prior == "anisotropic" and not self.learn_prior_variance:
            raise ValueError(
                "the 'anisotropic' prior needs prior_variances (one per latent dimension) or learn_prior_variance"
            )
        if self.learn_prior_variance and self.prior != "anisotropic":
            raise ValueError(f"learn_prior_variance applies to the 'anisotropic' prior only, not {self.prior!r}")
        if self.prior == "mixture":
            if self.mixture_means and len(self.mixture_means) % self.latent_dim:
                raise ValueError(
                    f"latent size mismatch: {len(self.mixture_means)} mixture_means values "
                    f"are not a [K, {self.latent_dim}] array"
                )
            if not self.mixture_means and self.latent_dim != 2:
                raise ValueError(
                    f"latent size mismatch: the pinwheel mixture layout is 2-d, latent_dim={self.latent_dim}; "
                    "set latent_dim 2 or give mixture_means"
                )
        elif self.mixture_means:
            raise ValueError(f"mixture_means is only used by the 'mixture' prior, not {self.prior!r}")

    @property
    def feature_dim(self) -> int:
        """Size of the frozen-encoder features (the posterior mean)."""
        return self.latent_dim

    def mixture_layout(self) -> tuple[tuple[float, ...], ...]:
        """The mixture prior's means as rows of length ``latent_dim``."""
        if not self.mixture_means:
            return PINWHEEL_MEANS
        d = self.latent_dim
        return tuple(self.mixture_means[i : i + d] for i in range(0, len(self.mixture_means), d))


_SMALL_TRAIN = {
    "data": "shapes",
    "batch_size": 64,
    "steps": 2000,
    "lr": 5e-4,
    "lr_final": 5e-4,
    "lr_anneal_steps": 0,
    "lr_schedule": "constant",
    "warmup_steps": 0,
    "ckpt_every": 500,
    "eval_every": 250,
    "image_every": 250,
}

PRESETS = {
    "small": {"model": {}, "train": dict(_SMALL_TRAIN)},
    "tiny": {
        "model": {"conv_channels": (8, 8, 16, 16), "fc_dim": 32, "latent_dim": 4},
        "train": {**_SMALL_TRAIN, "batch_size": 16, "steps": 50, "eval_every": 25, "image_every": 25, "ckpt_every": 25},
    },
    "dsprites": {
        "model": {"latent_dim": 10, "likelihood": "bernoulli", "prior": "isotropic", "beta": 1.0, "alpha": 0.0},
        "train": {
            **_SMALL_TRAIN,
            "steps": 230_400,
            "ckpt_every": 10_000,
            "eval_every": 5000,
            "image_every": 5000,
            "log_every": 100,
        },
    },
    "pinwheel": {
        "model": {
            "architecture": "mlp",
            "latent_dim": 2,
            "mlp_hidden": 100,
            "mlp_layers": 1,
            "likelihood": "gaussian",
            "likelihood_std": 0.0,
            "prior": "mixture",
            "prior_variance_scale": 0.03,
            "beta": 1.0,
            "alpha": 0.0,
            "divergence": "kl",
        },
        "train": {
            "data": "pinwheel",
            "batch_size": 400,
            "steps": 500,
            "lr": 1e-3,
            "lr_final": 1e-3,
            "lr_anneal_steps": 0,
            "lr_schedule": "constant",
            "warmup_steps": 0,
            "ckpt_every": 250,
            "eval_every": 100,
            "image_every": 100,
            "eval_batches": 1,
        },
    },
}

SPEC = LearnerSpec(
    name="vae",
    config_class="worldmodel.models.vae_config:VAEConfig",
    builder="worldmodel.models.vae:build",
    loader="image",
    presets=PRESETS,
    default_preset="small",
    frozen_loader="worldmodel.models.vae:load_frozen",
    data_builder="worldmodel.models.vae:training_data",
    description="VAE family of Mathieu et al. 2019: E log p(x|z) - beta KL(q(z|x)||p(z)) - alpha D(q(z), p(z))",
)
