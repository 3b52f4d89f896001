"""wm/Maze-v0, the maze layout generator and the maze scene generator (real MuJoCo rendering)."""

from __future__ import annotations

import gc
import math
import pickle
import warnings
from functools import partial

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the environments)
from envs.maze import MazeEnv
from envs.maze_layout import (
    FREE,
    MAP_COLOURS,
    WALL,
    GridGeometry,
    bfs_distances,
    cell_at,
    cell_centre,
    count_rooms,
    generate_maze,
    shortest_path,
    wall_rectangles,
)
from envs.scenes import generate_scene

SMALL = 16  # image size for tests that do not look at content


def make(**kwargs) -> gym.Env:
    kwargs.setdefault("size", SMALL)
    return gym.make("wm/Maze-v0", **kwargs)


def bfs_policy(env: MazeEnv) -> int:
    """Turn to face the next cell of a shortest path to the goal, then move forward."""
    x, y, heading = env.agent_pose
    layout = env.layout
    path = shortest_path(layout.grid, env.agent_cell, layout.goal)
    nxt = path[1] if len(path) > 1 else path[0]
    tx, ty = env.world.to_world(*cell_centre(layout.size, nxt))
    error = (math.atan2(ty - y, tx - x) - heading + math.pi) % (2 * math.pi) - math.pi
    if abs(error) <= 0.5 * env.turn_step + 1e-9:
        return 0
    return 1 if error > 0 else 2


# --------------------------------------------------------------------------- layouts


def test_layout_properties_over_many_seeds():
    grids = set()
    for seed in range(150):
        m = generate_maze(seed)
        assert m.grid.shape == (7, 7) and m.grid.dtype == np.uint8
        assert set(np.unique(m.grid)) <= {FREE, WALL}
        assert 1 <= len(m.rooms) <= 2
        assert count_rooms(m.grid) == len(m.rooms)  # recounted from the grid alone
        for room in m.rooms:
            assert all(m.grid[c] == FREE for c in room.cells())
        free = m.grid == FREE
        dist = bfs_distances(m.grid, m.free_cells()[0])
        assert np.all(dist[free] >= 0), f"seed {seed}: unreachable free cell"
        assert m.grid[m.goal] == FREE
        # Wall boxes: disjoint rectangles covering exactly the wall cells, far fewer than cells.
        cover = np.zeros((7, 7), dtype=int)
        rects = wall_rectangles(m.grid)
        for r0, c0, r1, c1 in rects:
            cover[r0 : r1 + 1, c0 : c1 + 1] += 1
        assert np.array_equal(cover, m.grid.astype(int))
        assert len(rects) < max(1, int(m.grid.sum()))
        assert np.array_equal(generate_maze(seed).grid, m.grid) and generate_maze(seed).appearance == m.appearance
        grids.add(m.grid.tobytes())
    assert len(grids) >= 140  # different seeds give different mazes


def test_grid_geometry_collision_and_rays():
    grid = np.zeros((7, 7), dtype=np.uint8)
    grid[3, 4] = WALL  # wall square gx in [4, 5), gy in [3, 4)
    geo = GridGeometry(grid)
    # Head-on into the wall: stops one radius short, flagged as a collision.
    x, y, hit = geo.move_disc(3.5, 3.5, 2.0, 0.0, 0.2)
    assert hit and x == pytest.approx(3.8) and y == pytest.approx(3.5)
    # Diagonal into the wall: the normal part is removed, the tangential part is kept (slide).
    x, y, hit = geo.move_disc(3.7, 3.3, 0.3, 0.3, 0.2)
    assert hit and x == pytest.approx(3.8) and y == pytest.approx(3.6)
    # The outer boundary is a wall too.
    x, y, hit = geo.move_disc(0.5, 0.5, -3.0, 0.0, 0.2)
    assert hit and x == pytest.approx(0.2)
    assert geo.ray_distance(3.5, 3.5, 0.0, 10.0) == pytest.approx(0.5)
    assert geo.ray_distance(3.5, 3.5, math.pi, 10.0) == pytest.approx(3.5)
    assert geo.ray_distance(3.5, 3.5, math.pi, 2.0) == pytest.approx(2.0)
    assert geo.ray_distance(0.5, 0.5, math.atan2(1, 2), 20.0) == pytest.approx(math.hypot(6.5, 3.25))
    assert geo.ray_distance(3.5, 2.5, math.atan2(1, 1.5), 20.0) == pytest.approx(math.hypot(0.75, 0.5))  # into the wall


