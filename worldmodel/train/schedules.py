"""Step-indexed schedules (learning rate, GQN pixel sigma).

All schedules are pure functions of the global step, so a resumed run needs no scheduler
state to continue exactly.
"""

from __future__ import annotations

import math


def linear_anneal(start: float, end: float, steps: int, step: int) -> float:
    """``start`` moving linearly to ``end`` over ``steps`` steps, then ``end`` (GQN paper schedules)."""
    if steps <= 0:
        return float(end)
    frac = min(max(step, 0) / steps, 1.0)
    return float(start + (end - start) * frac)


def cosine_anneal(start: float, end: float, steps: int, step: int) -> float:
    """Half-cosine from ``start`` to ``end`` over ``steps`` steps, then ``end``."""
    if steps <= 0:
        return float(end)
    frac = min(max(step, 0) / steps, 1.0)
    return float(end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * frac)))


def learning_rate(
    step: int, lr: float, lr_final: float, anneal_steps: int, schedule: str = "linear", warmup_steps: int = 0
) -> float:
    """Learning rate at ``step``: linear warm-up, then the named annealing (linear, cosine, constant)."""
    if warmup_steps > 0 and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    t = step - warmup_steps
    if schedule == "constant":
        return float(lr)
    if schedule == "linear":
        return linear_anneal(lr, lr_final, anneal_steps, t)
    if schedule == "cosine":
        return cosine_anneal(lr, lr_final, anneal_steps, t)
    raise ValueError(f"unknown lr_schedule {schedule!r}; valid values: 'linear', 'cosine', 'constant'")
