"""Representation learners trained on multi-view data (GQN, NISO), the training engine, frozen
encoders, and diagnostics. Never imports ``agents`` or Stable-Baselines3.

The public names below resolve lazily (PEP 562): ``import worldmodel`` imports no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from worldmodel.encoders import FrozenEncoder
    from worldmodel.models.registry import LEARNER_SPECS, register_learner
    from worldmodel.untrained import make_untrained

#: public name -> module that defines it (``load_encoder`` is defined here).
_EXPORTS: dict[str, str] = {
    "FrozenEncoder": "worldmodel.encoders",
    "make_untrained": "worldmodel.untrained",
    "LEARNER_SPECS": "worldmodel.models.registry",
    "register_learner": "worldmodel.models.registry",
}


def load_encoder(path: str, device: str | None = None, **kwargs: Any) -> FrozenEncoder:
    """Load a trained learner's checkpoint as a :class:`worldmodel.encoders.FrozenEncoder`."""
    from worldmodel.encoders import load_encoder as _load

    return _load(path, device=device, **kwargs)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'worldmodel' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "FrozenEncoder",
    "LEARNER_SPECS",
    "load_encoder",
    "make_untrained",
    "register_learner",
]
