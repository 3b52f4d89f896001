"""DAgger on a frozen encoder: a sim policy trained from the scripted expert's actions.

Imitation is the fast way to a competent sim policy for transfer studies: PPO on the frozen
GQN features of ``wm/JacoReach-v1`` with a moving camera stayed near the zero-action score after
100k env steps (docs/transfer.md), which leaves no sim-to-real gap to measure. DAgger (Ross et
al., 2011) rolls out a mixture of expert and learner (expert share ``beta_i = beta ** i`` in
iteration i), labels every visited observation with the expert's action for that state, and
fits the policy by regression on the growing dataset, so the learner is trained on the states it
visits itself.

The policy is an SB3 ``PPO`` ``MlpPolicy`` on the same observation stack as ``wm agent train
--obs repr`` (encoder features, ``context_views`` window, ``aggregate``); its action mean is
fitted (MSE) to the expert's action. The run directory has the files of a ``wm agent train``
run that :func:`agents.transfer.evaluate_transfer` reads: ``config.json``, ``run.json``,
``evaluations.csv``, ``tb/``, ``model.zip`` and, last, ``done.json``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class DaggerConfig:
    """Settings of one DAgger run."""

    encoder: str
    """Frozen encoder checkpoint (the policy observes its features)."""
    out: str
    """Run directory."""
    env_id: str = "wm/JacoReach-v1"
    """Gymnasium id (needs a scripted expert: :func:`envs.experts.make_expert`)."""
    camera: str = "moving"
    """Camera mode."""
    env_kwargs: dict[str, Any] = field(default_factory=lambda: {"target_marker": True})
    """Other env options (the domain stays ``sim``)."""
    context_views: int = 12
    """Views aggregated into one observation."""
    aggregate: str = "mean"
    """How the views are combined."""
    iterations: int = 6
    """DAgger iterations."""
    steps_per_iteration: int = 3000
    """Env steps collected per iteration (over all envs)."""
    beta: float = 0.5
    """Expert share of the acting policy decays as ``beta ** iteration`` (1 in iteration 0)."""
    epochs: int = 8
    """Passes over the aggregated dataset after each iteration."""
    batch_size: int = 256
    """Regression minibatch."""
    lr: float = 1e-3
    """Adam learning rate."""
    n_envs: int = 4
    """Parallel envs (in process)."""
    eval_episodes: int = 16
    """Evaluation episodes after each iteration (seeds ``eval_seed + k``)."""
    eval_seed: int = 1_000_000
    """First evaluation seed (the one ``wm agent train`` uses)."""
    seed: int = 0
    """Seed of the envs, the policy's initialisation and the mixing draws."""


def _write_config(out: Path, cfg: DaggerConfig) -> None:
    from worldmodel.atomic import atomic_write_json

    kwargs = {**cfg.env_kwargs, "camera": cfg.camera}
    atomic_write_json(
        out / "config.json",
        {
            **asdict(cfg),
            "obs": "repr",
            "arm": "repr-dagger",
            "algo": "ppo",
            "normalize": False,
            "append_viewpoint": False,
            "env_kwargs": kwargs,
            "trainer": "dagger",
        },
    )


