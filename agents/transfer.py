"""Policy transfer: a policy trained in sim, played in another domain through an (adapted) encoder.

The policy is never changed: :func:`evaluate_transfer` rebuilds the run's observation stack
(same env options, ``context_views`` and ``aggregate``) with another encoder and another
visual domain, and plays the run's final ``model.zip`` deterministically on fixed evaluation
seeds. Scores are normalised by the expert reference of :mod:`agents.reference` (1 = the
scripted expert, 0 = holding still). :func:`policy_head` exposes the policy's action mean as a
torch module on per-frame features, the source model that joint OT (DeepJDOT) needs.

``model.zip`` is SB3's format and contains pickled objects: load only runs you produced yourself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from agents.artifacts import MODEL_FILE


def _run_config(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no config.json (not a `wm agent train` run directory)")
    config = json.loads(path.read_text())
    if config.get("obs") != "repr":
        raise ValueError(f"{run_dir}: policy transfer needs a run with obs 'repr', this one has {config.get('obs')!r}")
    if config.get("normalize"):
        raise ValueError(f"{run_dir}: runs with --normalize are not supported for transfer (statistics are per run)")
    if not (Path(run_dir) / MODEL_FILE).is_file():
        raise FileNotFoundError(f"{run_dir}: no {MODEL_FILE} (the run has not finished)")
    return config


def _load_policy(run_dir: str | Path, config: dict[str, Any]) -> Any:
    import stable_baselines3 as sb3

    from agents.train import ALGO_CLASSES

    return getattr(sb3, ALGO_CLASSES[config["algo"]]).load(str(Path(run_dir) / MODEL_FILE), device="cpu")


class PolicyHead(nn.Module):
    """Deterministic action (the Gaussian mean, before clipping) of an SB3 actor-critic on features."""

    def __init__(self, policy: Any) -> None:
        super().__init__()
        self.policy = policy
        for p in self.policy.parameters():
            p.requires_grad_(False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        latent = self.policy.mlp_extractor.forward_actor(self.policy.extract_features(features))
        return self.policy.action_net(latent)


def policy_head(run_dir: str | Path) -> PolicyHead:
    """The run's policy as ``features [B, D] -> action mean [B, A]`` (frozen).

    The policy was trained on the mean of ``context_views`` views' features; given one view's
    features it sees a window of one (the approximation joint OT works with).
    """
    config = _run_config(run_dir)
    if config.get("append_viewpoint"):
        raise ValueError(f"{run_dir}: joint OT on features needs a run without --append-viewpoint")
    return PolicyHead(_load_policy(run_dir, config).policy)


def evaluate_transfer(
    run_dir: str | Path,
    encoder: Any,
    domain: str = "sim",
    episodes: int = 30,
    eval_seed: int | None = None,
) -> dict[str, Any]:
    """Play the run's final policy in ``domain`` through ``encoder``; returns per-episode returns.

    Args:
        run_dir: a finished ``wm agent train`` run with ``obs repr``.
        encoder: FrozenEncoder (or checkpoint directory) with the run encoder's feature size.
        domain: visual domain of the env (``sim``, ``real``, ``real-hard``, ...).
        episodes: evaluation episodes (seeds ``eval_seed + k``; default: the run's eval seed).
    """
    from agents.callbacks import evaluate_on_seeds
    from agents.env_stack import make_env, resolve_encoder
    from agents.reference import evaluation_seeds

    config = _run_config(run_dir)
    enc = resolve_encoder(encoder)
    model = _load_policy(run_dir, config)
    expected = model.observation_space.shape
    kwargs = dict(config.get("env_kwargs") or {})
    kwargs["domain"] = domain
    env = make_env(
        config["env_id"],
        obs="repr",
        encoder=enc,
        n_envs=1,
        seed=0,
        vec_env="dummy",
        env_kwargs=kwargs,
        append_viewpoint=bool(config.get("append_viewpoint")),
        context_views=int(config.get("context_views", 1)),
        aggregate=str(config.get("aggregate", "sum")),
    )
    if env.observation_space.shape != expected:
        raise ValueError(
            f"encoder {enc.name} gives observations {env.observation_space.shape}, the policy of {run_dir} "
            f"expects {expected}"
        )
    seed0 = int(config.get("eval_seed", 1_000_000) if eval_seed is None else eval_seed)
    try:
        result = evaluate_on_seeds(model, env, evaluation_seeds(seed0, episodes))
    finally:
        env.close()
    returns = list(map(float, result.returns))
    return {
        "run": str(run_dir),
        "encoder": enc.name,
        "domain": domain,
        "returns": returns,
        "mean_return": sum(returns) / len(returns),
        "successes": result.successes,
        "eval_seed": seed0,
    }


def gap_closed(adapted: float, unadapted: float, sim: float) -> float:
    """``(adapted - unadapted) / (sim - unadapted)``: 1 = back to the sim score, 0 = no better."""
    gap = sim - unadapted
    if abs(gap) < 1e-12:
        raise ValueError(f"no transfer gap to close (sim {sim} vs unadapted {unadapted})")
    return (adapted - unadapted) / gap


__all__ = ["PolicyHead", "evaluate_transfer", "gap_closed", "policy_head"]
