"""wm/JacoReach-v1: the learnable reach task, its expert, its views (real MuJoCo physics and rendering)."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the env ids)
from envs import jaco_model as jm
from envs import jaco_v1 as v1
from envs.experts import has_expert, make_expert
from envs.jaco_expert import JacoReachExpert, zero_action
from envs.jaco_views import jaco_view_stats
from envs.scenes import generate_scene

ENV_ID = "wm/JacoReach-v1"


def make(**kwargs) -> gym.Env:
    kwargs.setdefault("size", 32)
    return gym.make(ENV_ID, **kwargs)


def run_episode(env: gym.Env, seed: int, policy) -> tuple[float, dict, int]:
    env.reset(seed=seed)
    total, steps, done, info = 0.0, 0, False, {}
    while not done:
        _, r, term, trunc, info = env.step(policy())
        total += r
        steps += 1
        done = term or trunc
    return total, info, steps


@pytest.mark.parametrize("obs", ["pixels", "state", "pixels+viewpoint"])
def test_gymnasium_and_sb3_checkers_pass(obs):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(v1.JacoReachV1Env(obs=obs, size=32), skip_render_check=True)
        sb3_check_env(v1.JacoReachV1Env(obs=obs, size=32, camera="moving"), warn=False)


def test_spec_spaces_and_state_layout():
    spec = gym.spec(ENV_ID)
    assert spec.max_episode_steps == v1.EPISODE_STEPS == 100
    env = make(obs="state")
    assert env.action_space.shape == (6,) and env.observation_space.shape == (27,)
    obs, info = env.reset(seed=3)
    u = env.unwrapped
    q = u.data.qpos[:6]
    np.testing.assert_allclose(obs[:6], np.sin(q), atol=1e-6)
    np.testing.assert_allclose(obs[6:12], np.cos(q), atol=1e-6)
    np.testing.assert_allclose(obs[18:21], u.hand_position, atol=1e-6)
    np.testing.assert_allclose(obs[21:24], u.target_position, atol=1e-6)
    np.testing.assert_allclose(obs[24:27], u.target_position - u.hand_position, atol=1e-6)
    assert set(info) >= {"is_success", "success", "distance", "viewpoint", "domain"}

    fingers = make(obs="state", fingers=True)
    assert fingers.action_space.shape == (9,) and fingers.observation_space.shape == (33,)
    assert fingers.reset(seed=0)[0].shape == (33,)


def test_fingers_hold_without_finger_actions_and_move_with_them():
    env = make(obs="state")
    env.reset(seed=0)
    f0 = env.unwrapped.data.qpos[6:9].copy()
    for _ in range(10):
        env.step(np.ones(6, dtype=np.float32))
    np.testing.assert_allclose(env.unwrapped.data.qpos[6:9], f0, atol=0.02)
    env9 = make(obs="state", fingers=True)
    env9.reset(seed=0)
    g0 = env9.unwrapped.data.qpos[6:9].copy()
    for _ in range(10):
        env9.step(np.r_[np.zeros(6), np.ones(3)].astype(np.float32))
    assert np.all(env9.unwrapped.data.qpos[6:9] > g0 + 0.2)


def test_workspace_start_and_no_episode_starts_solved():
    env = make(obs="state")
    for seed in range(60):
        _, info = env.reset(seed=seed)
        u = env.unwrapped
        t, h = u.target_position, u.hand_position
        assert np.all(t >= v1.TARGET_BOX[:, 0]) and np.all(t <= v1.TARGET_BOX[:, 1])
        assert np.all(h >= v1.START_BOX[:, 0] - 1e-9) and np.all(h <= v1.START_BOX[:, 1] + 1e-9)
        assert info["distance"] >= v1.START_MIN_DISTANCE and not info["is_success"]
        assert u.data.ncon == 0


def test_time_limit_is_the_registered_max_episode_steps():
    env = make(obs="state")
    assert run_episode(env, 0, lambda: np.zeros(6, np.float32))[2] == 100
    short = gym.make(ENV_ID, obs="state", max_episode_steps=30)
    assert run_episode(short, 0, lambda: np.zeros(6, np.float32))[2] == 30
    long = gym.make(ENV_ID, obs="state", max_episode_steps=150)
    assert run_episode(long, 0, lambda: np.zeros(6, np.float32))[2] == 150
    # Constructed directly: 100 steps, and stepping past the end raises.
    direct = v1.JacoReachV1Env(obs="state")
    assert run_episode(direct, 0, lambda: np.zeros(6, np.float32))[2] == 100
    with pytest.raises(RuntimeError, match="episode is over"):
        direct.step(np.zeros(6, np.float32))


def test_same_seed_same_task_in_every_mode_and_identical_pixels():
    a, b = make(obs="pixels", camera="moving"), make(obs="pixels", camera="moving")
    s = make(obs="state", camera="fixed")  # the camera mode does not change the task either
    oa, _ = a.reset(seed=11)
    ob, _ = b.reset(seed=11)
    s.reset(seed=11)
    np.testing.assert_array_equal(oa, ob)
    np.testing.assert_array_equal(a.unwrapped.target_position, s.unwrapped.target_position)
    np.testing.assert_array_equal(a.unwrapped.data.qpos, s.unwrapped.data.qpos)
    act = np.full(6, 0.3, np.float32)
    np.testing.assert_array_equal(a.step(act)[0], b.step(act)[0])
    oc, _ = a.reset(seed=12)
    assert not np.array_equal(oc, ob)


def test_reward_long_tail_shape():
    r = v1.long_tail_reward
    assert r(0.0) == 1.0 == r(jm.TARGET_RADIUS)
    assert r(jm.TARGET_RADIUS + v1.REWARD_MARGIN) == pytest.approx(0.1)
    d = np.linspace(0.0, 1.5, 300)
    vals = np.array([r(x) for x in d])
    assert np.all(np.diff(vals) <= 0) and np.all(vals > 0)
    assert r(0.6) > 0.01  # still signal across the workspace
    assert np.all(np.diff(vals[d > 0.6]) < 0)  # and still sloped there


def test_expert_solves_the_task_and_zero_action_does_not():
    env = make(obs="state")
    expert = make_expert(env)
    assert isinstance(expert, JacoReachExpert) and has_expert(env)
    zero = zero_action(env)
    exp_returns, zero_returns, successes = [], [], []
    for seed in range(20):
        ret, info, _ = run_episode(env, 1_000 + seed, expert.act)
        exp_returns.append(ret)
        successes.append(info["is_success"])
        zero_returns.append(run_episode(env, 1_000 + seed, lambda: zero)[0])
    assert np.mean(successes) >= 0.95
    assert np.min(exp_returns) > 75.0  # reaches within ~25 of the 100 steps and stays
    assert np.mean(zero_returns) < 0.3 * np.mean(exp_returns)
    action, state = expert.predict(None)
    assert action.shape == (6,) and action.dtype == np.float32 and np.all(np.abs(action) <= 1) and state is None


def test_expert_rejects_other_envs_and_bad_gains():
    maze = gym.make("wm/Maze-v0", obs="state")
    assert not has_expert(maze)
    with pytest.raises(ValueError, match="JacoReach"):
        make_expert(maze)
    with pytest.raises(TypeError, match="JacoReach"):
        JacoReachExpert(maze)
    with pytest.raises(ValueError, match="gain"):
        JacoReachExpert(make(obs="state"), gain=0.0)


@pytest.mark.parametrize(
    "kwargs, listed",
    [({"camera": "orbit"}, "'moving'"), ({"obs": "rgb"}, "'state'"), ({"domain": "mars"}, "'real'")],
)
def test_bad_options_list_valid_values(kwargs, listed):
    with pytest.raises(ValueError, match=listed):
        make(**kwargs)


def test_bad_actions_raise():
    env = make(obs="state")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        env.step(np.zeros(9, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.full(6, np.nan, np.float32))


def test_room_walls_are_rendered_instead_of_void():
    env = make(obs="pixels", size=48, camera="fixed")
    frame, _ = env.reset(seed=0)
    wall = np.asarray(env.unwrapped.domain.wall_rgb)
    # The top rows show the room's far walls, not black void.
    top = frame[:6].reshape(-1, 3).astype(np.float64)
    assert top.mean() > 60
    v0 = gym.make("wm/JacoReach-v0", obs="pixels", size=48, camera="fixed").reset(seed=0)[0]
    assert v0[:6].mean() < top.mean()
    # Walls take the domain's wall colour (recoloured without recompiling).
    wall_mat = env.unwrapped._ids.materials["wall"]
    np.testing.assert_allclose(env.unwrapped.model.mat_rgba[wall_mat, :3], wall, atol=1e-6)


def test_views_keep_the_arm_in_frame_and_the_target_visible():
    stats = jaco_view_stats(ENV_ID, camera="moving", size=64, episodes=6, every=5)
    assert stats.frames == 6 * 20
    assert stats.arm_clipped <= 0.05
    assert stats.target_visible >= 0.9
    assert stats.target_pixels_median >= 6  # a ~5 cm sphere spans a few pixels at 64 px


def test_v1_scenes_show_the_v1_world():
    rec = generate_scene("jaco", seed=0, index=2, views=3, size=32)
    assert rec.metadata["env_id"] == ENV_ID and rec.metadata["task"] == "v1"
    t = np.asarray(rec.metadata["target"])
    assert np.all(t >= v1.TARGET_BOX[:, 0]) and np.all(t <= v1.TARGET_BOX[:, 1])
    again = generate_scene("jaco", seed=0, index=2, views=3, size=32)
    np.testing.assert_array_equal(rec.frames, again.frames)
    old = generate_scene("jaco", seed=0, index=2, views=3, size=32, task="v0")
    assert old.metadata["env_id"] == "wm/JacoReach-v0"
    with pytest.raises(ValueError, match="'v1'"):
        generate_scene("jaco", seed=0, index=0, views=1, size=32, task="v2")


def test_target_marker_sits_on_the_floor_under_the_target_and_changes_only_pixels():
    plain, marked = (
        make(obs="pixels", camera="random", size=64),
        make(obs="pixels", camera="random", size=64, target_marker=True),
    )
    ids = marked.unwrapped._ids
    assert plain.unwrapped._ids.marker_mocap == -1 and ids.marker_mocap >= 0
    changed = 0
    for seed in range(4):
        a, _ = plain.reset(seed=seed)
        b, _ = marked.reset(seed=seed)
        target = marked.unwrapped.target_position
        np.testing.assert_allclose(marked.unwrapped.data.mocap_pos[ids.marker_mocap], [target[0], target[1], 0.0])
        np.testing.assert_allclose(plain.unwrapped.target_position, target)  # same task for a seed
        changed += int(np.abs(a.astype(int) - b.astype(int)).sum() > 0)
        # the reset option moves the marker too
        marked.reset(seed=seed, options={"target": [0.5, -0.1, 0.3]})
        np.testing.assert_allclose(marked.unwrapped.data.mocap_pos[ids.marker_mocap], [0.5, -0.1, 0.0])
    assert changed >= 3  # the disc is visible in (almost) every view
    # its colour is a darker shade of the target's, set by the domain
    mat = ids.materials["target_marker"]
    np.testing.assert_allclose(
        marked.unwrapped.model.mat_rgba[mat, :3],
        jm.MARKER_SHADE * np.asarray(marked.unwrapped.domain.target_rgb),
        atol=1e-6,
    )
    s1 = make(obs="state", target_marker=True).reset(seed=3)[0]
    np.testing.assert_array_equal(s1, make(obs="state").reset(seed=3)[0])


def test_scenes_with_the_target_marker():
    rec = generate_scene("jaco", seed=0, index=1, views=2, size=32, target_marker=True)
    plain = generate_scene("jaco", seed=0, index=1, views=2, size=32)
    assert rec.metadata["target_marker"] is True and plain.metadata["target_marker"] is False
    np.testing.assert_array_equal(rec.extras["target"], plain.extras["target"])
    assert np.abs(rec.frames.astype(int) - plain.frames.astype(int)).sum() > 0
