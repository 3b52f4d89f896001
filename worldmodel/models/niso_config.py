"""Configuration, presets and registry entry of Neural Isometries (NISO) (torch-free).

Presets (model overrides + training overrides):

* ``small`` (the default): a CPU-sized NISO (encoder widths 16/32, one residual block per
  stage, ``k = d = 16``); on 40x40 homography digits one step (batch 16) takes ~0.2 s on one CPU
  core, and the default 1000 steps about 4 minutes.
* ``tiny``: the smallest useful model, for tests (``k = d = 8``).
* ``paper``: Mitchel et al. 2024 on homNIST: widths 64/128 with 3 blocks per stage (a 20x20
  latent on 40x40 inputs), ``k = d = 32``, AdamW lr 5e-4 with 2000 warm-up steps, batch 16,
  50k steps.
* ``scenes``: 64x64 RGB scene datasets (a 16x16 latent), CPU-sized.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from worldmodel.models.registry import LearnerSpec
from worldmodel.train.config import check_choice

#: Largest frame skip of a training pair (the pair loader also caps it at views per scene - 1); it
#: covers the trajectory protocol's largest evaluation skip (10) with room to spare.
MAX_PAIR_SKIP = 20

FEATURES: tuple[str, ...] = ("latent", "gram", "grid")
MODES: tuple[str, ...] = ("niso", "autoencoder")
#: Pixel ranges the encoder can be fed: the official code's [-1, 1] (default of new configs) or [0, 1] (this toolkit's
#: first checkpoints, which load with it through ``SPEC.legacy_defaults``).
INPUT_RANGES: tuple[str, ...] = ("[-1,1]", "[0,1]")
#: Default backward-pass denominator floor of the SO(k) projection (see worldmodel.models.isometry).
GRAD_EPS = 1e-6


@dataclass
class NisoConfig:
    """Architecture, loss weights and data options of a NISO learner."""

    image_size: int | None = None
    """Square input side in pixels (divisible by 2**(stages-1)); None: taken from the training data."""
    in_channels: int | None = None
    """Image channels: 1 (grey digits) or 3 (RGB scenes); None: 1 for homography digits, 3 for scene datasets."""
    channels: tuple[int, ...] = (16, 32)
    """Encoder widths per resolution stage; each stage after the first halves the resolution (paper: 64,128: 40x40 -> a
    20x20 latent)."""
    blocks: int = 1
    """Residual blocks per encoder/decoder stage (paper: 3)."""
    latent_dim: int = 16
    """d: channels of the latent grid (paper: 32)."""
    rank: int = 16
    """k: number of learned eigenpairs of the operator Omega (paper: 32)."""
    alpha: float = 0.5
    """Weight of the latent equivariance loss L_E."""
    beta: float = 0.1
    """Weight of the multiplicity loss L_M (0 gives the paper's 'without L_M' ablation)."""
    mode: Literal["niso", "autoencoder"] = "niso"
    """'niso', or 'autoencoder': plain L1 reconstruction of both views of each pair (the 'AE + augmentation'
    baseline)."""
    features: Literal["latent", "gram", "grid"] = "latent"
    """Frozen-encoder features: 'latent' (projected latent Phi^T M E, k*d values), 'gram' (upper triangle of A^T A,
    invariant to tau) or 'grid' (raw encoder grid)."""
    grad_eps: float = GRAD_EPS
    """Floor on |s_i + s_j| in the backward pass of the SO(k) projection."""
    init_seed: int = 0
    """Seed of the operator's initialisation (the rest follows the training seed)."""
    skips: tuple[int, int] = (0, 3)
    """Scene datasets: inclusive range (min, max) of the frame skip k between the two views of a training pair, within
    0..MAX_PAIR_SKIP (20) and below the views per scene (data option)."""
    sigma_scale: float = 1.0
    """Homography digits: multiplier of homNIST's sl(3) coefficient standard deviations (data option; the evaluations
    warp with it too)."""
    input_range: Literal["[-1,1]", "[0,1]"] = "[-1,1]"
    """Range the pixels are mapped to before the encoder, and in which the decoder's output is compared with them:
    '[-1,1]' as the official code (``2 x - 1``: the pixel L1 of L_R weighs twice what it does in [0, 1] against L_E and
    L_M) or '[0,1]' (checkpoints written before this option existed)."""
    ae_bottleneck: bool = False
    """mode='autoencoder' only: pass the latent grid through a learned rank-k spatial basis, ``Phi Phi^T M E``
    (the NISO operator's parametrisation, k = ``rank``), so that the decoder sees ``k x d`` numbers, as NISO's decoder
    does (the capacity-matched 'AE + augmentation' baseline). False: the plain autoencoder (``|N| x d`` numbers)."""

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        check_choice("mode", self.mode, MODES)
        check_choice("features", self.features, FEATURES)
        check_choice("input_range", self.input_range, INPUT_RANGES)
        if self.ae_bottleneck and self.mode != "autoencoder":
            raise ValueError(f"ae_bottleneck=True needs mode='autoencoder', got mode={self.mode!r}")
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"channels must list at least one positive width, got {self.channels}")
        for name in ("blocks", "latent_dim", "rank"):
            if getattr(self, name) < (0 if name == "blocks" else 1):
                raise ValueError(f"{name} must be >= {0 if name == 'blocks' else 1}, got {getattr(self, name)}")
        if self.in_channels is not None:
            check_choice("in_channels", self.in_channels, (1, 3))
        self.skips = tuple(int(k) for k in self.skips)
        if len(self.skips) != 2 or not 0 <= self.skips[0] <= self.skips[1] <= MAX_PAIR_SKIP:
            raise ValueError(f"skips must be (min, max) with 0 <= min <= max <= {MAX_PAIR_SKIP}, got {self.skips}")
        if self.alpha < 0 or self.beta < 0 or self.grad_eps <= 0 or self.sigma_scale < 0:
            raise ValueError("alpha, beta and sigma_scale must be >= 0 and grad_eps > 0")
        if self.image_size is not None:
            factor = self.downsampling
            if self.image_size < factor or self.image_size % factor:
                raise ValueError(
                    f"image_size must be a positive multiple of {factor} (2**(stages-1)), got {self.image_size}"
                )
            if self.uses_basis and self.rank > self.num_positions:
                raise ValueError(
                    f"rank k={self.rank} exceeds the {self.num_positions} latent positions of a {self.image_size}px "
                    "input"
                )

    @property
    def uses_basis(self) -> bool:
        """True when the model holds a learned rank-k spatial basis (NISO, or the bottlenecked autoencoder)."""
        return self.mode == "niso" or self.ae_bottleneck

    @property
    def downsampling(self) -> int:
        """Image side / latent side."""
        return 2 ** (len(self.channels) - 1)

    @property
    def latent_size(self) -> int:
        """Side of the latent grid."""
        if self.image_size is None:
            raise ValueError("image_size is not set yet (it is taken from the data when training starts)")
        return self.image_size // self.downsampling

    @property
    def num_positions(self) -> int:
        """|N|: positions of the latent grid."""
        return self.latent_size**2

    @property
    def feature_dim(self) -> int:
        """Size of the frozen-encoder features for ``features``."""
        if self.features == "grid" or not self.uses_basis:
            return self.num_positions * self.latent_dim
        if self.features == "latent":
            return self.rank * self.latent_dim
        return self.latent_dim * (self.latent_dim + 1) // 2