# --------------------------------------------------------------------------- API


@pytest.mark.parametrize("obs", ["pixels", "state", "pixels+viewpoint"])
def test_api_and_both_checkers(obs):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    for action_type in ("discrete", "continuous"):
        env = make(obs=obs, size=32, render_mode="rgb_array", action_type=action_type)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SB3 warns that 32 px is small for its CNN
            check_env(env.unwrapped, skip_render_check=False)
            sb3_check_env(env.unwrapped)
        o, info = env.reset(seed=3)
        assert env.observation_space.contains(o)
        for _ in range(3):
            o, r, term, trunc, info = env.step(env.action_space.sample())
            assert env.observation_space.contains(o) and isinstance(r, float)
            assert info["viewpoint"].dtype == np.float32 and info["viewpoint"].shape == (5,)
            assert np.array_equal(info["viewpoint"], env.unwrapped.viewpoint)
            assert {"maze_seed", "goal_distance", "collided", "is_success"} <= set(info)
        frame = env.render()
        assert frame.shape == (32, 32, 3) and frame.dtype == np.uint8
        env.close()
    if obs == "state":
        u = make(obs="state").unwrapped
        u.reset(seed=0)
        s = u.state_vector()
        x, y, h = u.agent_pose
        assert np.allclose(s[:4], [x, y, math.cos(h), math.sin(h)], atol=1e-6)
        assert np.all((s[6:] > 0) & (s[6:] <= 7.0))


def test_channel_first_and_pickle_before_and_after_render():
    env = MazeEnv(size=SMALL, channel_order="first")
    blob = pickle.dumps(env)  # nothing rendered yet
    o, _ = env.reset(seed=1)
    assert o.shape == (3, SMALL, SMALL)
    clone = pickle.loads(pickle.dumps(env))  # the GL context stays behind
    assert clone._renderer is None
    o2, *_ = clone.step(1)
    o1, *_ = env.step(1)
    assert np.array_equal(o1, o2)
    env.close()
    clone.close()
    assert env._renderer is None
    pickle.loads(blob).close()


def test_determinism_same_seed_and_different_seeds():
    actions = [0, 1, 0, 0, 2, 0, 1, 1, 0, 0]

    def rollout(seed, domain="sim"):
        env = make(domain=domain)
        o, info = env.reset(seed=seed)
        frames, seeds = [o.copy()], [info["maze_seed"]]
        for a in actions:
            o, *_, info = env.step(a)
            frames.append(o.copy())
        env.reset()
        seeds.append(env.unwrapped.layout.seed)
        env.close()
        return np.stack(frames), seeds

    a, sa = rollout(7, domain="real")  # "real" adds pixel noise: drawn from its own seeded generator
    b, sb = rollout(7, domain="real")
    assert a.tobytes() == b.tobytes() and sa == sb
    c, sc = rollout(8)
    assert sc[0] != sa[0] and not np.array_equal(generate_maze(sc[0]).grid, generate_maze(sa[0]).grid)
    assert sa[0] != sa[1]  # default: a new maze per episode


def test_pixels_and_state_draw_the_same_episodes_with_pixel_noise():
    """domain="real" adds camera noise; it has its own generator, so obs modes see the same mazes and starts."""

    def episodes(obs):
        env = make(obs=obs, domain="real")
        u = env.unwrapped
        seen = []
        for e in range(4):
            _, info = env.reset(seed=11) if e == 0 else env.reset()
            for a in (0, 1, 0, 2, 0):
                _, _, term, trunc, info = env.step(a)
                if term or trunc:
                    break
            pose = tuple(round(v, 9) for v in u.agent_pose)
            seen.append((info["maze_seed"], u.layout.goal, pose, info["goal_distance"]))
        env.close()
        return seen

    pixels, state = episodes("pixels"), episodes("pixels+viewpoint")
    assert pixels == state == episodes("state")
    assert len({s[0] for s in pixels}) == 4  # a new maze per episode
    env = make(domain="real")
    noisy = [env.reset(seed=3)[0].astype(int), env.reset(seed=3)[0].astype(int)]
    assert np.array_equal(noisy[0], noisy[1])  # the noise is seeded too
    clean = make(domain="real", render_mode="rgb_array")
    clean.reset(seed=3)
    assert np.abs(noisy[0] - clean.render().astype(int)).mean() > 0.5  # and it is there
    env.close()
    clean.close()


