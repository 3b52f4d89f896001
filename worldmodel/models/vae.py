"""The VAE family of "Disentangling Disentanglement in VAEs" (Mathieu et al. 2019) as a learner.

Networks (checked against the official code, ``src/models/vae_dsprites.py`` and ``vae_pinwheel.py``):

* ``conv`` (dSprites): encoder 4 x [Conv 4x4 stride 2 pad 1, ReLU] with 32, 32, 64, 64 channels
  (64 px -> 4x4), a linear layer to 128 and two linear heads (mu and log variance; no
  non-linearity between the 128 layer and the heads, as in the official code); posterior
  ``sigma = exp(logvar / 2) + 1e-6``. Decoder: linear D -> 128, ReLU, 128 -> 64x4x4, ReLU, then
  4 x ConvTranspose 4x4 stride 2 (64 -> 64 -> 64 -> 32 -> C; ReLU between) giving logits
  (Bernoulli) or means (Gaussian).
* ``mlp`` (pinwheel): ``mlp_layers`` hidden layers of ``mlp_hidden`` (ReLU); posterior
  ``sigma = softplus + 1e-6``; a Gaussian likelihood's std is a softplus head (or fixed).

Batches: ``image`` (uint8 ``[B,C,H,W]`` or ``[B,H,W,C]``, or float ``[B,C,H,W]`` in [0, 1], as the
shapes and scene loaders give it) for the conv model, ``points`` float ``[B, D]`` for the MLP.
The frozen encoder's features are the posterior mean.
"""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import distributions as td
from torch import nn

from worldmodel.models.niso import as_float_images
from worldmodel.models.vae_config import VAEConfig
from worldmodel.models.vae_objective import alpha_beta_objective, kl_to_prior, prior_divergence
from worldmodel.models.vae_priors import prior_from_config
from worldmodel.train.config import config_from_dict

EPS = 1e-6


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class ConvEncoder(nn.Module):
    """The paper's dSprites encoder: image ``[B,C,H,W]`` -> ``(mu, sigma)`` ``[B, D]``."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = config.in_channels
        for c in config.conv_channels:
            layers += [nn.Conv2d(c_in, c, 4, 2, 1), nn.ReLU(inplace=True)]
            c_in = c
        self.conv = nn.Sequential(*layers)
        side = config.image_size // 16
        self.fc = nn.Linear(c_in * side * side, config.fc_dim)
        self.mu = nn.Linear(config.fc_dim, config.latent_dim)
        self.logvar = nn.Linear(config.fc_dim, config.latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.fc(self.conv(x).flatten(1))
        return self.mu(h), torch.exp(0.5 * self.logvar(h)) + EPS


class ConvDecoder(nn.Module):
    """The paper's dSprites decoder: ``z [B, D]`` -> ``[B, out_channels, H, W]``."""

    def __init__(self, config: VAEConfig, out_channels: int) -> None:
        super().__init__()
        rev = tuple(reversed(config.conv_channels))
        self.start = (rev[0], config.image_size // 16)
        self.fc = _mlp([config.latent_dim, config.fc_dim, rev[0] * self.start[1] ** 2])
        outs = (*rev[:-1], out_channels)
        ins = (rev[0], *outs[:-1])
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(ins, outs)):
            layers.append(nn.ConvTranspose2d(a, b, 4, 2, 1))
            if i < len(outs) - 1:
                layers.append(nn.ReLU(inplace=True))
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        c, s = self.start
        return self.deconv(self.fc(z).view(z.shape[0], c, s, s))


class MLPEncoder(nn.Module):
    """The paper's pinwheel encoder: ``x [B, P]`` -> ``(mu, sigma)``."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.body = _mlp([config.point_dim] + [config.mlp_hidden] * config.mlp_layers)
        self.mu = nn.Linear(config.mlp_hidden, config.latent_dim)
        self.scale = nn.Linear(config.mlp_hidden, config.latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.mu(h), F.softplus(self.scale(h)) + EPS


class MLPDecoder(nn.Module):
    """The paper's pinwheel decoder: ``z`` -> ``[B, out_features]``."""

    def __init__(self, config: VAEConfig, out_features: int) -> None:
        super().__init__()
        self.body = _mlp([config.latent_dim] + [config.mlp_hidden] * config.mlp_layers)
        self.out = nn.Linear(config.mlp_hidden, out_features)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(z))


