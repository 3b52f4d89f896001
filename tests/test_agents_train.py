"""Agent training runs (agents.train): frozen encoder never changes, run outputs and evaluation
frequency, finished-run handling, replay-buffer memory guard, CLI errors, the evaluation protocol
(episode k reset with seed eval_seed + k), pixels+viewpoint, frame stacking, VecNormalize,
per-mode defaults, arms, and in-process resume from a checkpoint (the real kill-and-resume
subprocess test is tests/test_agents_resume.py)."""

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
from agents.env_stack import make_env
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
    env = make_env(
        JACO, obs="repr", encoder=enc, n_envs=2, seed=0, env_kwargs={"camera": "moving", "episode_length": 8}
    )
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
        env_id=JACO,
        obs="repr",
        encoder=str(ckpt),
        camera="moving",
        steps=64,
        seed=3,
        out=str(out),
        n_envs=2,
        eval_freq=32,
        eval_episodes=1,
        hyperparams=dict(TINY_PPO),
        env_kwargs={"episode_length": 8},
        threads=1,
        progress=False,
        vec_env="dummy",
    )
    done = train_agent(cfg)
    assert done["timesteps"] == 64 and done["obs"] == "repr" and done["arm"] == "repr" and done["resumed_from"] == []
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
    assert config["arm"] == "repr" and config["eval_seed"] == 1_000_000 and config["vec_env"] == "dummy"
    assert list((out / "tb").rglob("events.out.tfevents.*"))
    assert (out / "model.zip").stat().st_size > 0
    assert file_sha256(ckpt / "model.safetensors") == digest  # the checkpoint is never written

    # a finished run is left alone; --overwrite retrains
    mtime = (out / "done.json").stat().st_mtime_ns
    assert train_agent(cfg) == done and (out / "done.json").stat().st_mtime_ns == mtime