def test_step_after_episode_end_raises():
    env = make(obs="state")
    u = env.unwrapped
    with pytest.raises(RuntimeError, match="reset"):
        u.step(0)  # before any reset
    env.reset(seed=0)
    while True:
        *_, term, trunc, info = env.step(bfs_policy(u))
        if term or trunc:
            break
    assert term and info["is_success"] and info["success"]  # "success": alias of SB3's "is_success"
    with pytest.raises(RuntimeError, match="terminated or truncated.*reset"):
        env.step(0)
    env.reset()
    assert not env.step(1)[2]  # a reset starts a new episode
    short = MazeEnv(obs="state", max_steps=2)
    short.reset(seed=0)
    short.step(1)
    assert short.step(1)[3]  # truncated
    with pytest.raises(RuntimeError, match="call reset"):
        short.step(1)


def test_maze_selection_options():
    env = make(obs="state", maze_seed=123)
    assert all(env.reset(seed=s)[1]["maze_seed"] == 123 for s in range(3))
    assert env.reset(options={"maze_seed": 9})[1]["maze_seed"] == 9
    assert env.reset()[1]["maze_seed"] == 123
    env = make(obs="state", fixed_maze=True)
    first = env.reset(seed=0)[1]["maze_seed"]
    assert all(env.reset()[1]["maze_seed"] == first for _ in range(3))
    assert env.reset(seed=0)[1]["maze_seed"] == first
    with pytest.raises(ValueError, match="valid keys: maze_seed"):
        env.reset(options={"maze": 3})
    with pytest.raises(ValueError, match="maze_seed"):
        env.reset(options={"maze_seed": -1})


# --------------------------------------------------------------------------- behaviour


@pytest.mark.parametrize("seed", [0, 1, 3])
def test_shortest_path_agent_reaches_goal(seed):
    env = make(obs="state")
    _, info = env.reset(seed=seed)
    u = env.unwrapped
    start_distance = info["goal_distance"]
    assert start_distance >= 1
    total, steps = 0.0, 0
    while True:
        _, r, term, trunc, info = env.step(bfs_policy(u))
        total += r
        steps += 1
        if term or trunc:
            break
    assert term and not trunc and info["is_success"]
    assert total == pytest.approx(1.0 - 0.01 * (steps - 1)) and total > 0
    gx, gy = u.world.to_world(*cell_centre(7, u.layout.goal))
    assert math.hypot(u.agent_pose[0] - gx, u.agent_pose[1] - gy) < u.reach_radius


def test_walls_are_never_crossed():
    env = make(obs="state", actions="full")
    u = env.unwrapped
    env.reset(seed=5)
    geo = GridGeometry(u.layout.grid)
    rng = np.random.default_rng(0)
    collided = 0
    prev = u.agent_cell
    for _t in range(300):
        # Long runs of "forward" (and some strafing) push the agent into walls again and again.
        a = 0 if rng.random() < 0.7 else int(rng.integers(1, 6))
        _, _, term, trunc, info = env.step(a)
        collided += info["collided"]
        gx, gy = u.world.to_grid(*u.agent_pose[:2])
        assert geo.clearance(gx, gy) >= u.agent_radius - 1e-6
        cell = u.agent_cell
        assert u.layout.grid[cell] == FREE
        assert abs(cell[0] - prev[0]) + abs(cell[1] - prev[1]) <= 2  # moved to a neighbour at most
        if abs(cell[0] - prev[0]) + abs(cell[1] - prev[1]) == 2:  # diagonal: not through a wall corner
            assert u.layout.grid[prev[0], cell[1]] == FREE or u.layout.grid[cell[0], prev[1]] == FREE
        prev = cell
        if term or trunc:
            env.reset()
            geo = GridGeometry(u.layout.grid)
            prev = u.agent_cell
    assert collided > 10
    # Head-on into a wall: the agent stops one radius short of it and does not drift sideways.
    env.reset(seed=2)
    grid = u.layout.grid
    r, c = next((r, c) for r in range(7) for c in range(6) if grid[r, c] == FREE and grid[r, c + 1] == WALL)
    cx, cy = u.world.to_world(*cell_centre(7, (r, c)))
    u.set_agent_pose(cx, cy, 0.0)  # facing east, at the wall
    hits = [env.step(0)[-1]["collided"] for _ in range(6)]
    assert hits[0] is False and all(hits[2:])
    assert u.agent_pose[0] == pytest.approx(cx + 0.5 - u.agent_radius) and u.agent_pose[1] == pytest.approx(cy)
    assert u.agent_cell == (r, c)
    # At an angle: the normal part is removed, the agent slides along the wall.
    u.set_agent_pose(
        cx + 0.5 - u.agent_radius, cy, math.radians(60) if r > 0 and grid[r - 1, c] == FREE else -math.radians(60)
    )
    _, _, _, _, info = env.step(0)
    assert info["collided"] and u.agent_pose[0] == pytest.approx(cx + 0.5 - u.agent_radius)
    assert abs(u.agent_pose[1] - cy) == pytest.approx(0.25 * math.sin(math.radians(60)))
    with pytest.raises(ValueError, match="overlap a wall"):
        u.set_agent_pose(cx + 0.45, cy, 0.0)


