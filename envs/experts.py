"""Scripted reference policies by environment: the 1.0 of the toolkit's normalised scores.

``make_expert(env)`` returns an object with ``act() -> action`` (reading the env's physics) and an
SB3-style ``predict(obs)``. Only the Jaco reach tasks have an expert today
(:class:`envs.jaco_expert.JacoReachExpert`); asking for another env raises a ``ValueError`` that
names the ones that do.
"""

from __future__ import annotations

from typing import Any

from envs.jaco import JacoReachEnv
from envs.jaco_expert import JacoReachExpert

#: Env classes with a scripted expert, and the expert class of each.
EXPERTS: dict[type, type] = {JacoReachEnv: JacoReachExpert}


def has_expert(env: Any) -> bool:
    """Whether ``env`` (or what it wraps) has a scripted expert."""
    base = getattr(env, "unwrapped", env)
    return any(isinstance(base, cls) for cls in EXPERTS)


def make_expert(env: Any, **kwargs: Any) -> JacoReachExpert:
    """The scripted expert of ``env`` (keyword arguments go to the expert's constructor)."""
    base = getattr(env, "unwrapped", env)
    for cls, expert in EXPERTS.items():
        if isinstance(base, cls):
            return expert(env, **kwargs)
    names = ", ".join(c.__name__ for c in EXPERTS)
    raise ValueError(
        f"no scripted expert for {type(base).__name__}; experts exist for: {names} (wm/JacoReach-v0, wm/JacoReach-v1)"
    )
