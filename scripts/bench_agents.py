#!/usr/bin/env python3
"""Benchmark: env steps/s of PPO training with obs=repr vs obs=pixels vs obs=state (same env,
same run), and the frozen encoder's forward time per batch vs the vec env's step time.

The encoder is a GQN with the ``small`` preset's architecture (random weights unless
``--encoder`` names a checkpoint: speed does not depend on the weights). Each configuration is
timed ``--repeats`` times after a warm-up; medians are reported. Target: repr >= 0.8x pixels.

    python scripts/bench_agents.py --size 32 --steps 2048 --repeats 3 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


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


def time_training(env_id: str, obs: str, encoder, steps: int, n_envs: int, env_kwargs: dict) -> float:
    """Env steps/s of PPO.learn (defaults of agents.config for this obs mode), after a warm-up."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import Logger

    from agents.config import defaults_for
    from agents.env_stack import make_env
    from agents.extractors import pixel_policy_kwargs

    d = defaults_for("ppo", obs)
    hp = dict(d.hyperparams)
    if obs == "pixels":
        hp["policy_kwargs"] = pixel_policy_kwargs(env_kwargs["size"])
    hp["n_steps"] = max(16, steps // (2 * n_envs))  # two rollouts + updates per timed run
    env = make_env(
        env_id,
        obs=obs,
        encoder=encoder if obs == "repr" else None,
        n_envs=n_envs,
        seed=0,
        env_kwargs=env_kwargs if obs != "state" else {k: v for k, v in env_kwargs.items() if k != "size"},
    )
    model = PPO(d.policy, env, seed=0, device="cpu", verbose=0, **hp)
    model.set_logger(Logger(None, []))  # timing only: no log files
    model.learn(hp["n_steps"] * n_envs)  # warm-up: renderer contexts, allocations
    t = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    rate = steps / (time.perf_counter() - t)
    env.close()
    return rate


def time_encoder_vs_env(env_id: str, encoder, n_envs: int, env_kwargs: dict, iters: int = 50) -> tuple[float, float]:
    """(median ms of one encoder forward on n_envs frames, median ms of one vec env step)."""
    from agents.env_stack import make_env

    env = make_env(env_id, obs="pixels", n_envs=n_envs, seed=0, env_kwargs=env_kwargs)
    raw = env.venv  # under VecTransposeImage: channel-last frames as the env produces them
    raw.reset()
    actions = np.stack([env.action_space.sample() for _ in range(n_envs)])
    step_ms = []
    for _ in range(iters):
        t = time.perf_counter()
        raw.step(actions)
        step_ms.append(1e3 * (time.perf_counter() - t))
    frames = np.zeros((n_envs, env_kwargs["size"], env_kwargs["size"], 3), np.uint8)
    vps = np.zeros((n_envs, 5), np.float32)
    encoder.encode_numpy(frames, vps)
    enc_ms = []
    for _ in range(iters):
        t = time.perf_counter()
        encoder.encode_numpy(frames, vps)
        enc_ms.append(1e3 * (time.perf_counter() - t))
    env.close()
    return statistics.median(enc_ms), statistics.median(step_ms)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="wm/JacoReach-v1")
    p.add_argument("--camera", default="moving")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--n-envs", type=int, default=4)
    p.add_argument("--steps", type=int, default=2048, help="env steps per timed run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--encoder", default=None, help="GQN checkpoint (default: random weights, small preset)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    env_kwargs = {"camera": args.camera, "size": args.size}
    with tempfile.TemporaryDirectory() as tmp:
        enc = _encoder(args.encoder, args.size, Path(tmp))
        rates: dict[str, list[float]] = {m: [] for m in ("state", "pixels", "repr")}
        for r in range(args.repeats):  # interleaved, so drifting machine load hits every mode alike
            for mode in rates:
                rates[mode].append(time_training(args.env, mode, enc, args.steps, args.n_envs, env_kwargs))
                print(f"repeat {r + 1}/{args.repeats} {mode:6s}: {rates[mode][-1]:8.1f} env steps/s", flush=True)
        enc_ms, step_ms = time_encoder_vs_env(args.env, enc, args.n_envs, env_kwargs)
    med = {m: statistics.median(v) for m, v in rates.items()}
    result = {
        "env": args.env,
        "camera": args.camera,
        "size": args.size,
        "n_envs": args.n_envs,
        "steps": args.steps,
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "encoder_feature_dim": enc.feature_dim,
        "steps_per_s_median": med,
        "steps_per_s_all": rates,
        "repr_over_pixels": med["repr"] / med["pixels"],
        "encoder_forward_ms_per_batch": enc_ms,
        "vec_env_step_ms": step_ms,
    }
    print(
        f"\nPPO training, {args.env} camera={args.camera} {args.size}px, n_envs={args.n_envs}, median of "
        f"{args.repeats}:"
    )
    for m in ("state", "pixels", "repr"):
        print(f"  {m:6s} {med[m]:8.1f} env steps/s")
    print(f"  repr / pixels = {result['repr_over_pixels']:.2f} (target >= 0.8)")
    print(
        f"encoder forward on {args.n_envs} frames: {enc_ms:.2f} ms (median); "
        f"vec env step ({args.n_envs} envs, render): {step_ms:.2f} ms"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
