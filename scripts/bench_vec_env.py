#!/usr/bin/env python3
"""Benchmark: PPO env steps/s per agent obs mode with DummyVecEnv vs SubprocVecEnv (issue 9).

Builds each run exactly as ``wm agent train`` does (``agents.env_stack.make_env`` with the training
seeds, ``agents.train.resolve_hyperparams`` for the per-mode PPO defaults and CNN choice) and
times ``PPO.learn`` over ``--steps`` env steps (default: one PPO iteration, 8 envs x 256 steps,
so rollout collection and the 10-epoch update are both in the figure). Each configuration is
timed ``--repeats`` times, interleaved over modes and vec envs so that drifting machine load hits
all alike; medians are reported. The repr encoder is a GQN with the ``small`` preset's
architecture and random weights (speed does not depend on the weights) unless ``--encoder``.

    python scripts/bench_vec_env.py --size 64 --n-envs 8 --repeats 3 --json bench_vec_env.json

The result decides ``agents.config.AUTO_SUBPROC_MODES`` (``vec_env="auto"``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

MODES: tuple[str, ...] = ("state", "repr", "pixels", "pixels+viewpoint")
VEC_ENVS: tuple[str, ...] = ("dummy", "subproc")


def _encoder(path: str | None, size: int, tmp: Path):
    import worldmodel

    if path:
        return worldmodel.load_encoder(path)
    from dataclasses import asdict

    import torch

    from worldmodel.checkpoint import save_checkpoint
    from worldmodel.models.gqn import GQN
    from worldmodel.models.gqn_config import GQNConfig

    torch.manual_seed(0)
    cfg = GQNConfig(image_size=size)  # the 'small' preset's architecture
    ckpt = save_checkpoint(tmp / "gqn", GQN(cfg).state_dict(), {"learner": "gqn", "model": asdict(cfg), "step": 0})
    return worldmodel.load_encoder(str(ckpt))


def time_run(
    env_id: str, obs: str, vec_env: str, encoder, steps: int, n_envs: int, env_kwargs: dict, n_steps: int | None = None
) -> float:
    """Env steps/s of ``PPO.learn(steps)`` with the defaults of ``wm agent train`` for ``obs``.

    ``n_steps`` shortens the rollout while keeping the work per env step of the defaults: the
    batch size scales with it (8 minibatches per epoch, 10 epochs, as 2048/256 by default).
    """
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import Logger

    from agents.config import TrainConfig
    from agents.env_stack import make_env
    from agents.train import _image_size, resolve_hyperparams

    kwargs = dict(env_kwargs) if obs != "state" else {k: v for k, v in env_kwargs.items() if k != "size"}
    env = make_env(
        env_id,
        obs=obs,
        encoder=encoder if obs == "repr" else None,
        n_envs=n_envs,
        seed=0,
        vec_env=vec_env,
        env_kwargs=kwargs,
    )
    try:
        cfg = TrainConfig(env_id=env_id, obs=obs, encoder="x" if obs == "repr" else None)
        defaults, hp = resolve_hyperparams(cfg, _image_size(env.observation_space))
        if n_steps is not None:
            per_update = hp["n_steps"] * n_envs // hp["batch_size"]
            hp.update(n_steps=n_steps, batch_size=max(1, n_steps * n_envs // per_update))
        model = PPO(defaults.policy, env, seed=0, device="cpu", verbose=0, **hp)
        model.set_logger(Logger(None, []))  # timing only: no log files
        env.reset()  # warm-up: worker start, renderer contexts
        for _ in range(8):
            env.step([env.action_space.sample() for _ in range(n_envs)])
        t = time.perf_counter()
        model.learn(steps)  # PPO collects whole rollouts: num_timesteps may exceed `steps`
        return model.num_timesteps / (time.perf_counter() - t)
    finally:
        env.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="wm/JacoReach-v1")
    p.add_argument("--camera", default="moving")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--n-envs", type=int, default=8)
    p.add_argument("--steps", type=int, default=2048, help="env steps per timed run (default: one PPO iteration)")
    p.add_argument(
        "--n-steps",
        type=int,
        default=None,
        help="PPO rollout length per env (default: agents.config's 256); the batch size scales with it",
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads of the main process (default 1, as compare runs)"
    )
    p.add_argument("--encoder", default=None, help="GQN checkpoint (default: random weights, small preset)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    env_kwargs = {"camera": args.camera, "size": args.size}
    load_before = os.getloadavg()
    t_start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        enc = _encoder(args.encoder, args.size, Path(tmp)) if "repr" in args.modes else None
        rates: dict[str, dict[str, list[float]]] = {m: {v: [] for v in VEC_ENVS} for m in args.modes}
        for r in range(args.repeats):
            for mode in args.modes:
                for vec in VEC_ENVS:
                    rate = time_run(args.env, mode, vec, enc, args.steps, args.n_envs, env_kwargs, args.n_steps)
                    rates[mode][vec].append(rate)
                    print(f"repeat {r + 1}/{args.repeats} {mode:16s} {vec:7s}: {rate:8.1f} env steps/s", flush=True)
    med = {m: {v: statistics.median(x) for v, x in d.items()} for m, d in rates.items()}
    result = {
        "env": args.env,
        "camera": args.camera,
        "size": args.size,
        "n_envs": args.n_envs,
        "steps": args.steps,
        "n_steps": args.n_steps,
        "repeats": args.repeats,
        "torch_threads": args.threads,
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
        "date": time.strftime("%Y-%m-%d"),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "wall_s": round(time.time() - t_start, 1),
        "steps_per_s_median": med,
        "steps_per_s_all": rates,
        "subproc_over_dummy": {m: med[m]["subproc"] / med[m]["dummy"] for m in med},
    }
    print(
        f"\nPPO env steps/s, {args.env} camera={args.camera} {args.size}px, n_envs={args.n_envs}, median of "
        f"{args.repeats}:"
    )
    print(f"  {'obs':16s} {'dummy':>8s} {'subproc':>8s} {'ratio':>6s}")
    for m in med:
        print(f"  {m:16s} {med[m]['dummy']:8.1f} {med[m]['subproc']:8.1f} {result['subproc_over_dummy'][m]:6.2f}")
    print(f"load average before {load_before}, after {result['loadavg_after']}; {result['wall_s']} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
