"""Frozen-encoder observation wrappers: spaces, values, terminal observations, K-view windows,
single-env twin, SubprocVecEnv, bad inputs (agents.wrappers, agents.env_stack)."""

from __future__ import annotations

import agents_fake_env as fake
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    SubprocVecEnv,
    VecTransposeImage,
)

from agents.env_stack import build_single_env, make_env
from agents.wrappers import EncoderObservationWrapper, EncoderVecEnvWrapper, ViewHistory

JACO = "wm/JacoReach-v0"


def _raw_and_wrapped(n_envs=3, max_steps=4, obs="pixels+viewpoint", **wrapper_kwargs):
    """Two identical vec envs (same seeds): one raw, one wrapped with a tiny encoder."""
    enc = fake.tiny_encoder(size=16)

    def mk():
        return DummyVecEnv(
            [lambda: build_single_env(fake.ENV_ID, obs, {"max_steps": max_steps}) for _ in range(n_envs)]
        )

    raw, inner = mk(), mk()
    raw.seed(7)
    inner.seed(7)
    return enc, raw, EncoderVecEnvWrapper(inner, enc, **wrapper_kwargs)


def _frames_vps(obs):
    return (obs["pixels"], obs["viewpoint"]) if isinstance(obs, dict) else (obs, None)


def test_spaces_and_values_equal_encoder_output():
    enc, raw, env = _raw_and_wrapped(append_viewpoint=True)
    space = env.observation_space
    assert isinstance(space, spaces.Box) and space.shape == (8 + 7,) and space.dtype == np.float32
    assert np.isneginf(space.low[:8]).all() and (space.low[8:] == [-10, -10, -10, -1, -1, -1, -1]).all()
    rng = np.random.default_rng(0)
    o_raw, o = raw.reset(), env.reset()
    for _ in range(6):
        f, v = _frames_vps(o_raw)
        expected = np.concatenate([enc.encode_numpy(f, v), fake_viewpoint7(v)], axis=1)
        np.testing.assert_allclose(o, expected, rtol=1e-5, atol=1e-5)
        assert env.observation_space.contains(o[0])
        a = rng.uniform(-1, 1, (3, 2)).astype(np.float32)
        o_raw, *_ = raw.step(a)
        o, *_ = env.step(a)


def fake_viewpoint7(v):
    from envs.camera import viewpoint7

    return viewpoint7(v)


def test_terminal_observation_is_encoded():
    enc, raw, env = _raw_and_wrapped(max_steps=3)
    raw.reset(), env.reset()
    a = np.zeros((3, 2), np.float32)
    for _ in range(3):
        _, _, d_raw, i_raw = raw.step(a)
        _, _, d, infos = env.step(a)
    assert d.all() and d_raw.all()
    for i in range(3):
        term = infos[i]["terminal_observation"]
        assert term.shape == (8,) and term.dtype == np.float32
        t_raw = i_raw[i]["terminal_observation"]
        expected = enc.encode_numpy(t_raw["pixels"][None], t_raw["viewpoint"][None])[0]
        np.testing.assert_allclose(term, expected, rtol=1e-5, atol=1e-5)