def test_moving_camera_changes_view_every_step_and_images_not_blank():
    env = make(obs="pixels+viewpoint", size=32)
    o, info = env.reset(seed=4)
    prev_v, prev_p = info["viewpoint"], o["pixels"]
    for a in [1, 1, 2, 2, 2, 1]:
        o, *_, info = env.step(a)
        assert not np.allclose(info["viewpoint"], prev_v)
        assert not np.array_equal(o["pixels"], prev_p)
        assert np.array_equal(o["viewpoint"], info["viewpoint"])
        assert o["pixels"].std() > 5 and len(np.unique(o["pixels"].reshape(-1, 3), axis=0)) > 5
        prev_v, prev_p = info["viewpoint"], o["pixels"]
    v = info["viewpoint"]
    x, y, h = env.unwrapped.agent_pose
    assert v[0] == pytest.approx(x) and v[1] == pytest.approx(y) and v[2] == pytest.approx(0.5) and v[4] == 0
    assert v[3] == pytest.approx(h, abs=1e-6)
    env.close()
    # "random": pitch and eye height jittered per episode.
    env = make(obs="state", camera="random")
    pitches = {round(float(env.reset(seed=s)[1]["viewpoint"][4]), 6) for s in range(4)}
    assert len(pitches) == 4 and all(abs(p) <= 0.15 for p in pitches)
    # "fixed": constant viewpoint, the agent marker moves in the image.
    env = make(obs="pixels+viewpoint", size=48, camera="fixed")
    o, info = env.reset(seed=0)
    for _ in range(3):
        o2, *_, info2 = env.step(0)
    assert np.array_equal(info["viewpoint"], info2["viewpoint"])
    moved = env.unwrapped.agent_pose
    assert not np.array_equal(o["pixels"], o2["pixels"]) or info2["collided"], moved
    env.close()


def test_rendered_scene_matches_layout():
    """Walls, floor, sky and goal appear where the grid says (plain colours from a custom domain)."""
    from envs.domain import Domain

    domain = Domain(
        wall_rgb=(0.9, 0.1, 0.1), floor_rgb=(0.1, 0.8, 0.1), floor_texture="none", target_rgb=(0.1, 0.1, 0.9)
    )
    env = make(size=64, domain=domain, render_mode="rgb_array")
    env.reset(seed=2)
    u = env.unwrapped
    grid = u.layout.grid
    r, c = next(
        (r, c)
        for r in range(7)
        for c in range(6)
        if grid[r, c] == FREE and grid[r, c + 1] == WALL and (r, c) != u.layout.goal
    )
    cx, cy = u.world.to_world(*cell_centre(7, (r, c)))
    u.set_agent_pose(cx, cy, 0.0)  # half a metre from a wall: it fills the view
    img = env.render().astype(int)
    assert np.all(img.argmax(-1) == 0)  # red everywhere
    # Look down the longest free line of sight: sky on top, floor at the bottom.
    rays = u.state_vector()[6:]
    k = int(np.argmax(rays[::2])) * 2
    assert rays[k] >= 2.0
    u.set_agent_pose(cx, cy, k * np.pi / 4)
    img = env.render().astype(int)
    assert img[0, 32].argmax() == 2 and img[-1, 32].argmax() == 1
    # The goal sphere (blue), seen from a free neighbour cell, 14 degrees below the horizon.
    gr, gc = u.layout.goal
    nr, nc = next(
        (gr + dr, gc + dc)
        for dr, dc in ((0, 1), (0, -1), (1, 0), (-1, 0))
        if 0 <= gr + dr < 7 and 0 <= gc + dc < 7 and grid[gr + dr, gc + dc] == FREE
    )
    x, y = u.world.to_world(*cell_centre(7, (nr, nc)))
    u.set_agent_pose(x, y, math.atan2(nr - gr, gc - nc))
    patch = env.render()[42:50, 28:36].astype(int)
    assert (patch.argmax(-1) == 2).mean() > 0.5
    env.close()


