"""GQN "mazes" scenes: a 7x7 maze seen from many first-person viewpoints, plus its top-down map.

``generate(seed, index, views, size, camera=..., domain=...)`` draws a maze from
:func:`envs.scenes.scene_rng` and renders ``views`` first-person frames with the same MuJoCo
scene as ``wm/Maze-v0`` (:class:`envs.maze.MazeWorld`):

* ``camera="random"`` (GQN-style): each view at a uniform random position inside a random free
  cell (kept ``clearance`` metres from walls), a random yaw that faces open space (uniform
  among the yaws with at least ``min_view_distance`` metres of free floor straight ahead, see
  :func:`envs.maze_layout.sample_open_heading`; 0 = uniform yaw) and a pitch uniform in
  ``+-pitch_range``;
* ``camera="trajectory"``: ordered views along a smooth walk through the maze (the agent
  follows shortest paths to random cells, turning at a bounded rate and slowing down in turns;
  the pitch drifts smoothly within ``+-pitch_range``), so neighbouring views form NISO pairs.

``extras["map"]`` is the north-up top-down map (uint8 ``[map_size, map_size, 3]``, walls and
floor in :data:`envs.maze_layout.MAP_COLOURS`, plus the goal when ``goal=True``) and
``extras["layout"]`` the grid (uint8 ``[7, 7]``, 1 = wall, row 0 north). Colours follow the
env's rule: ``domain="sim"`` uses the maze's own random wall/floor colours, other domains their
own palette; lights come from the domain. Pixel noise (``pixel_noise_std``) is added from the
scene's generator, so scenes stay deterministic.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np

from envs.camera import CameraPose
from envs.domain import DOMAINS, Domain, add_camera_noise, random_domain, resolve_domain
from envs.maze import CELL, COLOUR_MODES, ENV_ID, MazeWorld
from envs.maze_layout import (
    GRID_SIZE,
    GridGeometry,
    MazeAppearance,
    cell_at,
    cell_centre,
    generate_maze,
    rasterise_map,
    sample_open_heading,
    shortest_path,
)
from envs.rendering import OffscreenRenderer
from envs.scenes import SceneRecord, scene_rng
from envs.scenes.gl_cache import GLCache
from envs.spaces import check_choice

CAMERA_PATHS: tuple[str, ...] = ("random", "trajectory")
OPTIONS: dict[str, Any] = {
    "eye_height": 0.5,  # metres above the floor
    "pitch_range": float(np.deg2rad(10.0)),  # radians, views pitch within +-pitch_range
    "clearance": 0.25,  # metres kept between a camera and the walls
    "min_view_distance": 1.0,  # metres of free floor straight ahead of a random view (0 = uniform yaw)
    "step": 0.12,  # metres per view along a trajectory (at full speed)
    "turn_rate": float(np.deg2rad(12.0)),  # radians per view along a trajectory (at most)
    "map_size": None,  # pixels of extras["map"]; None = the frame size
    "goal": False,  # draw the goal sphere in the frames and the map
    "colours": None,  # "maze" | "domain" | None (auto: "maze" for the sim domain)
}

# One world + renderer per image size, per process and thread: a GL context costs ~0.5 s to
# create, far more than a scene's worth of frames at small sizes. GLCache never closes (nor
# drops) the entries a forked child inherits from its parent.
_CACHE: GLCache[tuple[MazeWorld, OffscreenRenderer]] = GLCache("maze scene worlds", 4, close=lambda wr: wr[1].close())


def _new_world_and_renderer(size: int) -> tuple[MazeWorld, OffscreenRenderer]:
    world = MazeWorld(GRID_SIZE)
    return world, OffscreenRenderer(world.model, size, size)


def _world_and_renderer(size: int) -> tuple[MazeWorld, OffscreenRenderer]:
    return _CACHE.get(int(size), lambda: _new_world_and_renderer(int(size)))


def generate(
    seed: int, index: int, views: int, size: int, camera: str = "random", domain: str | Domain = "sim", **opts: Any
) -> SceneRecord:
    """Scene ``index`` of a maze dataset with base ``seed`` (see the module doc).

    Options (``opts``): ``eye_height``, ``pitch_range``, ``clearance``, ``min_view_distance``,
    ``step``, ``turn_rate``, ``map_size``, ``goal``, ``colours``; unknown names raise ``ValueError``.
    """
    check_choice("camera", camera, CAMERA_PATHS)
    unknown = sorted(set(opts) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown maze scene option(s) {unknown}; valid: {', '.join(OPTIONS)}")
    o = {**OPTIONS, **opts}
    if views < 1 or size < 8:
        raise ValueError(f"need views >= 1 and size >= 8, got views={views}, size={size}")
    if not 0 < o["clearance"] < 0.5 * CELL:
        raise ValueError(f"clearance must be in (0, {0.5 * CELL}), got {o['clearance']}")
    if not 0 <= o["min_view_distance"] <= 2.0 * CELL:
        raise ValueError(f"min_view_distance must be in [0, {2.0 * CELL}] metres, got {o['min_view_distance']}")
    if o["colours"] is not None:
        check_choice("colours", o["colours"], COLOUR_MODES)
    map_size = int(o["map_size"] or size)

    rng = scene_rng(seed, index)
    maze_seed = int(rng.integers(2**31 - 1))
    layout = generate_maze(maze_seed)
    fixed = resolve_domain(domain)
    dom = fixed if fixed is not None else random_domain(rng)
    colours = o["colours"] or ("maze" if dom == DOMAINS["sim"] else "domain")
    appearance = (
        layout.appearance
        if colours == "maze"
        else MazeAppearance(dom.wall_rgb, dom.floor_rgb, "none", dom.floor_texture)
    )

    geometry = GridGeometry(layout.grid)
    radius = o["clearance"] / CELL
    if camera == "random":
        poses = _random_poses(layout, geometry, rng, views, radius, o)
    else:
        poses = _trajectory_poses(layout, geometry, rng, views, radius, o)

    world, renderer = _world_and_renderer(size)
    world.load(layout, appearance, dom, show_goal=bool(o["goal"]), show_agent=False, show_sky=True)
    frames = np.empty((views, size, size, 3), dtype=np.uint8)
    cameras = np.empty((views, 5), dtype=np.float32)
    for i, (gx, gy, yaw, pitch) in enumerate(poses):
        x, y = world.to_world(gx, gy)
        pose = CameraPose((x, y, float(o["eye_height"])), float(yaw), float(pitch))
        frames[i] = add_camera_noise(renderer.render(world.data, pose), dom.pixel_noise_std, rng)
        cameras[i] = pose.viewpoint()

    goal = cell_centre(layout.size, layout.goal) if o["goal"] else None
    metadata = {
        "source": "maze",
        "env_id": ENV_ID,
        "seed": int(seed),
        "index": int(index),
        "camera": camera,
        "views": int(views),
        "size": int(size),
        "domain": domain if isinstance(domain, str) else "custom",
        "domain_params": asdict(dom),
        "colours": colours,
        "options": dict(o),
        "maze": layout.summary(),
    }
    extras = {
        "map": rasterise_map(layout.grid, map_size, goal=goal),
        "layout": layout.grid.astype(np.uint8).copy(),
    }
    return SceneRecord(frames=frames, cameras=cameras, metadata=metadata, extras=extras)


def _random_poses(
    layout, geometry: GridGeometry, rng: np.random.Generator, views: int, radius: float, o: dict
) -> list[tuple[float, float, float, float]]:
    """GQN-style: independent random poses inside free cells, each facing open space."""
    free = layout.free_cells()
    min_distance = float(o["min_view_distance"]) / CELL
    poses = []
    for _ in range(views):
        cx, cy = cell_centre(layout.size, free[int(rng.integers(len(free)))])
        gx, gy = geometry.place_disc(cx + rng.uniform(-0.5, 0.5), cy + rng.uniform(-0.5, 0.5), radius)
        yaw = sample_open_heading(geometry, gx, gy, rng, min_distance)
        poses.append((gx, gy, yaw, float(rng.uniform(-o["pitch_range"], o["pitch_range"]))))
    return poses


def _trajectory_poses(
    layout, geometry: GridGeometry, rng: np.random.Generator, views: int, radius: float, o: dict
) -> list[tuple[float, float, float, float]]:
    """A smooth walk: follow shortest paths to random target cells at bounded speed and turn rate."""
    free = layout.free_cells()
    n = layout.size
    start = free[int(rng.integers(len(free)))]
    gx, gy = cell_centre(n, start)
    heading = float(rng.uniform(-np.pi, np.pi))
    pitch, pitch_vel = 0.0, 0.0
    path: list[tuple[int, int]] = []
    poses = []
    step, turn_rate, pr = float(o["step"]) / CELL, float(o["turn_rate"]), float(o["pitch_range"])
    for _ in range(views):
        poses.append((gx, gy, heading, pitch))
        here = cell_at(n, gx, gy)
        while not path:
            target = free[int(rng.integers(len(free)))]
            if target != here:
                path = shortest_path(layout.grid, here, target)[1:]
        wx, wy = cell_centre(n, path[0])
        if math.hypot(wx - gx, wy - gy) < 0.3:
            path.pop(0)
            if path:
                wx, wy = cell_centre(n, path[0])
        error = (math.atan2(wy - gy, wx - gx) - heading + math.pi) % (2 * math.pi) - math.pi
        turn = max(-turn_rate, min(turn_rate, error))
        heading = (heading + turn + math.pi) % (2 * math.pi) - math.pi
        speed = step * max(0.0, math.cos(error))
        gx, gy, _ = geometry.move_disc(gx, gy, speed * math.cos(heading), speed * math.sin(heading), radius)
        # Pitch: a mean-reverting random walk kept inside +-pitch_range.
        pitch_vel = 0.8 * pitch_vel + rng.normal(0.0, 0.15 * pr) - 0.05 * pitch
        pitch = max(-pr, min(pr, pitch + pitch_vel))
    return poses
