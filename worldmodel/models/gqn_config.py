"""Configuration, presets and registry entry of the Generative Query Network (torch-free).

Presets:

* ``small`` (the default): a CPU-sized GQN, Tower representation with 64 channels, Conv-LSTM
  3x3 hidden 32, 4 generation steps, shared cores, sigma 2.0 -> 0.7 over 500 steps, Adam
  lr 2e-3 -> 2e-4 over 2000 steps, batch 16; learns coarse novel views of 32x32 Shepard-Metzler
  scenes on a 2-core CPU in minutes (see docs/gqn.md).
* ``paper``: Eslami et al. 2018: 64x64 images, Tower r 256x16x16, Conv-LSTM 5x5 hidden 128,
  L=12 unshared cores, z 3 channels, sigma 2.0 -> 0.7 over 200k steps, Adam lr 5e-4 -> 5e-5
  over 1.6M steps, batch 36.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from worldmodel.models.registry import LearnerSpec
from worldmodel.train.config import check_choice

REPRESENTATIONS: tuple[str, ...] = ("tower", "pool", "pyramid", "lifted")
FEATURES: tuple[str, ...] = ("pooled", "spatial")
MEAN_ACTIVATIONS: tuple[str, ...] = ("linear", "sigmoid")
INFERENCE_CANVAS: tuple[str, ...] = ("downsampled", "none")
STD_ACTIVATIONS: tuple[str, ...] = ("softplus", "exp")
QUERY_INPUTS: tuple[str, ...] = ("space_to_depth", "conv")

#: Spatial downsampling from the image to the latent (Tower output, Conv-LSTM state).
LATENT_STRIDE = 4


@dataclass
class GQNConfig:
    """Architecture and objective of a GQN (Eslami et al. 2018)."""

    image_size: int | None = None
    """Square image size in pixels (a multiple of 4, of 8 for 'pyramid'); None: taken from the training data."""
    representation: Literal["tower", "pool", "pyramid", "lifted"] = "tower"
    """Representation network psi: 'tower' (r is r_channels x H/4 x W/4), 'pool' (tower + global average pool),
    'pyramid' (r is r_channels x 1 x 1) or 'lifted' (this toolkit's geometry-aware variant: each view's features lifted
    into a world-frame volume with the camera's pinhole geometry, rendered into the query view for the generator; see
    :mod:`gqn_lifted`)."""
    r_channels: int = 64
    """Channels of the scene representation r (256 in the paper)."""
    hidden_channels: int = 32
    """Channels of the Conv-LSTM states and of the canvas (128 in the paper)."""
    z_channels: int = 3
    """Channels of each latent z_l (on the H/4 x W/4 grid; 3 in the paper)."""
    generation_steps: int = 4
    """Number L of autoregressive latent steps (12 in the paper)."""
    shared_core: bool = True
    """Share one Conv-LSTM core (and canvas upsampler) across the L steps; the paper's default is unshared."""
    kernel_size: int = 3
    """Kernel size of the Conv-LSTM gates and of the prior/posterior heads (5 in the paper)."""
    viewpoint_dim: int = 7
    """Size of the viewpoint input (7: x, y, z, cos yaw, sin yaw, cos pitch, sin pitch)."""
    position_scale: float | None = None
    """Camera positions (x, y, z) are divided by this before entering the networks, so that they are O(1) like the angle
    terms. None: set at training start to the RMS camera distance of the first training batch (e.g. about 9.5 for
    Shepard-Metzler scenes), then saved with the config."""
    mean_activation: Literal["linear", "sigmoid"] = "linear"
    """Output mean of the Gaussian likelihood: 'linear' (a 1x1 conv of the canvas) or 'sigmoid' (squashed to [0,1], as
    in several public ports; it saturates on dark backgrounds and then learns far more slowly at first)."""
    inference_canvas: Literal["downsampled", "none"] = "downsampled"
    """What the inference core C^e sees of the canvas u_{l-1}: 'downsampled' (the paper's form: u through a learned 4x4
    / stride-4 conv, as in torch-gqn and tf-gqn) or 'none' (the first release's form, as in wohlert's port). Checkpoints
    written before the field existed load as 'none'."""
    std_activation: Literal["softplus", "exp"] = "exp"
    """Standard deviation of the prior and posterior from their heads' raw output: 'exp' (exp(raw / 2), raw read as a
    log-variance, as in torch-gqn; raw clamped to [-30, 30]) or 'softplus' (softplus(raw) + 1e-4, the form before
    issue 14). With 'exp' and ``query_input='conv'`` the loss jump of Adam's first step on a fixed batch is close to
    torch-gqn's (+21% vs +14% at 64 px); with 'softplus' and pixel blocks it is +103% (docs/benchmarks.md, "GQN: the
    first training steps"). Checkpoints written before the field existed load as 'softplus'."""
    query_input: Literal["space_to_depth", "conv"] = "conv"
    """What the inference cores see of the query image: 'conv' (a learned bias-free 4x4 / stride-4 convolution to 3
    channels, as in torch-gqn) or 'space_to_depth' (its 4x4 pixel blocks as 48 channels, the form before issue 14).
    Checkpoints written before the field existed load as 'space_to_depth'."""
    kl_weight: float = 1.0
    """Weight of the KL term in the training loss (1: the ELBO of the paper). Above 1 the latent becomes expensive, so
    the generator must take what it renders from the representation r rather than from the query image through the
    posterior (as a beta-VAE weights its KL); reported ELBOs are always the unweighted ones."""
    sigma_start: float = 2.0
    """Pixel standard deviation of the Gaussian likelihood at step 0."""
    sigma_end: float = 0.7
    """Pixel standard deviation after annealing; held-out ELBOs are always reported at this value."""
    sigma_anneal_steps: int = 500
    """Steps over which sigma goes linearly from sigma_start to sigma_end (200000 in the paper)."""
    max_context: int | None = None
    """Largest number of context views per scene; each batch draws K uniformly in 1..max_context (data option). None:
    the GQN-port value of the dataset's source (rooms 5, jaco 7, maze 20, Shepard-Metzler 15), at most views - 1."""
    features: Literal["pooled", "spatial"] = "pooled"
    """Frozen-encoder features of a single view: 'pooled' (psi averaged over space, r_channels values) or 'spatial' (the
    flattened psi map; for 'lifted', the flattened world volume)."""
    volume_bounds: tuple[float, float, float, float, float, float] = (-0.3, 0.8, -0.55, 0.55, 0.0, 0.88)
    """'lifted' only: world box (x0, x1, y0, y1, z0, z1) in metres of the feature volume (default: the Jaco arm's
    workspace)."""
    volume_size: tuple[int, int, int] = (12, 12, 8)
    """'lifted' only: cells (gx, gy, gz) of the feature volume."""
    volume_channels: int = 8
    """'lifted' only: feature channels per volume cell."""
    fovy_deg: float = 45.0
    """'lifted' only: vertical field of view of the cameras (degrees; MuJoCo's default, used by the Jaco scenes)."""
    ray_samples: int = 16
    """'lifted' only: depths sampled along each query ray when the volume is rendered for the generator."""
    ray_depth: tuple[float, float] = (0.6, 2.8)
    """'lifted' only: nearest and farthest depth (metres) of the ray samples."""

    def __post_init__(self) -> None:
        check_choice("representation", self.representation, REPRESENTATIONS)
        check_choice("features", self.features, FEATURES)
        check_choice("mean_activation", self.mean_activation, MEAN_ACTIVATIONS)
        check_choice("inference_canvas", self.inference_canvas, INFERENCE_CANVAS)
        check_choice("std_activation", self.std_activation, STD_ACTIVATIONS)
        check_choice("query_input", self.query_input, QUERY_INPUTS)
        if self.max_context is not None and self.max_context < 1:
            raise ValueError(f"max_context must be >= 1 (or None), got {self.max_context}")
        for name in ("r_channels", "hidden_channels", "z_channels", "generation_steps", "viewpoint_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {self.kernel_size}")
        if not self.kl_weight >= 0:
            raise ValueError(f"kl_weight must be >= 0, got {self.kl_weight}")
        if self.sigma_start <= 0 or self.sigma_end <= 0:
            raise ValueError(f"sigma_start and sigma_end must be > 0, got {self.sigma_start}, {self.sigma_end}")
        if self.position_scale is not None and not self.position_scale > 0:
            raise ValueError(f"position_scale must be > 0 (or None), got {self.position_scale}")
        if self.sigma_anneal_steps < 0:
            raise ValueError(f"sigma_anneal_steps must be >= 0, got {self.sigma_anneal_steps}")
        if self.image_size is not None:
            multiple = 8 if self.representation == "pyramid" else LATENT_STRIDE
            if self.image_size < multiple or self.image_size % multiple:
                raise ValueError(
                    f"image_size must be a positive multiple of {multiple} for the {self.representation!r} "
                    f"representation, got {self.image_size}"
                )
        if self.representation == "tower" and self.r_channels % 2:
            raise ValueError(f"r_channels must be even for the tower representation, got {self.r_channels}")
        if self.representation == "lifted":
            b = tuple(self.volume_bounds)
            if len(b) != 6 or not all(b[2 * i] < b[2 * i + 1] for i in range(3)):
                raise ValueError(
                    f"volume_bounds must be (x0, x1, y0, y1, z0, z1) with x0 < x1 etc., got {self.volume_bounds}"
                )
            if len(tuple(self.volume_size)) != 3 or min(self.volume_size) < 1:
                raise ValueError(f"volume_size must be three positive cell counts (gx, gy, gz), got {self.volume_size}")
            if self.volume_channels < 1 or self.ray_samples < 1 or not 0 < self.fovy_deg < 180:
                raise ValueError("volume_channels and ray_samples must be >= 1 and fovy_deg in (0, 180)")
            if not 0 < self.ray_depth[0] < self.ray_depth[1]:
                raise ValueError(f"ray_depth must be (near, far) with 0 < near < far, got {self.ray_depth}")
        if self.representation == "pyramid" and self.r_channels % 8:
            raise ValueError(
                f"r_channels must be a multiple of 8 for the pyramid representation, got {self.r_channels}"
            )

    @property
    def latent_size(self) -> int:
        """Side of the latent / Conv-LSTM grid (image_size / 4)."""
        if self.image_size is None:
            raise ValueError("image_size is not set yet (it is taken from the data when training starts)")
        return self.image_size // LATENT_STRIDE

    @property
    def feature_dim(self) -> int:
        """Size of the frozen-encoder features."""
        if self.representation == "lifted":
            gx, gy, gz = self.volume_size
            return self.volume_channels * (1 if self.features == "pooled" else gx * gy * gz)
        if self.features == "pooled" or self.representation != "tower":
            return self.r_channels
        return self.r_channels * self.latent_size**2