def test_render_map_shows_walls_goal_and_agent():
    env = make(obs="state", map_size=70)
    env.reset(seed=6)
    u = env.unwrapped
    m = u.render_map()
    assert m.shape == (70, 70, 3) and m.dtype == np.uint8
    colours = {k: np.all(m == np.array(v), axis=-1) for k, v in MAP_COLOURS.items()}
    assert all(colours[k].any() for k in ("wall", "floor", "goal", "agent"))
    # Every cell centre pixel away from goal and agent shows the grid's wall/floor.
    ar, ac = u.agent_cell
    for r in range(7):
        for c in range(7):
            if (r, c) in (u.layout.goal, (ar, ac)):
                continue
            px = m[r * 10 + 5, c * 10 + 5]
            assert tuple(px) == MAP_COLOURS["wall" if u.layout.grid[r, c] else "floor"]
    gr, gc = u.layout.goal
    assert tuple(m[gr * 10 + 5, gc * 10 + 5]) == MAP_COLOURS["goal"]
    gx, gy = u.world.to_grid(*u.agent_pose[:2])
    assert tuple(m[int((7 - gy) * 10), int(gx * 10)]) in (MAP_COLOURS["agent"], MAP_COLOURS["heading"])
    assert u.render_map(size=21, agent=False).shape == (21, 21, 3)
    assert (
        not colours["agent"].any()
        or not np.all(u.render_map(agent=False) == np.array(MAP_COLOURS["agent"]), axis=-1).any()
    )


def test_domains_and_colours():
    sim = make(obs="pixels", size=SMALL, render_mode="rgb_array")
    real = make(obs="pixels", size=SMALL, domain="real", render_mode="rgb_array")
    o_sim, _ = sim.reset(seed=0)
    o_real, _ = real.reset(seed=0)
    assert np.array_equal(o_sim, sim.render())  # sim: no camera noise
    assert not np.array_equal(o_real, real.render())  # real: camera noise on observations only
    u = real.unwrapped
    wall_mat = u.model.mat_rgba[u.world._mat_wall][:3]
    assert np.allclose(wall_mat, u.domain.wall_rgb)  # domain palette for "real"
    sim_u = sim.unwrapped
    assert np.allclose(sim_u.model.mat_rgba[sim_u.world._mat_wall][:3], sim_u.layout.appearance.wall_rgb)
    rnd = make(obs="state", domain="randomised")
    d1 = rnd.reset(seed=0) and rnd.unwrapped.domain
    d2 = rnd.reset() and rnd.unwrapped.domain
    assert d1 != d2
    for env in (sim, real, rnd):
        env.close()


def test_bad_inputs():
    for kwargs, word in [
        ({"obs": "rgb"}, "obs"),
        ({"camera": "orbit"}, "camera"),
        ({"domain": "mars"}, "domain"),
        ({"actions": "all"}, "actions"),
        ({"action_type": "hybrid"}, "action_type"),
        ({"channel_order": "middle"}, "channel_order"),
        ({"colours": "pink"}, "colours"),
        ({"render_mode": "human"}, "render_mode"),
    ]:
        with pytest.raises(ValueError, match=f"{word}.*valid"):
            MazeEnv(**kwargs)
    env = make(obs="state")
    env.reset(seed=0)
    for bad in (float("nan"), np.inf, 3, -1, 1.5, np.array([0, 1])):
        with pytest.raises(ValueError):
            env.step(bad)
    env.step(np.int64(1))
    env.step(np.array(2))
    c1, c2 = make(obs="state", action_type="continuous"), make(obs="state", action_type="continuous")
    c1.reset(seed=1)
    c2.reset(seed=1)
    for bad in ([np.nan, 0.0], [0.0, np.inf], [0.5, 0.5, 0.5]):
        with pytest.raises(ValueError):
            c1.step(np.array(bad))
    s1 = c1.step(np.array([5.0, -7.0]))[0]  # clipped to (1, -1)
    s2 = c2.step(np.array([1.0, -1.0], dtype=np.float32))[0]
    assert np.array_equal(s1, s2)


