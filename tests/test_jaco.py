"""wm/JacoReach-v0 and the jaco scene generator: real MuJoCo physics and real offscreen rendering."""

from __future__ import annotations

import json
import multiprocessing as mp
import pickle
import warnings
from dataclasses import asdict

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import envs  # noqa: F401  (registers the env ids)
from envs import jaco_model as jm
from envs.camera import CameraPose
from envs.domain import DOMAINS, Domain
from envs.jaco import STATE_DIM, JacoReachEnv, reach_reward
from envs.scenes import SceneRecord, generate_scene

ENV_ID = "wm/JacoReach-v0"
OBS_MODES = ("pixels", "state", "pixels+viewpoint")


def make(**kwargs) -> gym.Env:
    kwargs.setdefault("size", 32)
    return gym.make(ENV_ID, **kwargs)


def pixels_of(obs) -> np.ndarray:
    return obs["pixels"] if isinstance(obs, dict) else obs


def hide_target_render(env: JacoReachEnv) -> np.ndarray:
    """Render the current state with the target moved under the floor, then put it back."""
    d, mocap = env.data, env._ids.target_mocap
    keep = d.mocap_pos[mocap].copy()
    d.mocap_pos[mocap] = (0.0, 0.0, -2.0)
    mujoco.mj_forward(env.model, d)
    image = env.ensure_renderer().render(d, env._pose)
    d.mocap_pos[mocap] = keep
    mujoco.mj_forward(env.model, d)
    return image


def jacobian_action(env: JacoReachEnv, gain: float = 4.0, damping: float = 0.05) -> np.ndarray:
    """Damped least-squares step of the 6 arm joints towards the target, as a velocity action."""
    jacp = np.zeros((3, env.model.nv))
    mujoco.mj_jacSite(env.model, env.data, jacp, None, env._ids.hand_site)
    jac = jacp[:, :6]
    err = env.target_position - env.hand_position
    dq = jac.T @ np.linalg.solve(jac @ jac.T + damping**2 * np.eye(3), gain * err)
    action = np.zeros(jm.N_JOINTS, dtype=np.float32)
    action[:6] = dq / jm.MAX_JOINT_SPEED[:6]
    return np.clip(action, -1.0, 1.0)