def test_k_view_aggregation_restarts_at_episode_boundaries():
    k = 3
    enc, raw, env = _raw_and_wrapped(n_envs=2, max_steps=4, context_views=k, aggregate="sum")
    o_raw, o = raw.reset(), env.reset()
    history: list[list[np.ndarray]] = [[], []]

    def push(i, feat):
        history[i].append(feat)
        return np.sum(history[i][-k:], axis=0)

    feats = enc.encode_numpy(*_frames_vps(o_raw))
    np.testing.assert_allclose(o, np.stack([push(i, feats[i]) for i in range(2)]), rtol=1e-5, atol=1e-5)
    boundaries = 0
    for _ in range(10):  # crosses two episode ends (episodes of 4 steps)
        a = np.zeros((2, 2), np.float32)
        o_raw, _, d_raw, i_raw = raw.step(a)
        o, _, d, infos = env.step(a)
        assert (d == d_raw).all()
        feats = enc.encode_numpy(*_frames_vps(o_raw))
        expected = []
        for i in range(2):
            if d[i]:
                boundaries += 1
                t = i_raw[i]["terminal_observation"]
                t_feat = enc.encode_numpy(t["pixels"][None], t["viewpoint"][None])[0]
                # the terminal observation aggregates the last K views of its own episode only
                np.testing.assert_allclose(infos[i]["terminal_observation"], push(i, t_feat), rtol=1e-5, atol=1e-5)
                history[i] = []
            expected.append(push(i, feats[i]))
        np.testing.assert_allclose(o, np.stack(expected), rtol=1e-5, atol=1e-5)
    assert boundaries >= 4
    # after a reset the first observation equals a single view's features (no carry-over)
    o_raw, o = raw.reset(), env.reset()
    np.testing.assert_allclose(o, enc.encode_numpy(*_frames_vps(o_raw)), rtol=1e-5, atol=1e-5)


def test_mean_aggregation_and_view_history():
    h = ViewHistory(n_envs=1, context_views=2, feature_dim=1, aggregate="mean")
    assert h.push(np.array([[2.0]]))[0, 0] == 2.0
    assert h.push(np.array([[4.0]]))[0, 0] == 3.0
    assert h.peek(0, np.array([10.0]))[0] == 7.0  # (4 + 10) / 2, not stored
    assert h.push(np.array([[6.0]]))[0, 0] == 5.0
    h.clear(np.array([True]))
    assert h.push(np.array([[1.0]]))[0, 0] == 1.0


def test_viewpoint_from_info_matches_dict_observation():
    enc, raw, env_dict = _raw_and_wrapped(n_envs=2)
    _, _, env_info = _raw_and_wrapped(n_envs=2, obs="pixels")  # image Box obs; viewpoint from info
    o1, o2 = env_dict.reset(), env_info.reset()
    np.testing.assert_allclose(o1, o2, rtol=1e-6)
    terminals = 0
    for _ in range(6):  # includes an auto-reset (reset_infos carry the new episode's viewpoint)
        a = np.full((2, 2), 0.3, np.float32)
        o1, _, d, i1 = env_dict.step(a)
        o2, _, _, i2 = env_info.step(a)
        np.testing.assert_allclose(o1, o2, rtol=1e-6)
        for i in np.flatnonzero(d):
            np.testing.assert_allclose(i1[i]["terminal_observation"], i2[i]["terminal_observation"], rtol=1e-6)
            terminals += 1
    assert terminals == 2


def test_single_env_wrapper_matches_vec_wrapper():
    enc = fake.tiny_encoder(size=16)
    single = EncoderObservationWrapper(
        build_single_env(fake.ENV_ID, "pixels+viewpoint", {"max_steps": 4}), enc, context_views=2
    )
    vec = EncoderVecEnvWrapper(
        DummyVecEnv([lambda: build_single_env(fake.ENV_ID, "pixels+viewpoint", {"max_steps": 4})]), enc, context_views=2
    )
    assert single.observation_space == vec.observation_space
    vec.seed(3)
    o_v = vec.reset()
    o_s, _ = single.reset(seed=3)
    np.testing.assert_allclose(o_s, o_v[0], rtol=1e-6)
    for _ in range(3):
        a = np.array([0.5, -0.5], np.float32)
        o_s, *_ = single.step(a)
        o_v, *_ = vec.step(a[None])
        np.testing.assert_allclose(o_s, o_v[0], rtol=1e-6)


def test_make_env_stacks_for_each_obs_mode_on_jaco():
    kw = {"camera": "moving", "episode_length": 8}
    pix = make_env(JACO, obs="pixels", n_envs=2, seed=0, env_kwargs={**kw, "size": 16})
    assert isinstance(pix, VecTransposeImage) and pix.observation_space.shape == (3, 16, 16)
    assert pix.reset().dtype == np.uint8
    st = make_env(JACO, obs="state", n_envs=2, seed=0, env_kwargs=kw)
    assert st.observation_space.shape == (27,) and st.reset().shape == (2, 27)
    for v in (pix, st):
        v.close()