_SMALL_TRAIN = {
    "batch_size": 16,
    "steps": 1000,
    "lr": 1e-3,
    "lr_final": 2e-4,
    "lr_anneal_steps": 1000,
    "lr_schedule": "cosine",
    "warmup_steps": 100,
    "weight_decay": 0.0,
    "ckpt_every": 250,
    "eval_every": 250,
    "image_every": 250,
}

PRESETS = {
    "small": {"model": {}, "train": dict(_SMALL_TRAIN)},
    "tiny": {
        "model": {"channels": (8, 16), "blocks": 1, "latent_dim": 8, "rank": 8},
        "train": {**_SMALL_TRAIN, "steps": 200, "lr_anneal_steps": 200, "warmup_steps": 0},
    },
    "paper": {
        "model": {"channels": (64, 128), "blocks": 3, "latent_dim": 32, "rank": 32, "alpha": 0.5, "beta": 0.1},
        "train": {
            "batch_size": 16,
            "steps": 50_000,
            "lr": 5e-4,
            "lr_final": 5e-5,
            "lr_anneal_steps": 1_000_000,
            "lr_schedule": "cosine",
            "warmup_steps": 2000,
            "weight_decay": 1e-4,
            "ckpt_every": 5000,
            "eval_every": 5000,
            "image_every": 2500,
            "log_every": 100,
        },
    },
    "scenes": {
        "model": {"channels": (16, 32, 64), "blocks": 1, "latent_dim": 16, "rank": 32, "skips": (0, 3)},
        "train": dict(_SMALL_TRAIN),
    },
}

SPEC = LearnerSpec(
    name="niso",
    config_class="worldmodel.models.niso_config:NisoConfig",
    builder="worldmodel.models.niso:build",
    loader="pair",
    loader_options=("skips",),
    presets=PRESETS,
    default_preset="small",
    frozen_loader="worldmodel.models.niso:load_frozen",
    data_builder="worldmodel.models.niso:training_data",
    description="Neural Isometries (Mitchel et al. 2024): latent isometries via a learned operator's eigenbasis",
    legacy_defaults={"input_range": "[0,1]"},
)
