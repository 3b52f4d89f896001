"""The fixed external references of normalised scores: a scripted expert (1) and doing nothing (0).

rliable's advice, and the toolkit's rule: normalise every run by references measured outside the
comparison, never by one of the compared modes. :func:`measure_reference` plays the env's scripted
expert (:mod:`envs.experts`) and the zero-action policy on exactly the evaluation episodes every
run is evaluated on (:func:`evaluation_seeds`), so a normalised score of 1 means "as good as the
expert on these episodes" and 0 "no better than holding still".

The reference runs on the env's ``state`` observation mode: a seed fixes the task (target, start
pose, camera path) whatever the observation mode, so the episodes are the same ones the pixel and
representation agents are evaluated on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: First seed of the evaluation episodes (training envs use ``seed * 1000 + i``, far below it).
DEFAULT_EVAL_SEED = 1_000_000
#: Evaluation episodes per evaluation point.
DEFAULT_EVAL_EPISODES = 30
#: Env options that change only what is seen, not the task: dropped when measuring the reference.
VISUAL_KWARGS: tuple[str, ...] = (
    "camera",
    "size",
    "channel_order",
    "domain",
    "render_mode",
    "render_size",
    "obs",
    "target_marker",
    "paired_domain",
)


def evaluation_seeds(eval_seed: int = DEFAULT_EVAL_SEED, episodes: int = DEFAULT_EVAL_EPISODES) -> list[int]:
    """Seeds of the evaluation episodes: episode ``k`` starts with ``reset(seed=eval_seed + k)``."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if eval_seed < 0:
        raise ValueError(f"eval_seed must be >= 0, got {eval_seed}")
    return [int(eval_seed) + k for k in range(int(episodes))]


@dataclass(frozen=True)
class ReferenceScores:
    """Returns of the expert and of the zero-action policy over the evaluation episodes."""

    expert_return: float
    """Mean return of the scripted expert (normalised score 1)."""
    zero_return: float
    """Mean return of the zero-action policy (normalised score 0)."""
    expert_returns: tuple[float, ...] = ()
    """Per-episode returns of the expert."""
    zero_returns: tuple[float, ...] = ()
    """Per-episode returns of the zero-action policy."""
    seeds: tuple[int, ...] = ()
    """Seeds of the episodes (``evaluation_seeds``)."""
    env_id: str = ""
    """Environment id."""
    source: str = ""
    """What the references are, for reports."""

    def __post_init__(self) -> None:
        if not self.expert_return > self.zero_return:
            raise ValueError(
                f"the expert's return ({self.expert_return:.4g}) must exceed the zero-action return "
                f"({self.zero_return:.4g}) for normalised scores to mean anything"
            )

    @property
    def scale(self) -> float:
        """``expert_return - zero_return``."""
        return self.expert_return - self.zero_return

    def normalise(self, returns: Any) -> Any:
        """``(returns - zero_return) / (expert_return - zero_return)`` (arrays or floats)."""
        return (np.asarray(returns, dtype=np.float64) - self.zero_return) / self.scale

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields."""
        d = asdict(self)
        for k in ("expert_returns", "zero_returns", "seeds"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReferenceScores:
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ReferenceScores field(s) {unknown}; valid: {sorted(known)}")
        d = dict(d)
        for k in ("expert_returns", "zero_returns"):
            d[k] = tuple(float(x) for x in d.get(k, ()))
        d["seeds"] = tuple(int(x) for x in d.get("seeds", ()))
        return cls(**d)


def _episode_return(env: Any, seed: int, policy: Any) -> float:
    env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        _, reward, terminated, truncated, _ = env.step(policy())
        total += float(reward)
        done = terminated or truncated
    return total


def measure_reference(env_id: str, env_kwargs: Mapping[str, Any] | None, seeds: Sequence[int]) -> ReferenceScores:
    """Play the scripted expert and the zero-action policy on the episodes ``seeds``.

    ``env_kwargs`` are the runs' env options; visual ones (:data:`VISUAL_KWARGS`) are dropped and
    the env is made with ``obs="state"`` (no rendering). ``max_episode_steps`` and task options
    (``fingers``, ``episode_length``) are kept. Raises ``ValueError`` for an env without expert.
    """
    import gymnasium as gym

    import envs  # noqa: F401  (registers the toolkit's env ids)
    from envs.experts import make_expert
    from envs.jaco_expert import zero_action

    if not seeds:
        raise ValueError("seeds must name at least one evaluation episode")
    kwargs = {k: v for k, v in dict(env_kwargs or {}).items() if k not in VISUAL_KWARGS}
    env = gym.make(env_id, obs="state", **kwargs)
    try:
        expert = make_expert(env)
        zero = zero_action(env)
        expert_returns = tuple(_episode_return(env, s, expert.act) for s in seeds)
        zero_returns = tuple(_episode_return(env, s, lambda: zero) for s in seeds)
    finally:
        env.close()
    return ReferenceScores(
        expert_return=float(np.mean(expert_returns)),
        zero_return=float(np.mean(zero_returns)),
        expert_returns=expert_returns,
        zero_returns=zero_returns,
        seeds=tuple(int(s) for s in seeds),
        env_id=env_id,
        source=(
            f"scripted expert ({type(expert).__name__}) = 1, zero-action policy = 0, mean returns over the "
            f"{len(seeds)} evaluation episodes (seeds {seeds[0]}..{seeds[-1]})"
        ),
    )
