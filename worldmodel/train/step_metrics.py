"""Per-step training metrics kept on the device and read in batches (one host sync per read).

A training step leaves its metrics, gradient norm and non-finite flags in one small device tensor
(:class:`StepRecord`); the engine reads all pending records with a single ``tolist`` at log,
evaluation, image and checkpoint steps (:func:`read_records`) instead of synchronising the host
with the device after every step. Reading them in order finds the first step whose loss or
gradient norm was not finite; with a fused optimiser that step's update, and every later one, was
already skipped on the device (:func:`device_found_inf`), so parameters and optimiser state are
those from before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class StepRecord:
    """One training step's device-side results, waiting to be read."""

    step: int
    """0-based optimiser step."""
    names: list[str]
    """Names of the learner's metrics, in the order of :attr:`values`."""
    values: torch.Tensor
    """``[len(names) + 3]``: the metrics, the gradient norm, then the loss's and the gradient's non-finite flags."""
    lr: float
    """Learning rate of the step."""
    host: dict[str, float]
    """Host-side figures of the step (epoch, timings), merged into its metrics when read."""


def step_values(out: dict[str, torch.Tensor], grad_norm: torch.Tensor) -> torch.Tensor:
    """The learner's metrics, the gradient norm and the non-finite flags of the loss and the norm, as one vector."""
    loss = out["loss"].detach()
    flags = torch.stack([(~torch.isfinite(loss)).float().reshape(()), (~torch.isfinite(grad_norm)).float()])
    metrics = torch.stack([out[k].detach().float().reshape(()) for k in out])
    return torch.cat([metrics, grad_norm.detach().float().reshape(1), flags.to(metrics.device)])


def device_found_inf(values: torch.Tensor, sticky: torch.Tensor | None) -> torch.Tensor:
    """``max(sticky, any non-finite flag in values)`` as a float scalar: once set it stays set.

    Given to a fused optimiser as ``found_inf``, it skips the update of the first non-finite
    step and of every step after it, so a deferred read still stops the run with the weights
    from before the bad update.
    """
    now = (values[-2:] > 0).any().float()
    return now if sticky is None else torch.maximum(sticky, now)


def read_records(records: Sequence[StepRecord]) -> list[list[float]]:
    """The values of ``records`` as floats, with one host sync for all of them."""
    if not records:
        return []
    flat = torch.cat([r.values for r in records]).tolist()
    out, start = [], 0
    for r in records:  # records may differ in length (a learner may add a metric on some steps)
        out.append(flat[start : start + r.values.numel()])
        start += r.values.numel()
    return out