class VAE(nn.Module):
    """A VAE trained with the alpha-beta objective (see :mod:`worldmodel.models.vae_objective`).

    Args:
        config: a :class:`VAEConfig` (or its dict); conv models need ``image_size`` and ``in_channels``.
    """

    def __init__(self, config: VAEConfig | dict[str, Any]) -> None:
        super().__init__()
        if not isinstance(config, VAEConfig):
            config = config_from_dict(VAEConfig, dict(config), "vae model config")
        self.config = config
        learned_std = config.likelihood == "gaussian" and config.likelihood_std == 0
        if config.architecture == "conv":
            if config.image_size is None or config.in_channels is None:
                raise ValueError(
                    "the conv VAE needs image_size and in_channels (set from the data when training starts)"
                )
            self.data_channels = config.in_channels
            self.encoder: nn.Module = ConvEncoder(config)
            self.decoder: nn.Module = ConvDecoder(config, config.in_channels * (2 if learned_std else 1))
        else:
            self.data_channels = config.point_dim
            self.encoder = MLPEncoder(config)
            self.decoder = MLPDecoder(config, config.point_dim * (2 if learned_std else 1))
        self.learned_std = learned_std
        self.prior = prior_from_config(config)

    # ------------------------------------------------------------------ pieces

    def observations(self, batch: dict[str, Any]) -> torch.Tensor:
        """The batch's data as float: images ``[B,C,H,W]`` in [0, 1] (conv) or points ``[B, P]`` (MLP)."""
        if self.config.architecture == "mlp":
            if "points" not in batch:
                raise KeyError(
                    f"the mlp VAE trains on batches with 'points' [B, {self.config.point_dim}]; "
                    f"got keys {sorted(batch)}"
                )
            x = batch["points"].float()
            if x.ndim != 2 or x.shape[1] != self.config.point_dim:
                raise ValueError(f"points must be [B, {self.config.point_dim}], got {tuple(x.shape)}")
            return x
        if "image" not in batch:
            raise KeyError(f"the conv VAE trains on batches with 'image' (single views); got keys {sorted(batch)}")
        x = as_float_images(batch["image"], self.data_channels, "image").float()
        if x.shape[-1] != self.config.image_size or x.shape[-2] != self.config.image_size:
            raise ValueError(f"the VAE takes {self.config.image_size}px images, got {tuple(x.shape[-2:])}")
        return x

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, sigma)`` of q(z|x), each ``[B, D]``."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decoder output: ``(logits or mean, std or None)`` shaped like the data."""
        out = self.decoder(z)
        if self.config.likelihood == "bernoulli":
            return out, None
        if self.learned_std:
            mean, raw = out.chunk(2, dim=1)
            return mean, F.softplus(raw) + EPS
        return out, torch.full_like(out, self.config.likelihood_std)

    def mean_output(self, z: torch.Tensor) -> torch.Tensor:
        """E[x|z]: Bernoulli probabilities or Gaussian means."""
        out, _ = self.decode(z)
        return torch.sigmoid(out) if self.config.likelihood == "bernoulli" else out

    def log_likelihood(self, x: torch.Tensor, out: torch.Tensor, std: torch.Tensor | None) -> torch.Tensor:
        """log p(x|z) per data point ``[B]`` (summed over pixels / coordinates)."""
        if self.config.likelihood == "bernoulli":
            ll = -F.binary_cross_entropy_with_logits(out, x, reduction="none")
        else:
            ll = td.Normal(out, std).log_prob(x)
        return ll.flatten(1).sum(1)

    def terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-point ``log_px``, ``kl`` ``[B]``, the batch's ``divergence``, the posterior ``mu``, ``sigma``, ``z``."""
        cfg = self.config
        mu, sigma = (t.float() for t in self.posterior(x))  # densities in fp32 also under bf16 autocast
        z = mu + sigma * torch.randn_like(mu)
        out, std = self.decode(z)
        log_px = self.log_likelihood(x, out.float(), None if std is None else std.float())
        kl = kl_to_prior(mu, sigma, z, self.prior)
        with torch.set_grad_enabled(torch.is_grad_enabled() and cfg.alpha > 0):
            div = prior_divergence(cfg.divergence, self.prior, mu, sigma, z, cfg.mmd_scales)
        return {"log_px": log_px, "kl": kl, "divergence": div, "mu": mu, "sigma": sigma, "z": z}

    # ------------------------------------------------------------------ learner API

    def loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``loss = -mean L_{alpha,beta}`` plus ``elbo``, ``recon``, ``kl``, ``divergence`` (batch means)."""
        t = self.terms(self.observations(batch))
        out = alpha_beta_objective(t["log_px"], t["kl"], t["divergence"], self.config.alpha, self.config.beta)
        out["posterior_std"] = t["sigma"].detach().mean()
        return out

    def encode(self, frames: torch.Tensor, viewpoints: torch.Tensor | None = None) -> torch.Tensor:
        """Features of single views: the posterior mean ``[B, D]`` (viewpoints are ignored)."""
        if self.config.architecture == "mlp":
            return self.posterior(frames.float())[0]
        return self.posterior(as_float_images(frames, self.data_channels, "frames").float())[0]

    def feature_dim(self) -> int:
        """Size of :meth:`encode`'s output."""
        return self.config.latent_dim

    @torch.no_grad()
    def visualise(self, batch: dict[str, Any], max_images: int = 8, steps: int = 8) -> dict[str, torch.Tensor]:
        """Images for TensorBoard (values in [0, 1]).

        Conv: ``reconstructions`` ``[2, n, C, H, W]`` (inputs, E[x|mu(x)]), ``traversals``
        ``[D, steps, C, H, W]`` (latent d swept over +-2.5 prior standard deviations around the
        first image's posterior mean), ``samples`` ``[n, C, H, W]`` (E[x|z], z ~ p). MLP:
        ``scatter`` ``[2, 2, 1, 64, 64]`` histograms of the data beside its reconstructions and of
        posterior draws beside prior draws.
        """
        x = self.observations(batch)[:max_images] if self.config.architecture == "conv" else self.observations(batch)
        mu, sigma = self.posterior(x)
        if self.config.architecture == "mlp":
            z = mu + sigma * torch.randn_like(mu)
            rec = self.mean_output(mu)
            return {
                "scatter": torch.stack(
                    [
                        torch.stack([_histogram(x), _histogram(rec, like=x)]),
                        torch.stack([_histogram(z), _histogram(self.prior.sample(len(z)), like=z)]),
                    ]
                )
            }
        rec = self.mean_output(mu).clamp(0, 1)
        base = mu[:1].repeat(steps, 1)
        spread = 2.5 * _prior_std(self.prior, mu)
        grid = torch.linspace(-1, 1, steps, device=mu.device)
        rows = []
        for d in range(mu.shape[1]):
            z = base.clone()
            z[:, d] = mu[0, d] + grid * spread[d]
            rows.append(self.mean_output(z).clamp(0, 1))
        samples = self.mean_output(self.prior.sample(x.shape[0]).to(mu)).clamp(0, 1)
        return {"reconstructions": torch.stack([x, rec]), "traversals": torch.stack(rows), "samples": samples}