def test_off_policy_run_and_refuses_foreign_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("not a run")
    cfg = TrainConfig(
        env_id=fake.ENV_ID,
        obs="state",
        algo="sac",
        steps=60,
        out=str(tmp_path),
        eval_freq=30,
        eval_episodes=1,
        hyperparams={"learning_starts": 30, "batch_size": 16, "buffer_size": 500},
        threads=1,
        progress=False,
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
    code = wm(
        [
            "agent",
            "train",
            "--env",
            JACO,
            "--obs",
            "pixels",
            "--algo",
            "sac",
            "--size",
            "64",
            "--steps",
            "10",
            "--hp",
            "buffer_size=1000000000",
            "--out",
            str(tmp_path / "big"),
            "--no-progress",
        ]
    )
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
    code = wm(
        [
            "agent",
            "train",
            "--env",
            JACO,
            "--obs",
            "repr",
            "--encoder",
            str(enc32),
            "--size",
            "16",
            "--steps",
            "8",
            "--out",
            str(tmp_path / "m"),
            "--no-progress",
        ]
    )
    assert code == 2
    assert "takes 32x32 images but the env produces 16x16; make the env with size=32" in capsys.readouterr().err
    assert parse_overrides(["lr=0.5", "net=[64, 64]", "name=abc"]) == {"lr": 0.5, "net": [64, 64], "name": "abc"}

    # the options of issue 9, refused with the allowed values named
    assert wm(["agent", "train", "--obs", "state", "--arm", "Repr Niso", "--out", str(tmp_path / "a")]) == 2
    assert "arm name 'Repr Niso' is not allowed: use lower-case letters, digits" in capsys.readouterr().err
    assert wm(["agent", "train", "--obs", "state", "--frame-stack", "2", "--out", str(tmp_path / "f")]) == 2
    assert "frame_stack=2 applies to obs modes pixels, pixels+viewpoint, not obs='state'" in capsys.readouterr().err
    assert wm(["agent", "train", "--obs", "pixels", "--normalize", "--out", str(tmp_path / "n")]) == 2
    assert (
        "normalize (observation normalisation) applies to the vector obs modes repr, state" in capsys.readouterr().err
    )
    assert wm(["agent", "train", "--obs", "state", "--frame-stack", "0", "--out", str(tmp_path / "z")]) == 2
    assert "frame_stack must be >= 1, got 0" in capsys.readouterr().err
    assert not any((tmp_path / d).exists() for d in "afnz")  # refused before anything is written


class _RecordingPolicy:
    """A deterministic 'model' for evaluate_on_seeds: zero actions, records each episode's first observation."""

    def __init__(self, action_space: spaces.Box) -> None:
        self.action = np.zeros((1, *action_space.shape), dtype=np.float32)
        self.first_obs: list[np.ndarray] = []

    def predict(self, obs, state=None, episode_start=None, deterministic=False):
        assert deterministic
        if episode_start is not None and episode_start[0]:
            self.first_obs.append(np.array(obs[0]))
        return self.action, state


def test_evaluation_episode_k_is_reset_with_seed_eval_seed_plus_k():
    import gymnasium as gym

    from agents.callbacks import evaluate_on_seeds
    from agents.reference import evaluation_seeds

    seeds = evaluation_seeds(1_000_000, 4)
    assert seeds == [1_000_000, 1_000_001, 1_000_002, 1_000_003]
    env = make_env(fake.ENV_ID, obs="state", n_envs=1, seed=0, env_kwargs={"max_steps": 5})
    policy = _RecordingPolicy(env.action_space)
    result = evaluate_on_seeds(policy, env, seeds)
    plain = gym.make(fake.ENV_ID, obs="state", max_steps=5)
    for k, s in enumerate(seeds):  # every episode starts as a plain env reset with its own seed
        np.testing.assert_array_equal(policy.first_obs[k], plain.reset(seed=s)[0])
    # the same seeds give the same episodes in any order and on their own (not a chain from the first seed)
    alone = [evaluate_on_seeds(policy, env, [s]).returns[0] for s in reversed(seeds)]
    assert alone[::-1] == result.returns and len(set(result.returns)) == 4
    assert result.lengths == [5, 5, 5, 5] and result.successes == [False] * 4
    env.close()
    with pytest.raises(ValueError, match="VecEnv of 1 env"):
        evaluate_on_seeds(policy, make_env(fake.ENV_ID, obs="state", n_envs=2), seeds)


def test_pixels_viewpoint_obs_policy_and_frame_stack(tmp_path):
    from agents.extractors import PixelsViewpointExtractor, dict_policy_kwargs
    from envs.camera import viewpoint7

    kw = {"max_steps": 3}
    base = make_env(fake.ENV_ID, obs="pixels+viewpoint", n_envs=2, seed=5, env_kwargs=kw).venv.venv  # the DummyVecEnv
    env = make_env(fake.ENV_ID, obs="pixels+viewpoint", n_envs=2, seed=5, env_kwargs=kw, frame_stack=2)
    space = env.observation_space
    assert isinstance(space, spaces.Dict)
    assert (
        space["pixels"].shape == (6, 16, 16) and space["pixels"].dtype == np.uint8 and space["viewpoint"].shape == (14,)
    )
    r, o = base.reset(), env.reset()
    np.testing.assert_allclose(o["viewpoint"][:, 7:], viewpoint7(r["viewpoint"]))  # newest view last, 7-d form
    np.testing.assert_array_equal(o["pixels"][:, 3:], r["pixels"].transpose(0, 3, 1, 2))
    assert not o["pixels"][:, :3].any() and not o["viewpoint"][:, :7].any()  # SB3 pads a new episode's stack with zeros
    for _ in range(3):
        o, _, dones, infos = env.step(np.zeros((2, 2), np.float32))
    assert dones.all() and infos[0]["terminal_observation"]["viewpoint"].shape == (14,)
    env.close()
    base.close()
    # the pixel agent's CNN at each size, the viewpoint concatenated
    assert dict_policy_kwargs(64)["features_extractor_kwargs"] == {"cnn": "nature", "cnn_features_dim": 512}
    assert dict_policy_kwargs(32)["features_extractor_kwargs"] == {"cnn": "compact", "cnn_features_dim": 256}

    out = tmp_path / "pv"
    cfg = TrainConfig(
        env_id=fake.ENV_ID,
        obs="pixels+viewpoint",
        steps=32,
        out=str(out),
        n_envs=2,
        eval_freq=32,
        eval_episodes=2,
        frame_stack=2,
        hyperparams=dict(TINY_PPO),
        env_kwargs={"max_steps": 4},
        threads=1,
        progress=False,
        vec_env="dummy",
    )
    done = train_agent(cfg)
    assert done["arm"] == "pixels+viewpoint" and done["timesteps"] == 32
    config = json.loads((out / "config.json").read_text())
    assert config["policy"] == "MultiInputPolicy" and config["frame_stack"] == 2
    extractor = config["resolved_hyperparams"]["policy_kwargs"]["features_extractor_class"]
    assert extractor == "agents.extractors.PixelsViewpointExtractor"
    from stable_baselines3 import PPO

    model = PPO.load(str(out / "model.zip"), device="cpu")
    assert isinstance(model.policy.features_extractor, PixelsViewpointExtractor)
    assert model.policy.features_extractor.features_dim == 256 + 14


def test_per_mode_defaults_identical_and_off_policy_timeouts_handled():
    from agents.config import AGENT_OBS_MODES, ALGOS, DEFAULTS, POLICIES, defaults_for

    for algo in ALGOS:
        settings = {obs: DEFAULTS[(algo, obs)] for obs in AGENT_OBS_MODES}
        ref = settings["state"]
        for obs, d in settings.items():
            assert d.policy == POLICIES[obs]
            same = (d.n_envs, d.hyperparams, d.action_noise_std) == (ref.n_envs, ref.hyperparams, ref.action_noise_std)
            assert same, f"{algo}/{obs} differs from {algo}/state"
    for algo in ("sac", "td3", "ddpg", "dqn"):
        hp = defaults_for(algo, "pixels").hyperparams
        assert not hp.get("optimize_memory_usage", False)
        assert hp.get("replay_buffer_kwargs", {}).get("handle_timeout_termination", True)


def test_vec_env_auto():
    from agents.env_stack import resolve_vec_env

    # subprocesses only for the rendering modes, and only with a core per env worker plus one for the learner
    for obs in ("pixels", "pixels+viewpoint", "repr"):
        assert resolve_vec_env("auto", obs, 8, cpus=16) == "subproc"
        assert (
            resolve_vec_env("auto", obs, 8, cpus=2) == "subproc"
        )  # a run alone on the 2-core machine: measured faster
        assert resolve_vec_env("auto", obs, 8, cpus=1) == "dummy"  # one of two parallel grid runs there
        assert resolve_vec_env("auto", obs, 1, cpus=16) == "dummy"
    assert resolve_vec_env("auto", "state", 8, cpus=64) == "dummy"
    assert resolve_vec_env("dummy", "pixels", 8, cpus=64) == "dummy"
    assert resolve_vec_env("subproc", "state", 1, cpus=1) == "subproc"
    with pytest.raises(ValueError, match="unknown vec_env 'threads'"):
        resolve_vec_env("threads", "state", 2)


def test_vecnormalize_statistics_json_and_evaluation_env(tmp_path):
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import Logger

    from agents.callbacks import EvaluationRecorder, FixedSeedEvalCallback, evaluate_on_seeds
    from agents.checkpoints import load_vecnormalize, save_vecnormalize
    from agents.env_stack import add_normalization

    kw = {"max_steps": 5}
    env = add_normalization(make_env(fake.ENV_ID, obs="state", n_envs=2, seed=0, env_kwargs=kw), "state", True, True)
    eval_env = add_normalization(
        make_env(fake.ENV_ID, obs="state", n_envs=1, env_kwargs=kw), "state", True, True, evaluation=True
    )
    assert not eval_env.training and eval_env.norm_obs and not eval_env.norm_reward
    model = PPO("MlpPolicy", env, seed=0, device="cpu", **TINY_PPO)
    model.set_logger(Logger(None, []))
    model.learn(64)
    assert env.obs_rms.count > 60 and not np.allclose(env.obs_rms.mean, 0)
    # before each evaluation the eval env receives the training statistics; evaluation never changes them
    callback = FixedSeedEvalCallback(eval_env, [7, 8], eval_freq=32, recorder=EvaluationRecorder(tmp_path))
    callback.init_callback(model)
    row = callback.evaluate()
    np.testing.assert_array_equal(eval_env.obs_rms.mean, env.obs_rms.mean)
    np.testing.assert_array_equal(eval_env.obs_rms.var, env.obs_rms.var)
    assert eval_env.obs_rms.count == env.obs_rms.count
    # rewards are reported unnormalised: a zero-action policy scores as on the plain env
    zero = _RecordingPolicy(env.action_space)
    plain = make_env(fake.ENV_ID, obs="state", n_envs=1, env_kwargs=kw)
    assert evaluate_on_seeds(zero, eval_env, [7, 8]).returns == evaluate_on_seeds(zero, plain, [7, 8]).returns
    assert np.isfinite(row["mean_return"])
    # JSON round trip, exact, into a fresh VecNormalize (no pickle)
    save_vecnormalize(tmp_path / "vn.json", env)
    assert json.loads((tmp_path / "vn.json").read_text())["obs_rms"]["count"] == env.obs_rms.count
    fresh = add_normalization(make_env(fake.ENV_ID, obs="state", n_envs=2, env_kwargs=kw), "state", True, True)
    load_vecnormalize(tmp_path / "vn.json", fresh)
    np.testing.assert_array_equal(fresh.obs_rms.mean, env.obs_rms.mean)
    np.testing.assert_array_equal(fresh.obs_rms.var, env.obs_rms.var)
    np.testing.assert_array_equal(fresh.ret_rms.var, env.ret_rms.var)
    only_obs = add_normalization(make_env(fake.ENV_ID, obs="state", n_envs=2, env_kwargs=kw), "state", True, False)
    with pytest.raises(ValueError, match="saved with norm_reward=True, but the env has norm_reward=False"):
        load_vecnormalize(tmp_path / "vn.json", only_obs)
    for e in (env, eval_env, plain, fresh, only_obs):
        e.close()


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_resume_in_process_from_latest_checkpoint(tmp_path):
    out = tmp_path / "state-norm_s0"
    cfg = TrainConfig(
        env_id=fake.ENV_ID,
        obs="state",
        arm="state-norm",
        normalize=True,
        steps=96,
        out=str(out),
        n_envs=2,
        eval_freq=32,
        eval_episodes=2,
        checkpoint_freq=32,
        hyperparams=dict(TINY_PPO),
        env_kwargs={"max_steps": 5},
        threads=1,
        progress=False,
    )
    first = train_agent(cfg)
    assert first["arm"] == "state-norm" and first["resumed_from"] == []
    manifest = json.loads((out / "checkpoints" / "latest.json").read_text())
    assert manifest["step"] == 64 and manifest["files"] == ["model.zip", "vecnormalize.json"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "latest.json",
        "step_000000032",
        "step_000000064",
    ]
    assert (out / "vecnormalize.json").is_file() and list((out / "tb").iterdir())[0].name == "ppo_state-norm_1"
    before = _rows(out / "evaluations.csv")
    assert [int(r["timesteps"]) for r in before] == [0, 32, 64, 96]

    # as if killed after the step-64 checkpoint: no done.json, and a row written after the checkpoint
    (out / "done.json").unlink()
    (out / "model.zip").unlink()
    (out / "checkpoints" / ".tmp-step_000000096").mkdir()  # a checkpoint half-written when the process died
    resumed = train_agent(cfg)
    assert resumed["resumed_from"] == [64] and resumed["timesteps"] == 96
    after = _rows(out / "evaluations.csv")
    assert [int(r["timesteps"]) for r in after] == [0, 32, 64, 96]
    assert after[:3] == before[:3]  # rows up to the checkpoint are kept as they were
    assert not (out / "checkpoints" / ".tmp-step_000000096").exists()
    assert float(after[3]["wall_s"]) >= float(after[2]["wall_s"])
    assert len(list((out / "tb").iterdir())) == 1  # TensorBoard continues in the same run folder
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    events = [e for f in sorted((out / "tb" / "ppo_state-norm_1").iterdir()) for e in EventFileLoader(str(f)).Load()]
    purges = [e.step for e in events if e.HasField("session_log") and e.session_log.status == e.session_log.START]
    assert purges == [65]  # what the killed session logged after the checkpoint is marked stale
    acc = EventAccumulator(str(out / "tb" / "ppo_state-norm_1"))
    acc.Reload()  # one curve: the first session's step-96 point is purged, the resumed session's kept
    assert [e.step for e in acc.Scalars("eval/mean_reward")] == [32, 64, 96]
    assert acc.Scalars("eval/mean_reward")[-1].value == pytest.approx(float(after[3]["mean_return"]), rel=1e-6)

    # other settings: refused with the differing fields; --no-resume starts again
    (out / "done.json").unlink()
    with pytest.raises(
        ValueError, match=r"unfinished run \(checkpoint at step 64\) with other settings: steps: 96 -> 128"
    ):
        train_agent(TrainConfig(**{**cfg.to_dict(), "steps": 128}))
    fresh = train_agent(TrainConfig(**{**cfg.to_dict(), "steps": 128, "resume": False}))
    assert fresh["resumed_from"] == [] and fresh["timesteps"] == 128
    assert [int(r["timesteps"]) for r in _rows(out / "evaluations.csv")] == [0, 32, 64, 96, 128]


def test_off_policy_checkpoint_keeps_replay_buffer_npz(tmp_path):
    from stable_baselines3 import SAC

    from agents.checkpoints import latest_checkpoint, load_replay_buffer

    out = tmp_path / "sac"
    cfg = TrainConfig(
        env_id=fake.ENV_ID,
        obs="state",
        algo="sac",
        steps=50,
        out=str(out),
        eval_freq=25,
        eval_episodes=1,
        checkpoint_freq=20,
        hyperparams={"learning_starts": 10, "batch_size": 8, "buffer_size": 30, "policy_kwargs": {"net_arch": [8]}},
        env_kwargs={"max_steps": 5},
        threads=1,
        progress=False,
    )
    train_agent(cfg)
    ckpt = latest_checkpoint(out)
    assert ckpt is not None and ckpt.step == 40 and ckpt.replay_buffer_path is not None
    assert not (out / "checkpoints" / "step_000000020" / "replay_buffer.npz").exists()  # only the latest keeps one
    model = SAC.load(str(ckpt.model_path), device="cpu")
    assert model.replay_buffer is None or model.replay_buffer.pos == 0
    from agents.env_stack import make_env as mk

    model.set_env(mk(fake.ENV_ID, obs="state", n_envs=1, env_kwargs={"max_steps": 5}))
    model._setup_model()  # allocate an empty buffer of the same size
    buf = model.replay_buffer
    assert buf.handle_timeout_termination and not buf.optimize_memory_usage
    n = load_replay_buffer(ckpt.replay_buffer_path, buf)
    assert n == 30 and buf.full and buf.pos == 10  # 40 transitions through a 30-slot ring
    assert buf.timeouts.sum() > 0  # time-limit truncations are kept apart from terminations
    with np.load(ckpt.replay_buffer_path, allow_pickle=False) as data:
        np.testing.assert_array_equal(data["observations"], buf.observations)


def test_a_grid_share_of_cpus_limits_available_cpus(monkeypatch):
    from agents.config import CPUS_PER_RUN_ENV
    from agents.env_stack import available_cpus, resolve_vec_env

    monkeypatch.setenv(CPUS_PER_RUN_ENV, "1")
    assert available_cpus() == 1
    assert resolve_vec_env("auto", "pixels", 8) == "dummy"
    monkeypatch.setenv(CPUS_PER_RUN_ENV, "lots")
    with pytest.raises(ValueError, match="WM_CPUS_PER_RUN"):
        available_cpus()
