"""Policy transfer across domains (agents.transfer, agents.imitation, agents.transfer_study) and
the supervised perception encoder (worldmodel.models.state_encoder): real MuJoCo rollouts, a real
(tiny) SB3 policy, real checkpoints on disk."""

from __future__ import annotations

import json

import agents_fake_env as fake
import numpy as np
import pytest
import torch

from agents.imitation import DaggerConfig, train_dagger
from agents.transfer import evaluate_transfer, gap_closed, policy_head
from worldmodel.align.frames import FrameSet, collect_frames
from worldmodel.encoders import load_encoder
from worldmodel.models.state_encoder import StateEncoderConfig, evaluate_mse, fit_state_encoder, save_state_encoder


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    ckpt = fake.save_tiny_gqn(root / "gqn", size=16)
    cfg = DaggerConfig(
        encoder=str(ckpt),
        out=str(root / "run"),
        iterations=2,
        steps_per_iteration=64,
        n_envs=2,
        eval_episodes=1,
        epochs=2,
        env_kwargs={"target_marker": True},
    )
    torch.set_num_threads(1)
    train_dagger(cfg)
    return root, ckpt, root / "run"


def test_dagger_run_has_the_files_of_a_training_run(tiny_run):
    _, _, run = tiny_run
    for name in ("config.json", "run.json", "evaluations.csv", "model.zip", "done.json"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["obs"] == "repr" and config["trainer"] == "dagger" and config["env_kwargs"]["camera"] == "moving"
    rows = (run / "evaluations.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and rows[0].startswith("timesteps,mean_return")
    assert list((run / "tb").rglob("events.out.tfevents.*"))
    done = json.loads((run / "done.json").read_text())
    assert done["timesteps"] == 128 and np.isfinite(done["final_mean_return"])
    assert train_dagger(DaggerConfig(encoder="unused", out=str(run))) == done  # finished: kept, not retrained


def test_policy_head_is_the_deterministic_action_of_the_policy(tiny_run):
    from stable_baselines3 import PPO

    _, _, run = tiny_run
    head = policy_head(run)
    model = PPO.load(str(run / "model.zip"), device="cpu")
    obs = np.random.default_rng(0).normal(size=(5, *model.observation_space.shape)).astype(np.float32)
    action, _ = model.predict(obs, deterministic=True)
    with torch.no_grad():
        mean = head(torch.as_tensor(obs)).numpy()
    assert np.allclose(np.clip(mean, -1, 1), action, atol=1e-5)
    assert not any(p.requires_grad for p in head.parameters())


def test_evaluate_transfer_plays_the_policy_in_another_domain(tiny_run):
    _, ckpt, run = tiny_run
    sim = evaluate_transfer(run, str(ckpt), domain="sim", episodes=2)
    real = evaluate_transfer(run, str(ckpt), domain="real", episodes=2)
    assert sim["domain"] == "sim" and real["domain"] == "real" and len(real["returns"]) == 2
    assert real["returns"] != sim["returns"]  # the domain reached the env (the policy sees other features)
    again = evaluate_transfer(run, str(ckpt), domain="real", episodes=2)
    assert again["returns"] == real["returns"]  # fixed seeds: reproducible


def test_evaluate_transfer_refuses_an_encoder_of_another_size(tiny_run, tmp_path):
    _, _, run = tiny_run
    other = fake.save_tiny_gqn(tmp_path / "g", size=16, r_channels=4)
    with pytest.raises(ValueError, match="expects"):
        evaluate_transfer(run, str(other), domain="real", episodes=1)


def test_gap_closed():
    assert gap_closed(0.6, 0.2, 1.0) == pytest.approx(0.5)
    assert gap_closed(0.2, 0.2, 1.0) == 0.0
    with pytest.raises(ValueError, match="no transfer gap"):
        gap_closed(0.5, 0.5, 0.5)


def test_state_encoder_learns_the_state_and_round_trips(tmp_path):
    torch.set_num_threads(1)
    kw = {"target_marker": True}
    train = collect_frames("sim", episodes=40, steps=4, seed=0, env_kwargs=kw, progress=False)
    val = collect_frames("sim", episodes=10, steps=4, seed=500, env_kwargs=kw, progress=False)
    untrained, _ = fit_state_encoder(train, StateEncoderConfig(epochs=0, channels=8), progress=False)
    config = StateEncoderConfig(epochs=10, channels=8, batch_size=16, lr=3e-3)
    model, history = fit_state_encoder(train, config, val=val, progress=False)
    assert evaluate_mse(model, train) < 0.8 * evaluate_mse(untrained, train)
    assert len(history) == 10 and "val_mse" in history[-1]
    save_state_encoder(model, tmp_path / "enc")
    enc = load_encoder(str(tmp_path / "enc"))
    assert enc.name == "state-encoder" and enc.feature_dim == 64
    with torch.no_grad():
        x = torch.as_tensor(val.frames[:4]).permute(0, 3, 1, 2).float() / 255
        from worldmodel.encoders import viewpoint7_torch

        direct = model.encode(x, viewpoint7_torch(torch.as_tensor(val.viewpoints[:4])))
    assert torch.allclose(enc.encode(val.frames[:4], val.viewpoints[:4]), direct, atol=1e-5)
    assert evaluate_mse(model, val) == pytest.approx(history[-1]["val_mse"], rel=1e-5)


def test_frame_set_split_by_episode_and_safe_round_trip(tmp_path):
    fs = collect_frames("sim", episodes=3, steps=2, seed=0, paired_domain="real", progress=False)
    assert fs.states.shape == (6, 12) and fs.paired.shape == fs.frames.shape
    part = fs.subset(np.array([0, 2]))
    assert set(part.episodes) == {0, 2} and len(part) == 4
    path = fs.save(tmp_path / "f.npz")
    back = FrameSet.load(path)
    assert np.array_equal(back.frames, fs.frames) and back.meta["paired_domain"] == "real"
    with pytest.raises(FileNotFoundError, match="wm align collect"):
        FrameSet.load(tmp_path / "missing.npz")


def test_study_end_to_end_on_a_tiny_grid(tiny_run, tmp_path):
    from agents.transfer_study import StudyConfig, run_transfer_study

    root, ckpt, run = tiny_run
    cfg = StudyConfig(
        out=str(tmp_path / "study"),
        encoder=str(ckpt),
        agents=str(run.parent),
        seeds=1,
        methods=("none", "colour", "ot-sinkhorn", "joint-ot"),
        domains=("real",),
        train_episodes=4,
        eval_episodes=3,
        policy_episodes=1,
        steps=2,
        batch_size=16,
        size=16,
    )
    (run.parent / "s0").symlink_to(run)
    summary = run_transfer_study(cfg)
    rows = summary["rows"]
    assert set(rows) == {"real/none", "real/colour", "real/ot-sinkhorn", "real/joint-ot"}
    assert rows["real/none"]["paired_error"]["n"] == 1 and rows["real/colour"]["policy_score"]["n"] == 1
    out = tmp_path / "study"
    text = (out / "report.md").read_text()
    assert "Target domain `real`" in text and "ot-sinkhorn" in text and (out / "report.html").is_file()
    assert (out / "figures" / "measures_real.png").is_file() and (out / "figures" / "clouds_real.png").is_file()
    assert (out / "encoders" / "real" / "ot-sinkhorn" / "s0" / "run.json").is_file()
    before = sorted(p.name for p in (out / "cells").iterdir())
    run_transfer_study(cfg)  # resumable: nothing is recomputed
    assert sorted(p.name for p in (out / "cells").iterdir()) == before
