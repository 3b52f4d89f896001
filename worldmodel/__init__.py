"""Representation learners trained on multi-view data (GQN, NISO), the training engine, frozen
encoders, and diagnostics. Never imports ``agents`` or Stable-Baselines3."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from worldmodel.encoders import FrozenEncoder


def load_encoder(path: str, device: str | None = None, **kwargs: Any) -> FrozenEncoder:
    """Load a trained learner's checkpoint as a :class:`worldmodel.encoders.FrozenEncoder`."""
    from worldmodel.encoders import load_encoder as _load

    return _load(path, device=device, **kwargs)


__all__ = ["load_encoder"]