# --------------------------------------------------------------------------- vector envs


def test_async_vector_env():
    # "spawn": fresh children; forking a process that already holds GL/torch threads can deadlock.
    vec = gym.vector.AsyncVectorEnv([partial(MazeEnv, size=SMALL) for _ in range(2)], context="spawn")
    try:
        obs, infos = vec.reset(seed=[0, 1])
        assert obs.shape == (2, SMALL, SMALL, 3) and infos["viewpoint"].shape == (2, 5)
        for _ in range(3):
            obs, rew, term, trunc, infos = vec.step(np.array([0, 1]))
        assert obs.dtype == np.uint8 and rew.shape == (2,)
        assert not np.array_equal(obs[0], obs[1])
    finally:
        vec.close()


def test_subproc_vec_env():
    from stable_baselines3.common.vec_env import SubprocVecEnv

    # "fork" keeps the test fast (a spawned SB3 worker imports torch); collect garbage first so
    # no child ever finalises a GL context it inherited.
    gc.collect()
    vec = SubprocVecEnv(
        [partial(gym.make, "envs:wm/Maze-v0", size=SMALL, obs="pixels+viewpoint") for _ in range(2)],
        start_method="fork",
    )
    try:
        vec.seed(3)
        obs = vec.reset()
        assert obs["pixels"].shape == (2, SMALL, SMALL, 3) and obs["viewpoint"].shape == (2, 5)
        for _ in range(3):
            obs, rew, done, infos = vec.step(np.array([0, 2]))
        assert infos[0]["viewpoint"].shape == (5,)
    finally:
        vec.close()


# --------------------------------------------------------------------------- scenes


def test_maze_scene_generator():
    a = generate_scene("maze", seed=1, index=2, views=6, size=SMALL, camera="random", map_size=35)
    c = generate_scene("maze", seed=1, index=3, views=6, size=SMALL, camera="random", map_size=35, goal=True)
    b = generate_scene(
        "maze", seed=1, index=2, views=6, size=SMALL, camera="random", map_size=35
    )  # nothing leaks from c
    assert a.frames.shape == (6, SMALL, SMALL, 3) and a.cameras.shape == (6, 5)
    assert a.frames.tobytes() == b.frames.tobytes() and np.array_equal(a.cameras, b.cameras)
    assert np.array_equal(a.extras["map"], b.extras["map"])
    assert not np.array_equal(a.cameras, c.cameras)
    layout = a.extras["layout"]
    assert layout.shape == (7, 7) and layout.dtype == np.uint8
    assert a.metadata["maze"]["rows"] == ["".join("#" if v else "." for v in row) for row in layout.tolist()]
    assert a.metadata["env_id"] == "wm/Maze-v0" and a.metadata["seed"] == 1 and a.metadata["index"] == 2
    m = a.extras["map"]
    assert m.shape == (35, 35, 3) and m.dtype == np.uint8
    for r in range(7):
        for col in range(7):
            assert tuple(m[r * 5 + 2, col * 5 + 2]) == MAP_COLOURS["wall" if layout[r, col] else "floor"]
    geo = GridGeometry(layout)
    for x, y, z, _yaw, pitch in a.cameras:
        gx, gy = x + 3.5, y + 3.5
        assert layout[cell_at(7, gx, gy)] == FREE and geo.clearance(gx, gy) >= 0.2 - 1e-5
        assert z == pytest.approx(0.5) and abs(pitch) <= np.deg2rad(10.0) + 1e-6
    for f in a.frames:
        assert f.std() > 3
    t = generate_scene("maze", seed=1, index=2, views=12, size=SMALL, camera="trajectory")
    steps = np.linalg.norm(np.diff(t.cameras[:, :2], axis=0), axis=1)
    assert np.all(steps <= 0.12 + 1e-5)  # a smooth walk: small moves...
    turns = np.abs((np.diff(t.cameras[:, 3]) + np.pi) % (2 * np.pi) - np.pi)
    assert np.all(turns <= np.deg2rad(12.0) + 1e-5)  # ...and bounded turns
    assert np.all((steps > 1e-6) | (turns > 1e-6))  # every view differs from the previous one
    with pytest.raises(ValueError, match="valid"):
        generate_scene("maze", seed=0, index=0, views=2, size=SMALL, colour="red")
    with pytest.raises(ValueError, match="valid"):
        generate_scene("maze", seed=0, index=0, views=2, size=SMALL, camera="orbit")