def test_tiny_gqn_checkpoint_on_jaco_subproc_equals_dummy(tmp_path):
    """A saved GQN loaded with worldmodel.load_encoder; SubprocVecEnv gives the same features."""
    import worldmodel

    ckpt = fake.save_tiny_gqn(tmp_path / "gqn", size=16)
    enc = worldmodel.load_encoder(str(ckpt))
    kw = {"camera": "moving", "episode_length": 5}
    dummy = make_env(JACO, obs="repr", encoder=enc, n_envs=2, seed=1, env_kwargs=kw)
    sub = make_env(JACO, obs="repr", encoder=str(ckpt), n_envs=2, seed=1, env_kwargs=kw, vec_env="subproc")
    try:
        assert isinstance(sub.venv, SubprocVecEnv)
        assert sub.observation_space.shape == (enc.feature_dim,)
        o_d, o_s = dummy.reset(), sub.reset()
        np.testing.assert_allclose(o_d, o_s, rtol=1e-5, atol=1e-6)
        a = np.zeros((2, 9), np.float32)
        for _ in range(5):
            o_d, _, d_d, i_d = dummy.step(a)
            o_s, _, d_s, i_s = sub.step(a)
            np.testing.assert_allclose(o_d, o_s, rtol=1e-5, atol=1e-6)
        assert d_s.all() and i_s[0]["terminal_observation"].shape == (enc.feature_dim,)
        np.testing.assert_allclose(i_d[1]["terminal_observation"], i_s[1]["terminal_observation"], rtol=1e-5, atol=1e-6)
    finally:
        dummy.close()
        sub.close()


def test_bad_inputs_give_clear_errors():
    enc = fake.tiny_encoder(size=16)
    with pytest.raises(ValueError, match="unknown obs mode 'rgb'.*'pixels', 'repr', 'state'"):
        make_env(fake.ENV_ID, obs="rgb")
    with pytest.raises(ValueError, match="needs an encoder"):
        make_env(fake.ENV_ID, obs="repr")
    with pytest.raises(ValueError, match="only used with obs='repr'"):
        make_env(fake.ENV_ID, obs="pixels", encoder=enc)
    with pytest.raises(ValueError, match="unknown vec_env 'threads'"):
        make_env(fake.ENV_ID, obs="state", vec_env="threads")
    with pytest.raises(ValueError, match=r"takes 16x16 images but the env produces 32x32; make the env with size=16"):
        make_env(fake.ENV_ID, obs="repr", encoder=enc, env_kwargs={"size": 32})
    with pytest.raises(ValueError, match="uint8 image space"):
        EncoderVecEnvWrapper(DummyVecEnv([lambda: build_single_env(fake.ENV_ID, "state", {})]), enc)
    with pytest.raises(TypeError, match="FrozenEncoder"):
        EncoderVecEnvWrapper(DummyVecEnv([lambda: build_single_env(fake.ENV_ID, "pixels", {})]), torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="context_views must be >= 1"):
        make_env(fake.ENV_ID, obs="repr", encoder=enc, context_views=0)


@pytest.mark.parametrize("algo", ["A2C", "SAC", "TD3", "DDPG"])
def test_other_sb3_algorithms_train_on_features(algo):
    import stable_baselines3 as sb3

    enc = fake.tiny_encoder(size=16)
    env = make_env(
        fake.ENV_ID, obs="repr", encoder=enc, n_envs=2 if algo == "A2C" else 1, seed=0, env_kwargs={"max_steps": 6}
    )
    kwargs = {"n_steps": 4} if algo == "A2C" else {"learning_starts": 8, "buffer_size": 64, "batch_size": 8}
    from stable_baselines3.common.logger import Logger

    model = getattr(sb3, algo)("MlpPolicy", env, seed=0, device="cpu", **kwargs)
    model.set_logger(Logger(None, []))  # no SB3 log folder in /tmp
    model.learn(24)
    assert model.num_timesteps >= 24
    assert model.observation_space == env.observation_space
    env.close()
