"""Neural Isometries (NISO): an autoencoder whose latent transformations are isometries.

Mitchel, Taylor and Sitzmann (2024). A convolutional encoder ``E`` maps an image to a latent
grid (``|N|`` positions x ``d`` channels). A learned operator ``Omega = Phi Lambda Phi^T M``
(:class:`worldmodel.models.isometry.SpectralOperator`) gives an eigenbasis in which the latents
of two related observations ``psi`` and ``T psi`` are compared: ``A = Phi^T M E(psi)`` and
``B = Phi^T M E(T psi)``. The map between them is solved in closed form,
``tau = proj_SO(k)(P * (B A^T))``, and the losses ask that it explain the pair:

* ``L_R``: L1 reconstruction of ``T psi`` from ``decode(Phi tau A)`` and of ``psi`` from
  ``decode(Phi tau^T B)``;
* ``L_E``: L1 latent equivariance, ``|tau A - B| + |tau^T B - A|``;
* ``L_M``: multiplicity regulariser ``||diag(P 1) - P||_F / k``;
* ``L = L_R + alpha L_E + beta L_M`` (paper: ``alpha = 0.5``, ``beta = 0.1``).

``mode="autoencoder"`` trains the same encoder/decoder as a plain autoencoder on both views of
each pair (an autoencoder "with augmentation": the baseline of the paper's homNIST table); with
``ae_bottleneck=True`` its latent passes through a learned rank-k spatial basis
(``Phi Phi^T M E``), so that its decoder sees ``k x d`` numbers as NISO's does.

Batches follow the pair-loader layout of the data contract (``frame_a``, ``frame_b``: uint8
``[B,H,W,C]`` or float ``[B,C,H,W]`` in [0, 1]); other keys are ignored. Inside the model the
pixels are mapped to ``config.input_range`` (the official ``[-1, 1]`` by default, ``[0, 1]`` for
checkpoints written before the option existed) by :meth:`Niso.prepare_images`.

Features for downstream use (:meth:`Niso.encode`, option ``features``):

* ``"latent"``: the projected latent ``A = Phi^T M E(psi)`` flattened (``k * d``); it transforms
  by ``tau`` under the learned symmetries (what a pose head or an equivariant policy wants); for
  the bottlenecked autoencoder, its ``k x d`` bottleneck coefficients;
* ``"gram"``: the upper triangle of ``A^T A`` (``d (d + 1) / 2``), invariant to any orthogonal
  ``tau`` acting on the eigenbasis index (what a classifier that should ignore the
  transformation wants);
* ``"grid"``: the raw encoder grid ``E(psi)`` flattened (``|N| * d``), e.g. for the autoencoder.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import torch
from torch import nn

from worldmodel.models.isometry import (
    SpectralOperator,
    equivariance_error,
    multiplicity_loss,
    project,
    solve_isometry,
    unproject,
)
from worldmodel.models.niso_config import FEATURES, NisoConfig

#: Small architectures for quick experiments; the registry presets (with training settings) are
#: in :data:`worldmodel.models.niso_config.PRESETS`.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "tiny": dict(image_size=16, in_channels=1, channels=(8, 16), blocks=1, latent_dim=8, rank=8),
    "small": dict(image_size=40, in_channels=1, channels=(16, 32), blocks=1, latent_dim=16, rank=16),
    "paper": dict(image_size=40, in_channels=1, channels=(64, 128), blocks=3, latent_dim=32, rank=32),
    "scenes": dict(image_size=64, in_channels=3, channels=(16, 32, 64), blocks=1, latent_dim=16, rank=32),
}


def resolve_config(config: NisoConfig | dict[str, Any] | None = None, **overrides: Any) -> NisoConfig:
    """A complete :class:`NisoConfig` (``image_size`` and ``in_channels`` set) from a config or dict."""
    if isinstance(config, NisoConfig):
        values = {f.name: getattr(config, f.name) for f in fields(NisoConfig)}
    else:
        values = dict(config or {})
    values.update(overrides)
    names = {f.name for f in fields(NisoConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown NISO config field(s) {', '.join(unknown)}; valid fields: {', '.join(sorted(names))}")
    if isinstance(values.get("channels"), list):
        values["channels"] = tuple(values["channels"])
    cfg = NisoConfig(**values)
    if cfg.image_size is None:
        raise ValueError("NISO needs image_size (set it, or let the training engine take it from the data)")
    if cfg.in_channels is None:
        cfg.in_channels = 3
    return cfg


def _norm(width: int) -> nn.GroupNorm:
    # Per-sample, per-channel normalisation over space (instance norm with an affine map). It is
    # what keeps NISO from collapsing: with it the decoder sees latents at a fixed scale, so the
    # encoder cannot shrink the latent (or drown it in a shared offset) to make L_E vanish while
    # the decoder scales it back up.
    return nn.GroupNorm(width, width)


class _ResBlock(nn.Module):
    """norm -> SiLU -> conv3x3 -> norm -> SiLU -> conv3x3, plus a (1x1 when widths differ) skip."""

    def __init__(self, in_width: int, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _norm(in_width),
            nn.SiLU(),
            nn.Conv2d(in_width, width, 3, padding=1),
            _norm(width),
            nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1),
        )
        self.skip = nn.Identity() if in_width == width else nn.Conv2d(in_width, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class ConvEncoder(nn.Module):
    """Images ``[B, C, H, W]`` -> latent grid ``[B, d, H / 2^(S-1), W / 2^(S-1)]``.

    A pointwise stem, then per stage (2x2 average pooling between stages) ``blocks`` residual
    blocks, then norm -> SiLU -> 1x1 convolution to ``d`` channels.
    """

    def __init__(self, in_channels: int, channels: tuple[int, ...], blocks: int, latent_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels[0], 1), nn.SiLU()]
        width = channels[0]
        for i, out in enumerate(channels):
            if i > 0:
                layers.append(nn.AvgPool2d(2))
            for _ in range(max(1, blocks)):
                layers.append(_ResBlock(width, out))
                width = out
        layers += [_norm(width), nn.SiLU(), nn.Conv2d(width, latent_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """Latent grid ``[B, d, h, w]`` -> images ``[B, C, h 2^(S-1), w 2^(S-1)]`` (linear output).

    Per stage (widths reversed, nearest 2x upsampling between stages) ``blocks`` residual blocks
    (the first one normalises its input), then norm -> SiLU -> 1x1 convolution.
    """

    def __init__(self, out_channels: int, channels: tuple[int, ...], blocks: int, latent_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = latent_dim
        for i, out in enumerate(reversed(channels)):
            if i > 0:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            for _ in range(max(1, blocks)):
                layers.append(_ResBlock(width, out))
                width = out
        layers += [_norm(width), nn.SiLU(), nn.Conv2d(width, out_channels, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def _full_precision(device: torch.device):
    """A context that turns autocast off (the SVD and the small matrix algebra need float32)."""
    return torch.autocast(device_type=device.type, enabled=False)


def as_float_images(x: torch.Tensor, channels: int, name: str = "frames") -> torch.Tensor:
    """uint8 ``[B,H,W,C]`` / ``[B,C,H,W]`` or float ``[B,C,H,W]`` -> float ``[B,channels,H,W]`` in [0, 1].

    Grey models accept RGB (averaged); RGB models accept grey (repeated).
    """
    if x.ndim != 4:
        raise ValueError(f"{name} must be a batch of images [B,H,W,C] or [B,C,H,W], got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
            x = x.permute(0, 3, 1, 2)
        x = x.float().div_(255.0)
    elif not x.is_floating_point():
        raise ValueError(f"{name} must be uint8 or float, got {x.dtype}")
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 3 and channels == 1:
        return x.mean(1, keepdim=True)
    if x.shape[1] == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1)
    raise ValueError(f"{name} have {x.shape[1]} channels; this model takes {channels} (shape {tuple(x.shape)})")


class Niso(nn.Module):
    """The NISO learner: ``loss(batch)`` for training, ``encode(frames, viewpoints)`` for features.

    Args:
        config: architecture and loss weights (:class:`NisoConfig`).
    """

    def __init__(self, config: NisoConfig | dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = config = resolve_config(config if config is not None else ARCHITECTURES["small"])
        self.encoder = ConvEncoder(config.in_channels, config.channels, config.blocks, config.latent_dim)
        self.decoder = ConvDecoder(config.in_channels, config.channels, config.blocks, config.latent_dim)
        self.operator: SpectralOperator | None = None
        self.bottleneck: SpectralOperator | None = None  # the capacity-matched autoencoder's rank-k basis
        if config.uses_basis:
            gen = torch.Generator().manual_seed(config.init_seed)
            basis = SpectralOperator(config.num_positions, config.rank, generator=gen)
            if config.mode == "niso":
                self.operator = basis
            else:  # its eigenvalues are unused: only Phi and M shape the bottleneck
                self.bottleneck = basis

    # ------------------------------------------------------------------ pieces

    def to_model_range(self, images: torch.Tensor) -> torch.Tensor:
        """Float images in [0, 1] -> the model's ``input_range`` (``2 x - 1`` for '[-1,1]')."""
        return images * 2.0 - 1.0 if self.config.input_range == "[-1,1]" else images

    def from_model_range(self, images: torch.Tensor) -> torch.Tensor:
        """Images in the model's ``input_range`` (e.g. decoder outputs) -> [0, 1] scale (not clamped)."""
        return (images + 1.0) * 0.5 if self.config.input_range == "[-1,1]" else images

    def prepare_images(self, frames: torch.Tensor, name: str = "frames") -> torch.Tensor:
        """Encoder input ``[B, C, H, W]`` in ``input_range`` from uint8 or [0, 1] float frames (see as_float_images).

        Every caller that feeds :attr:`encoder` or :meth:`grid` directly must go through this (or
        :meth:`to_model_range`), or a '[-1,1]' model sees inputs of the wrong range.
        """
        return self.to_model_range(as_float_images(frames, self.config.in_channels, name))

    def grid(self, images: torch.Tensor) -> torch.Tensor:
        """Encoder latents as ``[B, N, d]`` (positions in row-major order)."""
        z = self.encoder(images)
        return z.flatten(2).transpose(1, 2)

    def decode_grid(self, latent: torch.Tensor) -> torch.Tensor:
        """Decode ``[B, N, d]`` latents to images ``[B, C, H, W]``."""
        s = self.config.latent_size
        return self.decoder(latent.transpose(1, 2).reshape(latent.shape[0], -1, s, s))

    def spectral(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(Phi [N,k], Lambda [k], M [N])`` of the learned operator."""
        if self.operator is None:
            raise ValueError("this model was trained with mode='autoencoder' and has no operator")
        return self.operator()

    def basis(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Phi [N,k], M [N])``: NISO's eigenbasis, or the bottlenecked autoencoder's rank-k basis."""
        if self.operator is not None:  # through spectral(), which callers may replace by a cached basis
            phi, _, mass = self.spectral()
            return phi, mass
        if self.bottleneck is None:
            raise ValueError(
                "this model is a plain autoencoder (mode='autoencoder', ae_bottleneck=False) and has no rank-k basis"
            )
        phi, _, mass = self.bottleneck()
        return phi, mass

    def project_images(self, frames: torch.Tensor) -> torch.Tensor:
        """Projected latents ``A = Phi^T M E(frames)`` ``[B, k, d]`` of uint8 or [0, 1] float frames."""
        phi, mass = self.basis()
        return project(self.grid(self.prepare_images(frames)), phi, mass)

    def reconstruct_grid(self, latent: torch.Tensor) -> torch.Tensor:
        """Autoencoder path: decode ``[B, N, d]`` latents, through ``Phi Phi^T M`` when ``ae_bottleneck``."""
        if self.bottleneck is None:
            return self.decode_grid(latent)
        with _full_precision(latent.device):
            phi, _, mass = self.bottleneck()
            latent = unproject(project(latent.float(), phi, mass), phi)
        return self.decode_grid(latent)

    def pair_maps(self, frame_a: torch.Tensor, frame_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """``A``, ``B``, ``tau`` (A -> B) and the relative equivariance error for a batch of pairs."""
        a_img, b_img = self.prepare_images(frame_a, "frame_a"), self.prepare_images(frame_b, "frame_b")
        z = self.grid(torch.cat((a_img, b_img)))
        with _full_precision(z.device):
            phi, lam, mass = self.spectral()
            a, b = project(z.float(), phi, mass).chunk(2)
            tau = solve_isometry(a, b, lam, eps=self.config.grad_eps)
            return {"a": a, "b": b, "tau": tau, "equivariance_error": equivariance_error(tau, a, b)}

    # ------------------------------------------------------------------ training

    def loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Losses of a batch of pairs; the key ``loss`` is optimised, the rest is for logging."""
        a_img = self.prepare_images(batch["frame_a"], "frame_a")
        b_img = self.prepare_images(batch["frame_b"], "frame_b")
        x = torch.cat((a_img, b_img))
        z = self.grid(x)
        if self.operator is None:  # autoencoder on both views (through the rank-k basis with ae_bottleneck)
            recon = (self.reconstruct_grid(z).float() - x).abs().mean() * 2.0  # sum over the two views, as in NISO
            return {"loss": recon, "recon": recon.detach()}
        cfg = self.config
        # The operator, the SVD and the maps run in float32 even under bf16 autocast.
        with _full_precision(z.device):
            phi, lam, mass = self.operator()
            a, b = project(z.float(), phi, mass).chunk(2)
            tau = solve_isometry(a, b, lam, eps=cfg.grad_eps)
            ta, tb = tau @ a, tau.transpose(1, 2) @ b
            equiv = (ta - b).abs().mean() + (tb - a).abs().mean()
            mult = multiplicity_loss(lam)
            latents = unproject(torch.cat((ta, tb)), phi)
        decoded = self.decode_grid(latents).float()
        recon = (decoded - torch.cat((b_img, a_img))).abs().mean() * 2.0  # sum of the two directions' means
        loss = recon + cfg.alpha * equiv + cfg.beta * mult
        with torch.no_grad():
            eq_err = equivariance_error(tau, a, b).mean()
            identity_err = equivariance_error(torch.eye(cfg.rank, device=a.device).expand_as(tau), a, b).mean()
        return {
            "loss": loss,
            "recon": recon.detach(),
            "equiv": equiv.detach(),
            "mult": mult.detach(),
            "equivariance_error": eq_err,
            "identity_error": identity_err,
            "eigenvalue_max": lam.detach().max(),
            "eigenvalue_min_gap": torch.diff(lam.detach()).min() if lam.numel() > 1 else lam.detach().sum() * 0,
        }

    @torch.no_grad()
    def visualise(self, batch: dict[str, Any], max_images: int = 8) -> dict[str, torch.Tensor]:
        """Images for TensorBoard (values in [0, 1]).

        * ``reconstructions`` ``[4, n, C, H, W]``: rows ``psi``, ``decode(Phi tau^T B)``,
          ``T psi``, ``decode(Phi tau A)`` (autoencoder: ``psi``, its reconstruction, ``T psi``,
          its reconstruction);
        * ``tau`` ``[n, 1, k, k]``: the maps, ``(tau + 1) / 2``;
        * ``spectrum`` ``[1, 1, 48, 4k]``: a bar chart of ``Lambda`` (bar height / largest eigenvalue).
        """
        ch = self.config.in_channels
        a_img = as_float_images(batch["frame_a"][:max_images], ch, "frame_a").float()
        b_img = as_float_images(batch["frame_b"][:max_images], ch, "frame_b").float()
        n = a_img.shape[0]
        if self.operator is None:
            z = self.grid(self.to_model_range(torch.cat((a_img, b_img))))
            rec = self.from_model_range(self.reconstruct_grid(z).float()).clamp(0, 1)
            return {"reconstructions": torch.stack((a_img, rec[:n], b_img, rec[n:]))}
        phi, lam, _ = self.operator()
        maps = self.pair_maps(a_img, b_img)  # takes [0, 1] frames and maps them to input_range itself
        ta, tb = maps["tau"] @ maps["a"], maps["tau"].transpose(1, 2) @ maps["b"]
        dec = self.from_model_range(self.decode_grid(unproject(torch.cat((tb, ta)), phi)).float()).clamp(0, 1)
        return {
            "reconstructions": torch.stack((a_img, dec[:n], b_img, dec[n:])),
            "tau": ((maps["tau"].float()[:, None] + 1) / 2).clamp(0, 1),
            "spectrum": spectrum_image(lam.float()),
        }

    # ------------------------------------------------------------------ features

    def feature_dim(self, features: str | None = None) -> int:
        """Size of :meth:`encode`'s output for the given feature kind (default: the config's)."""
        features = features or self.config.features
        if features not in FEATURES:
            raise ValueError(f"unknown NISO features {features!r}; valid: {', '.join(map(repr, FEATURES))}")
        if self.operator is None and self.bottleneck is None and features == "gram":
            raise ValueError(
                "a plain autoencoder-mode model has no rank-k basis: use features 'grid' (or 'latent', which means the "
                "grid)"
            )
        return replace(self.config, features=features).feature_dim

    def features(self, frames: torch.Tensor, features: str | None = None) -> torch.Tensor:
        """Features ``[B, D]`` of single views (see the module docstring for the kinds)."""
        features = features or self.config.features
        self.feature_dim(features)  # validates the kind
        if features == "grid" or (self.operator is None and self.bottleneck is None):
            return self.grid(self.prepare_images(frames)).flatten(1)
        a = self.project_images(frames)
        if features == "latent":
            return a.flatten(1)
        gram = a.transpose(1, 2) @ a
        iu = torch.triu_indices(gram.shape[-1], gram.shape[-1], device=gram.device)
        return gram[:, iu[0], iu[1]]

    def encode(self, frames: torch.Tensor, viewpoints: torch.Tensor | None = None) -> torch.Tensor:
        """Frozen-encoder protocol: features of ``frames`` (viewpoints are not used)."""
        return self.features(frames)


def spectrum_image(eigenvalues: torch.Tensor, height: int = 48, bar: int = 4) -> torch.Tensor:
    """A bar chart ``[1, 1, height, bar * k]`` of eigenvalues (heights relative to the largest)."""
    lam = eigenvalues.detach().cpu()
    top = float(lam.max().clamp_min(1e-12))
    rows = torch.arange(height, 0, -1, dtype=lam.dtype).unsqueeze(1)  # height .. 1, top to bottom
    filled = (rows <= (lam / top * height).round().unsqueeze(0)).to(torch.float32)  # [height, k]
    return filled.repeat_interleave(bar, dim=1)[None, None]


def build(config: NisoConfig | dict[str, Any]) -> Niso:
    """Registry builder: the :class:`Niso` of a model config (``image_size`` must be set)."""
    return Niso(config)


def build_niso(architecture: str | None = "small", **overrides: Any) -> Niso:
    """A :class:`Niso` from a named architecture (see :data:`ARCHITECTURES`) and overrides."""
    values: dict[str, Any] = {}
    if architecture is not None:
        if architecture not in ARCHITECTURES:
            raise ValueError(
                f"unknown NISO architecture {architecture!r}; valid: {', '.join(map(repr, ARCHITECTURES))}"
            )
        values.update(ARCHITECTURES[architecture])
    values.update(overrides)
    return Niso(values)


def load_niso(path: str, device: str | torch.device | None = None) -> tuple[Niso, dict[str, Any]]:
    """A trained :class:`Niso` and its checkpoint config from a checkpoint or run directory."""
    from worldmodel.checkpoint import load_model_state

    state, config = load_model_state(path, device="cpu")
    if config.get("learner") != "niso":
        raise ValueError(f"{path}: checkpoint holds learner {config.get('learner')!r}, not 'niso'")
    model = Niso(dict(config["model"]))
    model.load_state_dict(state)
    if device is not None:
        model = model.to(device)
    return model.eval(), config


def load_frozen(path: str, device: str | torch.device | None = None, features: str | None = None, **kwargs: Any):
    """A :class:`worldmodel.encoders.FrozenEncoder` from a NISO checkpoint.

    Args:
        path: checkpoint directory or run directory (newest checkpoint).
        device: where to run (default: CPU).
        features: ``"latent"`` (projected latent, default of the checkpoint), ``"gram"`` or ``"grid"``.
        kwargs: passed on to ``FrozenEncoder`` (e.g. ``dtype``).
    """
    from worldmodel.encoders import FrozenEncoder

    model, config = load_niso(path, device=device or "cpu")
    if features is not None:
        model.feature_dim(features)  # validates
        model.config.features = features
    return FrozenEncoder(
        model,
        feature_dim=model.feature_dim(),
        image_size=model.config.image_size,
        name="niso",
        uses_viewpoint=False,
        metadata={
            "checkpoint": config.get("checkpoint_dir"),
            "features": model.config.features,
            "step": config.get("step"),
        },
        **kwargs,
    )


def training_data(train_config: Any, model_config: NisoConfig, batch_per_rank: int) -> tuple[Any, NisoConfig]:
    """Registry data hook: homography-digit loaders when ``--data`` names digits.

    ``--data digits`` (scikit-learn's digits, offline) or ``--data MNIST_DIR`` (IDX files) give
    on-the-fly homography pairs (:func:`worldmodel.data.homography.homography_run_data`) and an
    unset ``in_channels`` becomes 1. For a scene dataset directory the run data is ``None`` (the
    engine builds the standard pair loaders) and an unset ``in_channels`` becomes 3.
    """
    from worldmodel.data.homography import homography_run_data, is_digit_source

    if not is_digit_source(train_config.data):
        return None, replace(model_config, in_channels=model_config.in_channels or 3)
    channels = model_config.in_channels or 1
    run_data = homography_run_data(
        train_config.data,
        batch_per_rank,
        train_config.seed,
        size=model_config.image_size,
        sigma_scale=model_config.sigma_scale,
        channels=channels,
        with_val=bool(train_config.eval_every) and train_config.val_fraction > 0,
    )
    return run_data, replace(model_config, in_channels=channels)
