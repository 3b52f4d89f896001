"""The aliasing experiment of the Lie-derivative paper, small: strided vs blur-pooled CNNs on digits.

Gruver et al. (2023) trace most equivariance violations of trained CNNs to spatial aliasing:
subsampling without a low-pass filter (strided convolutions) and pointwise non-linearities
create frequencies the next resolution cannot represent. Zhang (ICML 2019, "Making
convolutional networks shift-invariant again") replaces each strided convolution by a stride-1
convolution, the non-linearity, then a blurred subsampling ("BlurPool").

:func:`digit_cnn` builds the two variants of one small classifier for the homography digits'
40x40 canvas (same widths, same depth, same training); :func:`train_digit_cnn` trains one on
clean digits. ``scripts/lee_aliasing.py`` runs 2 variants x 3 seeds and measures their LEE and
the layer-wise attribution; the numbers are in docs/diagnostics.md.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

VARIANTS: tuple[str, ...] = ("strided", "blurpool")


class BlurPool2d(nn.Module):
    """Anti-aliased subsampling: a fixed binomial low-pass per channel, then stride.

    Equivalent to ``antialiased_cnns.BlurPool`` (Zhang 2019: filter ``[1, 3, 3, 1]`` (outer
    product, normalised), reflection padding ``(1, 2)``, stride 2). Written here because the
    package depends on torchvision, which this toolkit does not install (the CPU torch wheel is
    pinned and torchvision would have to match it); the layer is a fixed depthwise convolution.

    Args:
        channels: number of input channels.
        filter_size: binomial filter length (2 to 5).
        stride: subsampling factor.
    """

    _TAPS = {2: (1.0, 1.0), 3: (1.0, 2.0, 1.0), 4: (1.0, 3.0, 3.0, 1.0), 5: (1.0, 4.0, 6.0, 4.0, 1.0)}

    def __init__(self, channels: int, filter_size: int = 4, stride: int = 2) -> None:
        super().__init__()
        if filter_size not in self._TAPS:
            raise ValueError(f"filter_size must be one of {sorted(self._TAPS)}, got {filter_size}")
        taps = torch.tensor(self._TAPS[filter_size])
        kernel = taps[:, None] * taps[None, :]
        kernel = kernel / kernel.sum()
        self.register_buffer("kernel", kernel[None, None].repeat(channels, 1, 1, 1), persistent=False)
        self.channels, self.stride, self.filter_size = channels, stride, filter_size
        lo = (filter_size - 1) // 2
        hi = math.ceil((filter_size - 1) / 2)
        self.pad = (lo, hi, lo, hi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W] -> [B, C, H / stride, W / stride]``."""
        x = F.pad(x, self.pad, mode="reflect")
        return F.conv2d(x, self.kernel.to(x.dtype), stride=self.stride, groups=self.channels)

    def extra_repr(self) -> str:
        return f"{self.channels}, filter_size={self.filter_size}, stride={self.stride}"


def digit_cnn(
    variant: str = "strided",
    widths: tuple[int, int, int] = (8, 16, 32),
    classes: int = 10,
    in_channels: int = 1,
    batch_norm: bool = True,
) -> nn.Sequential:
    """A small all-module CNN classifier (an ``nn.Sequential``: every layer is hookable).

    ``"strided"``: conv3x3-BN-ReLU, then twice conv3x3 stride 2-BN-ReLU, conv3x3-BN-ReLU, global
    average pool, linear. ``"blurpool"``: each strided convolution becomes conv3x3 stride 1-BN-ReLU
    followed by :class:`BlurPool2d` (Zhang's ConvBlurPool); everything else is identical (same
    widths and parameter count). Batch norm (eval mode: a per-channel affine map, exactly
    equivariant) makes these small nets train in a few hundred steps.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid values: {', '.join(VARIANTS)}")

    def block(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
        norm: list[nn.Module] = [nn.BatchNorm2d(cout)] if batch_norm else []
        return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=not batch_norm), *norm, nn.ReLU()]

    w1, w2, w3 = widths
    layers = block(in_channels, w1)
    for cin, cout in ((w1, w2), (w2, w3)):
        layers += block(cin, cout, 2) if variant == "strided" else [*block(cin, cout), BlurPool2d(cout)]
    layers += [*block(w3, w3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w3, classes)]
    return nn.Sequential(*layers)


@dataclass
class DigitTrainConfig:
    """Training of a digit CNN (both variants use the same settings)."""

    steps: int = 400
    """Optimiser steps."""
    batch_size: int = 32
    """Digits per step."""
    lr: float = 3e-3
    """Adam learning rate (cosine-annealed to 0)."""
    weight_decay: float = 0.0
    """Adam weight decay."""
    size: int = 40
    """Canvas size (the homography digits' 40x40)."""
    source: str = "digits"
    """``"digits"`` (scikit-learn, offline) or an MNIST IDX directory."""
    augment_shift: int = 0
    """Random integer shifts of up to this many pixels during training (0: none)."""
    widths: tuple[int, int, int] = (8, 16, 32)
    """Channel widths of the three resolutions."""


def train_digit_cnn(
    variant: str, seed: int, config: DigitTrainConfig | None = None, progress: bool = True
) -> tuple[nn.Module, dict[str, Any]]:
    """Train one digit CNN on clean digits; returns the eval-mode model and its metrics.

    Metrics: ``test_accuracy`` (clean test digits), ``train_loss`` (last 50 steps), ``seconds``.
    """
    from tqdm.auto import tqdm

    from worldmodel.data.homography import load_digit_images

    cfg = config or DigitTrainConfig()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_train, y_train = load_digit_images(cfg.source, "train", cfg.size)
    x_test, y_test = load_digit_images(cfg.source, "test", cfg.size)
    x_train = x_train.float() / 255.0
    model = digit_cnn(variant, widths=tuple(cfg.widths))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.steps))
    losses: list[float] = []
    t0 = time.perf_counter()
    model.train()
    for _ in tqdm(
        range(cfg.steps), desc=f"train {variant} seed {seed}", disable=not progress, leave=False, mininterval=2.0
    ):
        idx = torch.randint(0, x_train.shape[0], (cfg.batch_size,), generator=gen)
        xb = x_train[idx]
        if cfg.augment_shift:
            dx, dy = (int(v) for v in torch.randint(-cfg.augment_shift, cfg.augment_shift + 1, (2,), generator=gen))
            xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
        loss = F.cross_entropy(model(xb), y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    model.eval()
    with torch.no_grad():
        acc = float((model(x_test.float() / 255.0).argmax(1) == y_test).float().mean())
    metrics = {
        "variant": variant,
        "seed": seed,
        "test_accuracy": acc,
        "train_loss": float(sum(losses[-50:]) / len(losses[-50:])),
        "seconds": time.perf_counter() - t0,
        "parameters": sum(p.numel() for p in model.parameters()),
        "config": asdict(cfg),
    }
    return model, metrics
