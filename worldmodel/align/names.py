"""Names the alignment code accepts (torch-free, so the command line can list them cheaply)."""

from __future__ import annotations

OT_METHODS: tuple[str, ...] = ("emd", "sinkhorn", "sinkhorn-divergence", "unbalanced")
"""The optimal-transport losses of :func:`worldmodel.align.losses.ot_loss`."""
LOSSES: tuple[str, ...] = (*OT_METHODS, "coral", "mmd")
"""Every name :func:`worldmodel.align.losses.alignment_loss` accepts."""
METHODS: tuple[str, ...] = ("none", "ot", "joint-ot", "coral", "mmd", "colour")
"""Alignment methods of :func:`worldmodel.align.fit.fit_alignment` (domain randomisation is a
training option of the learner: train it on ``--domain randomised`` data)."""
MODES: tuple[str, ...] = ("adapter", "finetune")
"""Where the learned change sits."""
SOURCE_LOSSES: tuple[str, ...] = ("anchor", "learner", "anchor+learner")
"""Source terms of ``mode="finetune"``."""

__all__ = ["LOSSES", "METHODS", "MODES", "OT_METHODS", "SOURCE_LOSSES"]