def _prior_std(prior, like: torch.Tensor) -> torch.Tensor:
    """Per-dimension prior standard deviation (empirical from draws when not Gaussian)."""
    gauss = prior.gaussian()
    if gauss is not None:
        return gauss.stddev.to(like)
    return prior.sample(2048).to(like).std(0).clamp(max=3.0)


def _histogram(points: torch.Tensor, like: torch.Tensor | None = None, bins: int = 64) -> torch.Tensor:
    """A 2-d histogram image ``[1, bins, bins]`` in [0, 1] of ``[N, 2]`` points (range from ``like`` if given)."""
    p = points.detach().float().cpu().numpy()[:, :2]
    ref = (like if like is not None else points).detach().float().cpu().numpy()[:, :2]
    lo, hi = ref.min(0) - 0.1, ref.max(0) + 0.1
    h, _, _ = np.histogram2d(p[:, 1], p[:, 0], bins=bins, range=[[lo[1], hi[1]], [lo[0], hi[0]]])
    h = np.flipud(h)  # y up
    return torch.from_numpy((h / max(h.max(), 1.0)).astype(np.float32))[None]


# ---------------------------------------------------------------------- registry hooks


def build(config: VAEConfig | dict[str, Any]) -> VAE:
    """Registry builder: the :class:`VAE` of a model config (conv: ``image_size`` and ``in_channels`` set)."""
    return VAE(config)