# --------------------------------------------------------------------------- API conformance
@pytest.mark.parametrize("obs", OBS_MODES)
def test_gymnasium_and_sb3_checkers_pass(obs):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    # 40 px: SB3 warns below 36 px for its CNN; the moving camera exercises per-step randomness.
    env = make(obs=obs, camera="moving", size=40, render_mode="rgb_array", episode_length=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # infinite Box bounds of the state vector are intended
        check_env(env.unwrapped, skip_render_check=False)
        sb3_check_env(env.unwrapped, warn=False)
    o, info = env.reset(seed=0)
    assert env.observation_space.contains(o)
    assert info["viewpoint"].dtype == np.float32 and info["viewpoint"].shape == (5,)
    env.close()


def test_spaces_and_channel_order():
    env_last = make(obs="pixels+viewpoint", camera="random")
    env_first = make(obs="pixels+viewpoint", camera="random", channel_order="first")
    assert env_last.action_space == gym.spaces.Box(-1, 1, (9,), np.float32)
    assert env_first.observation_space["pixels"].shape == (3, 32, 32)
    a, _ = env_last.reset(seed=5)
    b, _ = env_first.reset(seed=5)
    np.testing.assert_array_equal(a["pixels"].transpose(2, 0, 1), b["pixels"])
    np.testing.assert_array_equal(a["viewpoint"], b["viewpoint"])
    np.testing.assert_array_equal(a["viewpoint"], env_last.unwrapped.viewpoint)

    state_env = make(obs="state")
    s, _ = state_env.reset(seed=5)
    u = state_env.unwrapped
    assert s.shape == (STATE_DIM,) and s.dtype == np.float32
    np.testing.assert_allclose(s[18:21], u.hand_position, atol=1e-6)
    np.testing.assert_allclose(s[21:24], u.target_position, atol=1e-6)
    np.testing.assert_allclose(s[24:27], s[21:24] - s[18:21], atol=1e-6)
    # Same seed -> same task in every observation/camera mode.
    np.testing.assert_allclose(env_last.unwrapped.target_position, u.target_position)
    for e in (env_last, env_first, state_env):
        e.close()


# --------------------------------------------------------------------------- determinism, cameras
def test_same_seed_identical_different_seed_differs():
    def rollout(seed):
        env = make(obs="pixels+viewpoint", camera="moving", domain="real")  # "real" adds pixel noise
        o, _ = env.reset(seed=seed)
        frames, vps = [o["pixels"]], [o["viewpoint"]]
        act_rng = np.random.default_rng(123)
        for _ in range(4):
            o, *_ = env.step(act_rng.uniform(-1, 1, 9).astype(np.float32))
            frames.append(o["pixels"])
            vps.append(o["viewpoint"])
        env.close()
        return np.stack(frames), np.stack(vps)

    f1, v1 = rollout(7)
    f2, v2 = rollout(7)
    f3, v3 = rollout(8)
    assert f1.tobytes() == f2.tobytes() and v1.tobytes() == v2.tobytes()
    assert not np.array_equal(f1[0], f3[0]) and not np.array_equal(v1, v3)


def test_moving_camera_moves_every_step_fixed_does_not():
    moving = make(obs="pixels", camera="moving")
    o, info = moving.reset(seed=1)
    prev_vp, prev_img = info["viewpoint"], o
    zero = np.zeros(9, dtype=np.float32)  # arm holds still: pixels change only through the camera
    for _ in range(4):
        o, _, _, _, info = moving.step(zero)
        assert not np.allclose(info["viewpoint"], prev_vp)
        assert np.abs(info["viewpoint"] - prev_vp).max() < 0.3  # smooth: small per-step change
        assert not np.array_equal(o, prev_img)
        prev_vp, prev_img = info["viewpoint"], o

    fixed = make(obs="pixels", camera="fixed")
    o0, info0 = fixed.reset(seed=1)
    vps = [info0["viewpoint"]]
    for _ in range(3):
        o, _, _, _, info = fixed.step(zero)
        vps.append(info["viewpoint"])
    np.testing.assert_array_equal(np.stack(vps), np.repeat(vps[:1], 4, axis=0))
    _, info_other = fixed.reset(seed=99)  # one pose for every seed
    np.testing.assert_array_equal(info_other["viewpoint"], vps[0])
    # The held arm gives (almost) the same image from the fixed camera.
    assert np.abs(o.astype(int) - o0).mean() < 1.0

    rand = make(obs="state", camera="random")
    _, ia = rand.reset(seed=1)
    rand.step(zero)
    ib = rand.step(zero)[-1]
    _, ic = rand.reset(seed=2)
    np.testing.assert_array_equal(ia["viewpoint"], ib["viewpoint"])  # still within an episode
    assert not np.allclose(ia["viewpoint"], ic["viewpoint"])  # new pose per episode
    for e in (moving, fixed, rand):
        e.close()


def test_viewpoint_is_the_pose_of_the_observation():
    env = make(obs="pixels+viewpoint", camera="moving", size=48)
    o, _ = env.reset(seed=3)
    o, *_ = env.step(np.zeros(9, dtype=np.float32))
    u = env.unwrapped
    again = u.ensure_renderer().render(u.data, CameraPose.from_viewpoint(o["viewpoint"]))
    other = u.ensure_renderer().render(u.data, CameraPose.from_viewpoint(o["viewpoint"] + [0.3, 0, 0, 0.2, 0]))
    assert np.abs(again.astype(int) - o["pixels"]).mean() < 1.0
    assert np.abs(other.astype(int) - o["pixels"]).mean() > 5.0
    env.close()


def test_images_not_blank_and_target_visible_in_fixed_view():
    env = make(obs="pixels", camera="fixed", size=64)
    u = env.unwrapped
    target_rgb = np.array(DOMAINS["sim"].target_rgb) * 255
    for seed in range(3):
        o, _ = env.reset(seed=seed)
        assert o.astype(np.float32).std() > 20.0
        hidden = hide_target_render(u)
        changed = np.abs(o.astype(int) - hidden).max(axis=-1) > 40
        assert changed.sum() >= 4, f"target not visible for seed {seed}"
        # The changed pixels are mostly the target's red (lit or shaded; edges are blended).
        px = o[changed].astype(float)
        red = (px[:, 0] > px[:, 1] + 40) & (px[:, 0] > px[:, 2] + 40)
        assert red.sum() >= 4 and red.mean() >= 0.6, (px, target_rgb)
    env.close()


# --------------------------------------------------------------------------- task
def test_reward_shape():
    radius, margin = jm.TARGET_RADIUS, 0.5
    assert reach_reward(0.0, radius, margin) == 1.0 == reach_reward(radius, radius, margin)
    assert reach_reward(radius + margin, radius, margin) == pytest.approx(0.1)
    d = np.linspace(0, 3, 200)
    r = np.array([reach_reward(x, radius, margin) for x in d])
    assert np.all((r >= 0) & (r <= 1)) and np.all(np.diff(r) <= 0)
    assert r[-1] < 1e-6


def test_scripted_jacobian_controller_solves_the_task():
    env = make(obs="state", episode_length=60)
    u = env.unwrapped
    for seed in range(3):
        _, info = env.reset(seed=seed)
        assert info["distance"] > 0.1  # starts away from the target
        rewards = []
        for _ in range(60):
            _, r, _, _, info = env.step(jacobian_action(u))
            rewards.append(r)
        assert np.mean(rewards[-10:]) >= 0.9, (seed, rewards[-10:])
        assert info["success"]

        # A random policy from the same start earns signal, but far less.
        env.reset(seed=seed)
        random_rewards = [env.step(env.action_space.sample())[1] for _ in range(60)]
        assert 0.0 < np.sum(random_rewards) < 0.7 * np.sum(rewards)
    env.close()


def test_truncation_at_episode_length():
    env = make(obs="state", episode_length=5)
    env.reset(seed=0)
    flags = [env.step(env.action_space.sample())[2:4] for _ in range(5)]
    assert flags == [(False, False)] * 4 + [(False, True)]
    with pytest.raises(RuntimeError, match="reset"):
        env.unwrapped.step(np.zeros(9))
    env.reset(seed=1)
    env.step(np.zeros(9))  # usable again after reset
    env.close()


# --------------------------------------------------------------------------- bad input
def test_nan_inf_and_bad_shape_actions_raise():
    env = make(obs="state")
    env.reset(seed=0)
    for bad in (np.full(9, np.nan), np.array([np.inf] + [0.0] * 8)):
        with pytest.raises(ValueError, match="NaN or inf"):
            env.unwrapped.step(bad)
    with pytest.raises(ValueError, match=r"shape \(9,\)"):
        env.unwrapped.step(np.zeros(6))
    env.close()


def test_out_of_range_actions_are_clipped():
    def final_state(action):
        env = make(obs="state")
        env.reset(seed=4)
        for _ in range(3):
            s, *_ = env.unwrapped.step(action)
        env.close()
        return s

    act = np.array([1, -1, 0.5, -0.5, 1, -1, 1, 1, -1], dtype=np.float32)
    big = act * np.array([7, 3, 1, 1, 50, 2, 9, 1, 4], dtype=np.float32)
    np.testing.assert_array_equal(final_state(act), final_state(big))
    assert not np.array_equal(final_state(act), final_state(act * 0.5))


@pytest.mark.parametrize(
    ("kwargs", "listed"),
    [
        ({"camera": "orbiting"}, "'fixed', 'moving', 'random'"),
        ({"obs": "rgb"}, "'pixels', 'state', 'pixels+viewpoint'"),
        ({"domain": "mars"}, "'sim', 'real', 'real-hard', 'randomised'"),
        ({"channel_order": "middle"}, "'last', 'first'"),
        ({"render_mode": "human"}, "'rgb_array'"),
    ],
)
def test_unknown_options_list_valid_values(kwargs, listed):
    with pytest.raises(ValueError, match="valid values: " + listed.replace("+", r"\+")):
        JacoReachEnv(**kwargs)


def test_bad_sizes_and_reset_options():
    with pytest.raises(ValueError, match="size"):
        JacoReachEnv(size=4)
    env = JacoReachEnv(obs="state")
    with pytest.raises(ValueError, match="'target', 'qpos'"):
        env.reset(seed=0, options={"goal": (0, 0, 0)})
    _, info = env.reset(seed=0, options={"target": (0.3, 0.2, 0.25), "qpos": np.zeros(9)})
    np.testing.assert_allclose(env.target_position, (0.3, 0.2, 0.25))
    np.testing.assert_allclose(env.data.qpos, 0.0)


# --------------------------------------------------------------------------- domains, rendering
def test_domains_change_pixels():
    sim = make(obs="pixels", size=48)
    real = make(obs="pixels", size=48, domain="real")
    a, _ = sim.reset(seed=2)
    b, info_b = real.reset(seed=2)
    assert np.abs(a.astype(int) - b).mean() > 10.0
    assert info_b["domain"] == asdict(DOMAINS["real"])

    custom = make(obs="pixels", size=48, domain=Domain(target_rgb=(0.1, 0.2, 0.95)))
    c, _ = custom.reset(seed=2)
    assert not np.array_equal(a, c)  # only the target colour differs
    assert np.abs(a.astype(int) - c).mean() < 3.0

    rnd = make(obs="pixels", size=48, domain="randomised")
    x, ix = rnd.reset(seed=2)
    y, iy = rnd.reset(seed=3)
    x2, ix2 = rnd.reset(seed=2)
    assert ix["domain"] != iy["domain"] and np.abs(x.astype(int) - y).mean() > 10.0
    assert ix2["domain"] == ix["domain"] and x2.tobytes() == x.tobytes()  # recolouring is complete
    for e in (sim, real, custom, rnd):
        e.close()


def test_render_rgb_array_and_close():
    env = make(obs="pixels", render_mode="rgb_array")
    o, _ = env.reset(seed=0)
    frame = env.render()
    np.testing.assert_array_equal(frame, o)  # same size, no noise: the observation itself
    big = make(obs="state", render_mode="rgb_array", render_size=80)
    big.reset(seed=0)
    image = big.render()
    assert image.shape == (80, 80, 3) and image.dtype == np.uint8 and image.std() > 20
    assert big.unwrapped.renderer is None  # state obs never built the observation renderer
    env.close()
    assert env.unwrapped.renderer is None
    env.reset(seed=0)  # renderer recreated lazily after close
    assert env.unwrapped.renderer is not None
    env.close()
    big.close()


def test_pickle_before_and_after_use():
    env = JacoReachEnv(obs="pixels", camera="moving")
    clone = pickle.loads(pickle.dumps(env))
    a, _ = env.reset(seed=11)
    b, _ = clone.reset(seed=11)
    assert a.tobytes() == b.tobytes()
    env.step(np.ones(9))
    clone2 = pickle.loads(pickle.dumps(env))  # renderer left behind, physics state kept
    assert clone2.renderer is None
    np.testing.assert_array_equal(clone2.hand_position, env.hand_position)
    for e in (env, clone, clone2):
        e.close()


# --------------------------------------------------------------------------- vector envs
@pytest.mark.timeout(180)
def test_async_vector_env_after_parent_rendered():
    # The parent has rendered (earlier tests and this one): forked workers must still render.
    parent = make(obs="pixels")
    parent.reset(seed=0)
    parent.close()
    venv = gym.vector.AsyncVectorEnv([lambda: make(obs="pixels", camera="moving", episode_length=3)] * 2)
    try:
        venv.reset_async(seed=[1, 2])
        obs, info = venv.reset_wait(timeout=60)
        assert obs.shape == (2, 32, 32, 3) and info["viewpoint"].shape == (2, 5)
        assert not np.array_equal(obs[0], obs[1])
        for _ in range(3):
            venv.step_async(venv.action_space.sample())
            obs, rew, term, trunc, info = venv.step_wait(timeout=60)
        assert obs.std() > 20 and rew.shape == (2,) and trunc.all() and not term.any()
    finally:
        venv.close(terminate=True)


@pytest.mark.timeout(180)
def test_sb3_subproc_vec_env():
    from stable_baselines3.common.vec_env import SubprocVecEnv

    # fork keeps the test fast; it is also the case that needs fork-safe rendering.
    start = "fork" if "fork" in mp.get_all_start_methods() else None
    venv = SubprocVecEnv(
        [lambda: make(obs="pixels+viewpoint", camera="moving", channel_order="first")] * 2, start_method=start
    )
    try:
        venv.seed(5)
        obs = venv.reset()
        assert obs["pixels"].shape == (2, 3, 32, 32) and obs["viewpoint"].shape == (2, 5)
        for _ in range(3):
            obs, rew, done, infos = venv.step(np.stack([venv.action_space.sample() for _ in range(2)]))
        assert rew.shape == (2,) and not done.any() and infos[0]["viewpoint"].shape == (5,)
        assert obs["pixels"].std() > 20
    finally:
        venv.close()


# --------------------------------------------------------------------------- scene generator
def test_jaco_scene_generator_shapes_and_determinism():
    rec = generate_scene("jaco", seed=0, index=3, views=5, size=32, task="v0")
    assert isinstance(rec, SceneRecord)
    assert rec.frames.shape == (5, 32, 32, 3) and rec.frames.dtype == np.uint8
    assert rec.cameras.shape == (5, 5) and rec.cameras.dtype == np.float32
    assert rec.extras["qpos"].shape == (9,) and rec.extras["qpos"].dtype == np.float32
    assert rec.extras["target"].shape == (3,) and rec.extras["target"].dtype == np.float32
    meta = json.loads(json.dumps(rec.metadata))
    assert meta["env_id"] == ENV_ID and meta["seed"] == 0 and meta["index"] == 3
    assert meta["domain"]["target_rgb"] == list(DOMAINS["sim"].target_rgb)
    np.testing.assert_allclose(meta["qpos"], rec.extras["qpos"], rtol=1e-6)
    assert rec.frames.reshape(5, -1).std(axis=1).min() > 10  # no blank views
    assert np.all(np.abs(rec.cameras[:, 3]) <= np.pi)

    # A different scene in between must not leak into the next (per-process cached model).
    other = generate_scene("jaco", seed=0, index=4, views=5, size=32, domain="randomised", task="v0")
    again = generate_scene("jaco", seed=0, index=3, views=5, size=32, task="v0")
    assert again.frames.tobytes() == rec.frames.tobytes()
    np.testing.assert_array_equal(again.cameras, rec.cameras)
    assert not np.array_equal(other.extras["qpos"], rec.extras["qpos"])
    assert other.metadata["domain"] != rec.metadata["domain"]


def test_jaco_scene_cameras_trajectory_vs_orbit():
    traj = generate_scene("jaco", seed=1, index=0, views=6, size=16, camera="trajectory", steps_per_view=1, task="v0")
    orbit = generate_scene("jaco", seed=1, index=0, views=6, size=16, camera="orbit", task="v0")
    # Same world, different camera placement.
    np.testing.assert_array_equal(traj.extras["qpos"], orbit.extras["qpos"])
    step = lambda c: np.linalg.norm(np.diff(c[:, :3], axis=0), axis=1)  # noqa: E731
    assert step(traj.cameras).max() < 0.2  # consecutive views along a smooth path
    assert np.median(step(orbit.cameras)) > 0.5  # independent poses on the shell
    centre = np.asarray(jm.ORBIT.centre)
    for cams in (traj.cameras, orbit.cameras):
        r = np.linalg.norm(cams[:, :3] - centre, axis=1)
        assert np.all((r > jm.ORBIT.radius[0] - 1e-3) & (r < jm.ORBIT.radius[1] + 1e-3))
    with pytest.raises(ValueError, match="'trajectory', 'orbit'"):
        generate_scene("jaco", seed=1, index=0, views=2, size=16, camera="spiral", task="v0")