def train_dagger(cfg: DaggerConfig) -> dict[str, Any]:
    """Run DAgger (see the module doc); returns the ``done.json`` record. A finished run is kept."""
    import torch
    from stable_baselines3 import PPO
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    from agents.artifacts import DONE_FILE, MODEL_FILE
    from agents.callbacks import evaluate_on_seeds
    from agents.env_stack import make_env, resolve_encoder
    from agents.reference import evaluation_seeds
    from agents.wrappers import _innermost
    from envs.experts import make_expert
    from worldmodel.atomic import atomic_write_json
    from worldmodel.run_metadata import write_run_metadata

    out = Path(cfg.out)
    if (out / DONE_FILE).is_file():
        return json.loads((out / DONE_FILE).read_text())
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    encoder = resolve_encoder(cfg.encoder)
    kwargs = {**cfg.env_kwargs, "camera": cfg.camera}
    stack = dict(
        encoder=encoder, vec_env="dummy", env_kwargs=kwargs, context_views=cfg.context_views, aggregate=cfg.aggregate
    )
    env = make_env(cfg.env_id, obs="repr", n_envs=cfg.n_envs, seed=cfg.seed * 1000, **stack)
    eval_env = make_env(cfg.env_id, obs="repr", n_envs=1, seed=0, **stack)
    experts = [make_expert(e) for e in _innermost(env).envs]
    model = PPO("MlpPolicy", env, seed=cfg.seed, device="cpu", policy_kwargs={"net_arch": [128, 128]})
    policy = model.policy
    actor = [p for n, p in policy.named_parameters() if not n.startswith(("value_net", "mlp_extractor.value_net"))]
    opt = torch.optim.Adam(actor, lr=cfg.lr)
    _write_config(out, cfg)
    write_run_metadata(out, cfg, cfg.seed, extra={"encoder": cfg.encoder})
    rng = np.random.default_rng(cfg.seed)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    rows = []
    obs = env.reset()
    seeds = evaluation_seeds(cfg.eval_seed, cfg.eval_episodes)
    with SummaryWriter(str(out / "tb")) as tb:
        for it in tqdm(range(cfg.iterations), desc="dagger", unit="iter"):
            beta = cfg.beta**it if it > 0 else 1.0
            for _ in range(cfg.steps_per_iteration // cfg.n_envs):
                expert_action = np.stack([ex.act() for ex in experts])
                xs.append(obs.astype(np.float32))
                ys.append(expert_action)
                mine, _ = model.predict(obs, deterministic=True)
                use_expert = rng.random(cfg.n_envs) < beta
                obs, _, _, _ = env.step(np.where(use_expert[:, None], expert_action, mine))
            loss = _fit_actor(policy, opt, np.concatenate(xs), np.clip(np.concatenate(ys), -1, 1), cfg, rng)
            result = evaluate_on_seeds(model, eval_env, seeds)
            mean_return = float(np.mean(result.returns))
            step = (it + 1) * cfg.steps_per_iteration
            tb.add_scalar("dagger/loss", loss, step)
            tb.add_scalar("dagger/eval_mean_return", mean_return, step)
            tb.add_scalar("dagger/beta", beta, step)
            rows.append(
                {
                    "timesteps": step,
                    "mean_return": mean_return,
                    "loss": loss,
                    "beta": beta,
                    "returns": " ".join(f"{r:g}" for r in result.returns),
                }
            )
    env.close()
    eval_env.close()
    with open(out / "evaluations.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    model.save(str(out / MODEL_FILE))
    done = {
        "timesteps": cfg.iterations * cfg.steps_per_iteration,
        "final_mean_return": rows[-1]["mean_return"],
        "trainer": "dagger",
        "seed": cfg.seed,
    }
    atomic_write_json(out / DONE_FILE, done)
    return done


def _fit_actor(policy: Any, opt: Any, x: np.ndarray, y: np.ndarray, cfg: DaggerConfig, rng: np.random.Generator):
    """Regress the policy's action mean on the expert's actions; returns the last epoch's mean loss."""
    import torch

    from agents.transfer import PolicyHead

    head = PolicyHead.__new__(PolicyHead)  # the same forward, without freezing the policy
    torch.nn.Module.__init__(head)
    head.policy = policy
    policy.set_training_mode(True)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    last = 0.0
    for _ in range(cfg.epochs):
        order = torch.as_tensor(rng.permutation(len(xt)))
        total = 0.0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            loss = torch.nn.functional.mse_loss(head(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        last = total / len(order)
    policy.set_training_mode(False)
    return last


__all__ = ["DaggerConfig", "train_dagger"]
