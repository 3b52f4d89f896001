"""Optimal-transport domain alignment of frozen encoders (sim-to-real), and its measures.

Losses (POT, GeomLoss, skada), the adapted-encoder checkpoints, input-space colour transfer,
frame sets with paired rendering, the fitting loop, and the encoder-level transfer measures;
docs/transfer.md. The public names below resolve lazily: ``import worldmodel.align`` imports no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "AlignConfig": "worldmodel.align.fit",
    "fit_alignment": "worldmodel.align.fit",
    "features_of": "worldmodel.align.fit",
    "alignment_loss": "worldmodel.align.losses",
    "ot_loss": "worldmodel.align.losses",
    "joint_ot_loss": "worldmodel.align.losses",
    "FeatureAdapter": "worldmodel.align.encoder",
    "aligned_encoder": "worldmodel.align.encoder",
    "save_aligned": "worldmodel.align.encoder",
    "fit_colour_map": "worldmodel.align.colour",
    "FrameSet": "worldmodel.align.frames",
    "collect_frames": "worldmodel.align.frames",
    "encoder_measures": "worldmodel.align.measures",
    "paired_feature_error": "worldmodel.align.measures",
    "probe_transfer": "worldmodel.align.measures",
    "cloud_distance": "worldmodel.align.measures",
    "METHODS": "worldmodel.align.names",
    "LOSSES": "worldmodel.align.names",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'worldmodel.align' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
