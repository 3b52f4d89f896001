"""A supervised perception encoder: a CNN trained in sim to read the state off one view.

Where a simulator gives labels, the usual sim-to-real pipeline trains a perception module on
them and a policy on its output; the module is what domain shift breaks. :class:`StateEncoder`
is that module for ``wm/JacoReach-v1``: a small CNN on one 32-64 px frame plus its 7-d
viewpoint, whose ``feature_dim``-d features are read out linearly as the standardised state
(hand and target position, sin/cos of the 6 arm angles). The features, not the read-out, are
what agents observe (:func:`load_frozen` gives a :class:`worldmodel.encoders.FrozenEncoder`).

:func:`fit_state_encoder` trains it on a :class:`worldmodel.align.frames.FrameSet` (sim frames,
their states); ``source_loss`` is its own loss, used by alignment's finetune mode on source
frames. Checkpoints are the toolkit's (safetensors + JSON, learner ``"state-encoder"``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

LEARNER = "state-encoder"


@dataclass
class StateEncoderConfig:
    """Architecture and training settings."""

    image_size: int = 32
    """Input size (square)."""
    feature_dim: int = 64
    """Size of the features agents observe."""
    channels: int = 32
    """Channels of the first conv layer (the next ones have twice as many)."""
    epochs: int = 20
    """Passes over the training frames."""
    batch_size: int = 128
    """Frames per step."""
    lr: float = 1e-3
    """Adam learning rate (cosine-decayed to 0)."""
    seed: int = 0
    """Initialisation and batch order."""


def state_targets(states: np.ndarray) -> np.ndarray:
    """Regression targets ``[N, 21]`` of frame-set states ``[N, 12]``: hand, target, target - hand,
    sin and cos of the 6 arm angles."""
    s = np.asarray(states, dtype=np.float32)
    if s.ndim != 2 or s.shape[1] != 12:
        raise ValueError(f"states must be [N, 12] (hand, target, 6 arm angles), got shape {s.shape}")
    return np.concatenate([s[:, :6], s[:, 3:6] - s[:, :3], np.sin(s[:, 6:]), np.cos(s[:, 6:])], 1)


class StateEncoder(nn.Module):
    """CNN ``(frame, viewpoint) -> features -> standardised state`` (module doc)."""

    def __init__(self, config: StateEncoderConfig, target_dim: int = 21) -> None:
        super().__init__()
        c = config.channels
        self.config = config
        self.conv = nn.Sequential(
            nn.Conv2d(3, c, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(c, 2 * c, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(2 * c, 2 * c, 3, 1, 1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
        )
        self.fc = nn.Sequential(nn.Linear(2 * c * 16 + 7, 256), nn.ReLU(), nn.Linear(256, config.feature_dim))
        self.head = nn.Linear(config.feature_dim, target_dim)
        self.register_buffer("target_mean", torch.zeros(target_dim))
        self.register_buffer("target_std", torch.ones(target_dim))

    def encode(self, frames: torch.Tensor, viewpoints: torch.Tensor) -> torch.Tensor:
        """Features ``[B, feature_dim]`` of float frames ``[B,3,H,W]`` in [0,1] and viewpoints ``[B,7]``."""
        return self.fc(torch.cat([self.conv(frames * 2.0 - 1.0), viewpoints.to(frames.dtype)], 1))

    def forward(self, frames: torch.Tensor, viewpoints: torch.Tensor) -> torch.Tensor:
        """Standardised state prediction."""
        return self.head(self.encode(frames, viewpoints))

    def source_loss(self, frames: torch.Tensor, viewpoints: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """Its own training loss: MSE of the standardised state (``states`` as in a frame set)."""
        target = torch.as_tensor(state_targets(states.cpu().numpy()), device=frames.device)
        return (self(frames, viewpoints) - (target - self.target_mean) / self.target_std).pow(2).mean()


def _inputs(frames: np.ndarray, viewpoints: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    from worldmodel.encoders import viewpoint7_torch

    x = torch.as_tensor(frames).permute(0, 3, 1, 2).float().div_(255.0)
    return x, viewpoint7_torch(torch.as_tensor(viewpoints, dtype=torch.float32))


def fit_state_encoder(train: Any, config: StateEncoderConfig, val: Any = None, progress: bool = True):
    """Train on a frame set's frames and states; returns ``(model, history)`` (val MSE per epoch)."""
    from tqdm import tqdm

    torch.manual_seed(config.seed)
    if train.frames.shape[1] != config.image_size:
        raise ValueError(f"frames are {train.frames.shape[1]} px, config.image_size is {config.image_size}")
    y = state_targets(train.states)
    model = StateEncoder(config, y.shape[1])
    model.target_mean.copy_(torch.as_tensor(y.mean(0)))
    model.target_std.copy_(torch.as_tensor(y.std(0) + 1e-6))
    steps = config.epochs * int(np.ceil(len(y) / config.batch_size))
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    rng = np.random.default_rng(config.seed)
    history = []
    for epoch in tqdm(range(config.epochs), desc="state encoder", disable=not progress):
        model.train()
        order = rng.permutation(len(y))
        for i in range(0, len(order), config.batch_size):
            idx = np.sort(order[i : i + config.batch_size])
            x, v = _inputs(train.frames[idx], train.viewpoints[idx])
            loss = model.source_loss(x, v, torch.as_tensor(train.states[idx]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        record = {"epoch": epoch, "train_mse": float(loss.detach())}
        if val is not None:
            record["val_mse"] = evaluate_mse(model, val)
        history.append(record)
    return model.eval(), history


@torch.no_grad()
def evaluate_mse(model: StateEncoder, frames: Any, batch: int = 512) -> float:
    """Mean squared error of the standardised state on a frame set."""
    model.eval()
    total = 0.0
    for i in range(0, len(frames), batch):
        x, v = _inputs(frames.frames[i : i + batch], frames.viewpoints[i : i + batch])
        total += float(model.source_loss(x, v, torch.as_tensor(frames.states[i : i + batch]))) * len(x)
    return total / len(frames)


def save_state_encoder(model: StateEncoder, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint (safetensors + JSON)."""
    from worldmodel.checkpoint import save_checkpoint

    config = {"learner": LEARNER, "model": asdict(model.config), "step": 0, "target_dim": model.head.out_features}
    return save_checkpoint(directory, model.state_dict(), {**config, **(extra or {})})


def load_frozen(path: str, device: str | None = None, verify: bool = True, **unused: Any) -> Any:
    """A :class:`worldmodel.encoders.FrozenEncoder` of a state-encoder checkpoint."""
    from worldmodel.checkpoint import load_model_state
    from worldmodel.encoders import FrozenEncoder

    if unused:
        raise TypeError(f"load_frozen got unexpected option(s) {sorted(unused)}; valid: device, verify")
    state, meta = load_model_state(path, verify=verify)
    if meta.get("learner") != LEARNER:
        raise ValueError(f"{path}: checkpoint is of learner {meta.get('learner')!r}, not {LEARNER!r}")
    config = StateEncoderConfig(**meta["model"])
    model = StateEncoder(config, int(meta.get("target_dim", 21)))
    model.load_state_dict(state, strict=True)
    return FrozenEncoder(
        model,
        config.feature_dim,
        config.image_size,
        name=LEARNER,
        device=device or "cpu",
        metadata={"checkpoint": meta["checkpoint_dir"]},
    )


__all__ = [
    "LEARNER",
    "StateEncoder",
    "StateEncoderConfig",
    "fit_state_encoder",
    "load_frozen",
    "save_state_encoder",
    "state_targets",
]