def configure(config: GQNConfig, data_info: Mapping[str, Any], first_batch: Callable[[], Any]) -> GQNConfig:
    """Fill ``position_scale`` (if None) with the RMS camera distance of the first training batch."""
    if config.position_scale is not None:
        return config
    batch = first_batch()
    pos = np.concatenate(
        [
            np.asarray(batch["context_cameras"])[..., :3].reshape(-1, 3),
            np.asarray(batch["query_camera"])[..., :3].reshape(-1, 3),
        ]
    )
    rms = float(np.sqrt(np.mean(np.sum(pos.astype(np.float64) ** 2, axis=-1))))
    scale = float(f"{rms:.2g}") if rms > 1e-6 else 1.0
    return dataclasses.replace(config, position_scale=scale)


PRESETS = {
    "small": {
        "model": {},
        "train": {
            "batch_size": 16,
            "steps": 2000,
            "lr": 2e-3,
            "lr_final": 2e-4,
            "lr_anneal_steps": 2000,
            "ckpt_every": 250,
            "eval_every": 100,
            "image_every": 250,
        },
    },
    "paper": {
        "model": {
            "image_size": 64,
            "representation": "tower",
            "r_channels": 256,
            "hidden_channels": 128,
            "z_channels": 3,
            "generation_steps": 12,
            "shared_core": False,
            "kernel_size": 5,
            "sigma_start": 2.0,
            "sigma_end": 0.7,
            "sigma_anneal_steps": 200_000,
        },
        "train": {
            "batch_size": 36,
            "steps": 1_600_000,
            "lr": 5e-4,
            "lr_final": 5e-5,
            "lr_anneal_steps": 1_600_000,
            "lr_schedule": "linear",
            "ckpt_every": 5000,
            "eval_every": 5000,
            "image_every": 5000,
            "log_every": 100,
            "eval_batches": 16,
        },
    },
}

SPEC = LearnerSpec(
    name="gqn",
    config_class="worldmodel.models.gqn_config:GQNConfig",
    builder="worldmodel.models.gqn:build",
    loader="gqn",
    loader_options=("max_context",),
    presets=PRESETS,
    default_preset="small",
    configure="worldmodel.models.gqn_config:configure",
    frozen_loader="worldmodel.models.gqn:load_frozen",
    legacy_defaults={"inference_canvas": "none", "std_activation": "softplus", "query_input": "space_to_depth"},
    description="Generative Query Network (Eslami et al. 2018): scene representation + conditional DRAW-style "
    "generator",
)
