"""Agent training runs (agents.train): frozen encoder never changes, run outputs and evaluation
frequency, finished-run handling, replay-buffer memory guard, CLI errors."""

from __future__ import annotations

import csv
import json

import agents_fake_env as fake
import numpy as np
import pytest
import torch
from gymnasium import spaces

from agents.cli import main as wm
from agents.config import TrainConfig
from agents.make_env import make_env
from agents.train import (
    ReplayMemoryError,
    check_replay_memory,
    estimate_replay_memory,
    parse_overrides,
    train_agent,
)
from worldmodel.atomic import file_sha256

JACO = "wm/JacoReach-v0"
TINY_PPO = {"n_steps": 16, "batch_size": 16, "n_epochs": 1}


def _state_copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_encoder_unchanged_by_ppo_training():
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import Logger

    torch.set_num_threads(1)
    enc = fake.tiny_encoder(size=16)
    before = _state_copy(enc)
    env = make_env(JACO, obs="repr", encoder=enc, n_envs=2, seed=0, env_kwargs={"camera": "moving", "episode_length": 8})
    model = PPO("MlpPolicy", env, seed=0, device="cpu", **TINY_PPO)
    model.set_logger(Logger(None, []))  # no SB3 log folder in /tmp
    policy_before = _state_copy(model.policy)
    model.learn(64)
    env.close()
    after = enc.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), f"encoder tensor {k} changed"
    assert not enc.training and not enc.model.training
    assert not any(p.requires_grad for p in enc.parameters())
    # the agent did train (so the check above is meaningful)
    assert any(not torch.equal(policy_before[k], v) for k, v in model.policy.state_dict().items())


def test_train_repr_run_outputs(tmp_path):
    ckpt = fake.save_tiny_gqn(tmp_path / "gqn", size=16)
    digest = file_sha256(ckpt / "model.safetensors")
    out = tmp_path / "run"
    cfg = TrainConfig(
        env_id=JACO, obs="repr", encoder=str(ckpt), camera="moving", steps=64, seed=3, out=str(out), n_envs=2,
        eval_freq=32, eval_episodes=1, hyperparams=dict(TINY_PPO), env_kwargs={"episode_length": 8}, threads=1, progress=False,
    )
    done = train_agent(cfg)
    assert done["timesteps"] == 64 and done["obs"] == "repr"
    with open(out / "evaluations.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # step 0, then every eval_freq env steps (EvalCallback counts calls of n_envs steps each)
    assert [int(r["timesteps"]) for r in rows] == [0, 32, 64]
    assert all(int(r["episodes"]) == 1 and np.isfinite(float(r["mean_return"])) for r in rows)
    assert rows[0]["success_rate"] != ""  # Jaco reports info["success"]
    run = json.loads((out / "run.json").read_text())
    assert run["seed"] == 3 and run["extra"]["encoder"]["sha256"] == digest
    assert run["versions"]["stable-baselines3"] and run["config"]["obs"] == "repr"
    config = json.loads((out / "config.json").read_text())
    assert config["n_envs"] == 2 and config["resolved_hyperparams"]["n_steps"] == 16
    assert list((out / "tb").rglob("events.out.tfevents.*"))
    assert (out / "model.zip").stat().st_size > 0
    assert file_sha256(ckpt / "model.safetensors") == digest  # the checkpoint is never written

    # a finished run is left alone; --overwrite retrains
    mtime = (out / "done.json").stat().st_mtime_ns
    assert train_agent(cfg) == done and (out / "done.json").stat().st_mtime_ns == mtime


def test_off_policy_run_and_refuses_foreign_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("not a run")
    cfg = TrainConfig(
        env_id=fake.ENV_ID, obs="state", algo="sac", steps=60, out=str(tmp_path), eval_freq=30, eval_episodes=1,
        hyperparams={"learning_starts": 30, "batch_size": 16, "buffer_size": 500}, threads=1, progress=False,
    )
    with pytest.raises(ValueError, match="does not hold an agent run"):
        train_agent(cfg)
    cfg.out = str(tmp_path / "sac")
    done = train_agent(cfg)
    assert done["algo"] == "sac" and done["timesteps"] == 60


def test_replay_memory_estimate_and_guard(tmp_path, capsys):
    obs = spaces.Box(0, 255, (3, 64, 64), np.uint8)
    act = spaces.Box(-1, 1, (9,), np.float32)
    full = estimate_replay_memory(obs, act, 1000, optimize_memory_usage=False)
    half = estimate_replay_memory(obs, act, 1000, optimize_memory_usage=True)
    assert full == 1000 * (2 * 3 * 64 * 64 + 9 * 4 + 12) and half == 1000 * (3 * 64 * 64 + 9 * 4 + 12)
    with pytest.raises(ReplayMemoryError, match="needs 1.15 GiB.*lower buffer_size.*optimize_memory_usage=True"):
        check_replay_memory(obs, act, 50_000, False, memory_fraction=0.8, available=1024**3, log=lambda s: None)
    assert check_replay_memory(obs, act, 1000, True, available=1024**3, log=print) == half
    assert "replay buffer: 1,000 transitions" in capsys.readouterr().out
    # through the CLI: a clear error and exit code 2, before any buffer is allocated
    code = wm([
        "agent", "train", "--env", JACO, "--obs", "pixels", "--algo", "sac", "--size", "64", "--steps", "10",
        "--hp", "buffer_size=1000000000", "--out", str(tmp_path / "big"), "--no-progress",
    ])
    assert code == 2
    err = capsys.readouterr().err
    assert "wm: error: the replay buffer needs" in err and "GiB" in err
    assert not (tmp_path / "big" / "done.json").exists()


def test_cli_rejects_bad_inputs(tmp_path, capsys):
    with pytest.raises(SystemExit):
        wm(["agent", "train", "--obs", "rgb", "--out", str(tmp_path)])
    assert "invalid choice: 'rgb'" in capsys.readouterr().err
    assert wm(["agent", "train", "--obs", "repr", "--out", str(tmp_path / "r")]) == 2
    assert "obs='repr' needs an encoder checkpoint" in capsys.readouterr().err
    assert wm(["agent", "train", "--obs", "state", "--hp", "n_steps", "--out", str(tmp_path / "s")]) == 2
    assert "--hp expects key=value" in capsys.readouterr().err
    enc32 = fake.save_tiny_gqn(tmp_path / "gqn32", size=32)
    code = wm(["agent", "train", "--env", JACO, "--obs", "repr", "--encoder", str(enc32), "--size", "16", "--steps", "8", "--out", str(tmp_path / "m"), "--no-progress"])
    assert code == 2
    assert "takes 32x32 images but the env produces 16x16; make the env with size=32" in capsys.readouterr().err
    assert parse_overrides(["lr=0.5", "net=[64, 64]", "name=abc"]) == {"lr": 0.5, "net": [64, 64], "name": "abc"}


def test_evaluations_replay_the_same_episodes():
    from stable_baselines3 import PPO

    from agents.train import _evaluate

    env = make_env(fake.ENV_ID, obs="state", n_envs=1, seed=0, env_kwargs={"max_steps": 5})
    model = PPO("MlpPolicy", env, seed=0, device="cpu", **TINY_PPO)
    first = _evaluate(model, env, 3, seed=11)
    assert _evaluate(model, env, 3, seed=11) == first  # same seed: same episodes, same returns
    assert _evaluate(model, env, 3, seed=12)[0] != first[0]
    env.close()
