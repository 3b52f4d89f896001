"""Measured view statistics of the scene families (``wm envs stats``), by segmentation renders.

:data:`STATS` maps a family name to ``"module:function"``; the function is imported only when
its family is measured (so ``wm envs`` starts fast) and has the signature
``fn(frames: int, seed: int, size: int) -> dict[str, float]``: fractions (and a few means)
measured over ``frames`` frames of ``size`` pixels, deterministic in ``seed``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

STATS: dict[str, str] = {
    "maze": "envs.view_stats.maze:maze_view_stats",
    "rooms": "envs.view_stats.scenes:rooms_view_stats",
    "shepard_metzler": "envs.view_stats.scenes:shepard_metzler_view_stats",
    "jaco-randomised": "envs.view_stats.scenes:domain_contrast_stats",
}
"""Family name -> ``"module:function"`` of its view statistics."""

StatsFn = Callable[[int, int, int], dict[str, float]]


class StatsUnavailableError(RuntimeError):
    """A registered view-statistics function cannot be imported."""


def get_stats_fn(family: str) -> StatsFn:
    """The view-statistics function of ``family``.

    Raises ``ValueError`` naming the allowed families for an unknown one, and
    :class:`StatsUnavailableError` when its registered module or function is missing.
    """
    if family not in STATS:
        raise ValueError(f"unknown view-stats family {family!r}; allowed: {', '.join(STATS)}")
    target = STATS[family]
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise StatsUnavailableError(f"view stats of {family!r} ({target}) cannot be imported: {err}") from err
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise StatsUnavailableError(f"view stats of {family!r}: {module_name} has no function {attr!r} ({target})")
    return fn


def view_stats(family: str, frames: int, seed: int = 0, size: int = 64) -> dict[str, float]:
    """Run the view statistics of ``family`` (see :data:`STATS`) and return its figures."""
    return get_stats_fn(family)(frames, seed, size)


__all__ = ["STATS", "StatsUnavailableError", "get_stats_fn", "view_stats"]