def training_data(train_config: Any, model_config: VAEConfig, batch_per_rank: int) -> tuple[Any, VAEConfig]:
    """Registry data hook: ``--data shapes`` / ``pinwheel`` / a dSprites ``.npz``; else a scene dataset (``None``).

    ``shapes`` (procedural, rendered on demand) and ``.npz`` files give 1-channel images
    (an unset ``in_channels`` becomes 1); a scene dataset directory is read by the engine through
    the ``image`` loader kind (``in_channels`` 3). ``pinwheel`` needs the ``mlp`` architecture.
    """
    from worldmodel.data.image_loader import factor_run_data
    from worldmodel.data.pinwheel import PINWHEEL_SOURCE, pinwheel_run_data
    from worldmodel.data.shapes import DSpritesNpz, ShapesDataset, is_dsprites_file

    data = str(train_config.data or "")
    with_val = bool(train_config.eval_every) and train_config.val_fraction > 0
    mlp = model_config.architecture == "mlp"
    if data == PINWHEEL_SOURCE:
        if not mlp:
            raise ValueError("--data pinwheel holds 2-d points: use --architecture mlp (or --preset pinwheel)")
        return pinwheel_run_data(batch_per_rank, train_config.seed, with_val=with_val), model_config
    if mlp:
        raise ValueError(f"the mlp VAE trains on --data pinwheel, got {data!r}")
    if data == "shapes" or is_dsprites_file(data):
        dataset = ShapesDataset(model_config.image_size or 64) if data == "shapes" else DSpritesNpz(data)
        if model_config.in_channels not in (None, 1):
            raise ValueError(f"--data {data} has 1-channel images; in_channels={model_config.in_channels}")
        run = factor_run_data(
            dataset,
            batch_per_rank,
            train_config.seed,
            train_config.val_fraction if with_val else 0.0,
            source="shapes" if data == "shapes" else "dsprites",
        )
        return run, replace(model_config, in_channels=1)
    if not data:
        raise ValueError(
            "no training data: pass --data shapes, --data pinwheel, a dsprites_ndarray_*.npz file or a scene "
            "dataset directory"
        )
    return None, replace(model_config, in_channels=model_config.in_channels or 3)


def load_vae(path: str, device: str | torch.device | None = None) -> tuple[VAE, dict[str, Any]]:
    """A trained :class:`VAE` and its checkpoint config from a checkpoint or run directory."""
    from worldmodel.checkpoint import load_model_state

    state, config = load_model_state(path, device="cpu")
    if config.get("learner") != "vae":
        raise ValueError(f"{path}: checkpoint holds learner {config.get('learner')!r}, not 'vae'")
    model = VAE(dict(config["model"]))
    model.load_state_dict(state)
    if device is not None:
        model = model.to(device)
    return model.eval(), config


def load_frozen(path: str, device: str | torch.device | None = None, **kwargs: Any):
    """A :class:`worldmodel.encoders.FrozenEncoder` (features: posterior mean) from a conv VAE checkpoint."""
    from worldmodel.encoders import FrozenEncoder

    model, config = load_vae(path, device=device or "cpu")
    if model.config.architecture != "conv":
        raise ValueError(
            f"{path}: an 'mlp' VAE encodes {model.config.point_dim}-d points, not images; "
            "use worldmodel.models.vae.load_vae and model.posterior(points)"
        )
    return FrozenEncoder(
        model,
        feature_dim=model.feature_dim(),
        image_size=model.config.image_size,
        name="vae",
        uses_viewpoint=False,
        metadata={
            "checkpoint": config.get("checkpoint_dir"),
            "features": "posterior_mean",
            "step": config.get("step"),
            "model": dataclasses.asdict(model.config),
        },
        **kwargs,
    )
