"""``wm/Maze-v0``: first-person navigation to a goal in a 7x7 GQN-style maze, rendered by MuJoCo.

The layouts come from :mod:`envs.maze_layout`. :class:`MazeWorld` is the MuJoCo scene of a
maze: one compiled model whose wall boxes, colours, textures, lights and goal are rewritten in
place for every maze, so a new maze costs no recompilation and no new GL context.
:class:`MazeEnv` moves a kinematic disc-shaped agent through it and renders from its eye.

World frame: z up, metres; a cell is 1 m wide and the maze is centred on the origin, row 0 of
the grid at +y (north). Walls are 1 m high; the eye is 0.5 m above the floor; cameras have a
75 degree field of view. The sky is five emissive boxes (a lid 6 m up and four sides 4 m outside
the outer wall) enclosing the maze, so every first-person pixel shows wall, floor, goal or sky
(``wm envs stats maze`` measures it with segmentation renders, docs/envs.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from envs.camera import MAX_PITCH, CameraPose
from envs.domain import DOMAINS, Domain, add_camera_noise, random_domain, resolve_domain
from envs.maze_layout import (
    FLOOR_TEXTURES,
    GRID_SIZE,
    WALL_TEXTURES,
    GridGeometry,
    MazeAppearance,
    MazeLayout,
    bfs_distances,
    cell_at,
    cell_centre,
    generate_maze,
    rasterise_map,
    sample_open_heading,
    wall_rectangles,
)
from envs.rendering import OffscreenRenderer
from envs.spaces import (
    CAMERA_MODES,
    CHANNEL_ORDERS,
    OBS_MODES,
    check_choice,
    check_finite_action,
    format_image,
    observation_space,
)

ENV_ID = "wm/Maze-v0"
CELL = 1.0
"""Width of a grid cell (metres)."""
WALL_HEIGHT = 1.0
"""Height of the walls (metres)."""
BORDER = 0.25
"""Thickness of the outer wall around the grid (metres)."""
GOAL_RADIUS = 0.2
"""Radius of the goal sphere (metres)."""
GOAL_HEIGHT = 0.25
"""Height of the goal sphere's centre (metres)."""
FOVY_DEG = 75.0
"""Vertical (and, on square images, horizontal) field of view of every camera (degrees): wider
than 60 so a first-person view shows the floor and walls around a corridor, not only its end."""
HIDDEN_GROUP = 5
"""MuJoCo geom group that the renderer does not draw (unused wall boxes, hidden markers)."""
SKY_RGB = (0.55, 0.7, 0.9)
"""Colour of the sky: flat emissive boxes (a lid and four sides) enclosing the maze."""
SKY_EMISSION = 6.0
"""Emission of the sky material, its colour scaled down to match: the lights then add only a few
percent, so the lid and the sides look like one uniform sky."""
SKY_HEIGHT = 6.0
"""Height of the sky's lid above the floor (metres)."""
SKY_MARGIN = 4.0
"""Distance from the outer wall to the sky's sides (metres): every ray from inside the maze that
clears the walls meets the sky well inside the far clipping plane, so no background shows."""
SPAWN_VIEW_DISTANCE = 1.0
"""Default ``spawn_view_distance``: free distance straight ahead of the spawn heading (metres)."""
NOISE_STREAM = 0x6E6F697365
"""Second entropy word of the pixel-noise generator's seed (``[seed, NOISE_STREAM]``)."""

ACTION_SETS: tuple[str, ...] = ("basic", "full")
ACTION_TYPES: tuple[str, ...] = ("discrete", "continuous")
COLOUR_MODES: tuple[str, ...] = ("maze", "domain")
DISCRETE_ACTIONS: tuple[str, ...] = ("forward", "turn_left", "turn_right", "backward", "strafe_left", "strafe_right")
#: Per-episode camera jitter of ``camera="random"``: pitch (radians) and eye height (metres).
RANDOM_PITCH_JITTER = 0.15
RANDOM_HEIGHT_JITTER = 0.1
#: Ray directions of the state observation, relative to the heading.
N_RAYS = 8
RESET_OPTIONS: tuple[str, ...] = ("maze_seed",)


def _fmt(values) -> str:
    return " ".join(f"{float(v):.4f}" for v in values)


def overview_pose(grid_size: int = GRID_SIZE) -> CameraPose:
    """The fixed camera of ``camera="fixed"``: south of the maze, 60 degrees down, seeing all of it."""
    pitch = -np.deg2rad(60.0)
    distance = 1.3 * grid_size * CELL
    target = np.array([0.0, 0.1 * CELL, 0.0])
    eye = target - distance * np.array([0.0, math.cos(pitch), math.sin(pitch)])
    return CameraPose(tuple(float(v) for v in eye), float(np.pi / 2), float(pitch))


class MazeWorld:
    """The MuJoCo scene of a maze of side ``grid_size``, re-dressed in place by :meth:`load`.

    The model holds a pool of ``grid_size**2`` wall boxes (enough for any layout); :meth:`load`
    sizes and places as many as the merged wall rectangles need and hides the rest in a geom
    group the renderer skips. Textures are grey patterns tinted by material colours, so a maze's
    colours and patterns are a few array writes. Nothing is simulated: the model has no degrees
    of freedom and no contacts; the agent marker is a mocap body.
    """

    def __init__(self, grid_size: int = GRID_SIZE) -> None:
        self.n = int(grid_size)
        self.half = 0.5 * self.n * CELL
        self.model = mujoco.MjModel.from_xml_string(self._xml())
        self.data = mujoco.MjData(self.model)
        m = self.model
        gid = lambda name: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, name)  # noqa: E731
        self._walls = np.array([gid(f"wall{i}") for i in range(self.n * self.n)])
        self._goal = gid("goal")
        self._sky = np.array([gid(n) for n in ("sky", "sky_north", "sky_south", "sky_east", "sky_west")])
        self._agent = np.array([gid("agent_body"), gid("agent_nose")])
        self._mat_wall = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_MATERIAL, "wall")
        self._mat_floor = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_MATERIAL, "floor")
        self._tex = {
            name: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_TEXTURE, name)
            for name in ("wall_tiles", "wall_checker", "floor_checker", "floor_grid")
        }
        self.n_wall_boxes = 0
        mujoco.mj_forward(m, self.data)

    def _xml(self) -> str:
        n, h, b, H = self.n, self.half, BORDER, WALL_HEIGHT
        walls = "".join(
            f'<geom name="wall{i}" type="box" size="0.5 0.5 {H / 2}" pos="0 0 {H / 2}" material="wall" '
            f'group="{HIDDEN_GROUP}"/>'
            for i in range(n * n)
        )
        o = h + b / 2
        border = "".join(
            f'<geom name="border{k}" type="box" size="{sx} {sy} {H / 2}" pos="{px} {py} {H / 2}" material="wall"/>'
            for k, (sx, sy, px, py) in enumerate(
                ((h + b, b / 2, 0, o), (h + b, b / 2, 0, -o), (b / 2, h, o, 0), (b / 2, h, -o, 0))
            )
        )
        domain = DOMAINS["sim"]
        return f"""
<mujoco model="maze">
  <compiler angle="radian"/>
  <statistic extent="{n * CELL}" center="0 0 {H / 2}"/>
  <visual>
    <global fovy="{FOVY_DEG}"/>
    <map znear="0.004" zfar="20"/>
    <headlight ambient="{_fmt([domain.ambient] * 3)}" diffuse="0.25 0.25 0.25" specular="0 0 0"/>
  </visual>
  <default><geom contype="0" conaffinity="0"/></default>
  <asset>
    <texture name="wall_tiles" type="2d" builtin="flat" mark="edge" markrgb="0.55 0.55 0.55" rgb1="1 1 1" rgb2="1 1 1"
             width="32" height="32"/>
    <texture name="wall_checker" type="2d" builtin="checker" rgb1="1 1 1" rgb2="0.78 0.78 0.78" width="32" height="32"/>
    <texture name="floor_checker" type="2d" builtin="checker" rgb1="1 1 1" rgb2="0.72 0.72 0.72"
             width="32" height="32"/>
    <texture name="floor_grid" type="2d" builtin="flat" mark="edge" markrgb="0.5 0.5 0.5" rgb1="1 1 1" rgb2="1 1 1"
             width="32" height="32"/>
    <material name="wall" rgba="0.6 0.6 0.6 1" texrepeat="2 2" texuniform="true" specular="0.1"/>
    <material name="floor" rgba="0.5 0.5 0.5 1" texrepeat="1 1" texuniform="true" specular="0.1"/>
    <material name="sky" rgba="{_fmt(np.asarray(SKY_RGB) / (SKY_EMISSION + 0.3))} 1" emission="{SKY_EMISSION}"
              specular="0"/>
  </asset>
  <worldbody>
    <light name="sun" directional="true" castshadow="false" pos="0 0 5" dir="0 0 -1" diffuse="0.8 0.8 0.8"
           specular="0.1 0.1 0.1"/>
    <geom name="floor" type="plane" size="{h + b} {h + b} 2" material="floor"/>
    {self._sky_xml()}
    <geom name="goal" type="sphere" size="{GOAL_RADIUS}" pos="0 0 {GOAL_HEIGHT}" rgba="0.9 0.15 0.15 1"/>
    {walls}{border}
    <body name="agent" mocap="true" pos="0 0 0">
      <geom name="agent_body" type="cylinder" size="0.2 0.15" pos="0 0 0.15" rgba="0.15 0.35 0.9 1"
            group="{HIDDEN_GROUP}"/>
      <geom name="agent_nose" type="box" size="0.08 0.05 0.05" pos="0.18 0 0.32" rgba="1 0.8 0 1"
            group="{HIDDEN_GROUP}"/>
    </body>
  </worldbody>
</mujoco>"""

    def _sky_xml(self) -> str:
        """The sky: a lid at :data:`SKY_HEIGHT` and four sides :data:`SKY_MARGIN` outside the outer wall."""
        s, t, z = self.half + BORDER + SKY_MARGIN, 0.05, 0.5 * SKY_HEIGHT
        boxes = (
            ("sky", (s + t, s + t, t), (0, 0, SKY_HEIGHT + t)),
            ("sky_north", (s + t, t, z), (0, s + t, z)),
            ("sky_south", (s + t, t, z), (0, -s - t, z)),
            ("sky_east", (t, s + t, z), (s + t, 0, z)),
            ("sky_west", (t, s + t, z), (-s - t, 0, z)),
        )
        geom = '<geom name="{}" type="box" size="{}" pos="{}" material="sky"/>'
        return "".join(geom.format(name, _fmt(size), _fmt(pos)) for name, size, pos in boxes)

    # -- coordinates -----------------------------------------------------------------------
    def to_world(self, gx: float, gy: float) -> tuple[float, float]:
        """Grid-frame point (cell units, see :mod:`envs.maze_layout`) to world ``(x, y)``."""
        return (gx - 0.5 * self.n) * CELL, (gy - 0.5 * self.n) * CELL

    def to_grid(self, x: float, y: float) -> tuple[float, float]:
        """World ``(x, y)`` to the grid frame."""
        return x / CELL + 0.5 * self.n, y / CELL + 0.5 * self.n

    # -- dressing --------------------------------------------------------------------------
    def load(
        self,
        layout: MazeLayout,
        appearance: MazeAppearance,
        domain: Domain,
        show_goal: bool = True,
        show_agent: bool = False,
        show_sky: bool = True,
    ) -> None:
        """Dress the scene as ``layout`` with the given wall/floor look and domain lights."""
        if layout.size != self.n:
            raise ValueError(f"layout is {layout.size}x{layout.size}, this world is {self.n}x{self.n}")
        m = self.model
        rects = wall_rectangles(layout.grid)
        self.n_wall_boxes = len(rects)
        m.geom_group[self._walls] = HIDDEN_GROUP
        for gid, (r0, c0, r1, c1) in zip(self._walls, rects):
            x0, y1 = self.to_world(c0, self.n - r0)
            x1, y0 = self.to_world(c1 + 1, self.n - 1 - r1)
            m.geom_size[gid] = (0.5 * (x1 - x0), 0.5 * (y1 - y0), 0.5 * WALL_HEIGHT)
            m.geom_pos[gid] = (0.5 * (x0 + x1), 0.5 * (y0 + y1), 0.5 * WALL_HEIGHT)
            m.geom_group[gid] = 0
        # Colours and patterns: grey textures tinted by the material colour.
        rgb_role = int(mujoco.mjtTextureRole.mjTEXROLE_RGB)
        if appearance.wall_texture not in WALL_TEXTURES or appearance.floor_texture not in FLOOR_TEXTURES:
            raise ValueError(f"unknown maze textures {appearance.wall_texture!r}/{appearance.floor_texture!r}")
        m.mat_rgba[self._mat_wall] = (*appearance.wall_rgb, 1.0)
        m.mat_rgba[self._mat_floor] = (*appearance.floor_rgb, 1.0)
        m.mat_texid[self._mat_wall, rgb_role] = self._tex.get(f"wall_{appearance.wall_texture}", -1)
        m.mat_texid[self._mat_floor, rgb_role] = self._tex.get(f"floor_{appearance.floor_texture}", -1)
        # Domain: goal colour, lights.
        m.geom_rgba[self._goal] = (*domain.target_rgb, 1.0)
        gx, gy = cell_centre(self.n, layout.goal)
        m.geom_pos[self._goal] = (*self.to_world(gx, gy), GOAL_HEIGHT)
        m.geom_group[self._goal] = 0 if show_goal else HIDDEN_GROUP
        m.geom_group[self._agent] = 0 if show_agent else HIDDEN_GROUP
        m.geom_group[self._sky] = 0 if show_sky else HIDDEN_GROUP
        d = np.asarray(domain.light_direction, dtype=np.float64)
        m.light_dir[0] = d / max(float(np.linalg.norm(d)), 1e-9)
        m.light_diffuse[0] = domain.light_intensity
        m.vis.headlight.ambient[:] = domain.ambient
        mujoco.mj_forward(m, self.data)

    def set_agent(self, x: float, y: float, heading: float) -> None:
        """Place the agent marker (seen only when ``show_agent``) at a world pose."""
        self.data.mocap_pos[0] = (x, y, 0.0)
        self.data.mocap_quat[0] = (math.cos(0.5 * heading), 0.0, 0.0, math.sin(0.5 * heading))
        mujoco.mj_kinematics(self.model, self.data)


class MazeEnv(gym.Env):
    """Find the goal in a 7x7 GQN-style maze from a first-person camera.

    A kinematic disc-shaped agent (radius ``agent_radius``) moves through a maze of 1-2 rooms and
    corridors (:func:`envs.maze_layout.generate_maze`) towards a coloured goal sphere. The
    camera is the agent's eye. Nothing is simulated: motion and collisions are geometry on the
    grid, so a step costs one render (or nothing, with ``obs="state"``).

    **Action space** (``action_type`` x ``actions``):

    * ``"discrete"``, ``"basic"``: ``Discrete(3)``: 0 forward (``move_step`` metres), 1 turn left,
      2 turn right (``turn_deg`` degrees).
    * ``"discrete"``, ``"full"``: ``Discrete(6)``: the basic three, then 3 backward, 4 strafe
      left, 5 strafe right.
    * ``"continuous"``, ``"basic"``: ``Box(-1, 1, (2,))`` = (speed, turn rate): the agent turns by
      ``turn * turn_deg`` (positive = left) and then moves ``speed * move_step`` along its new
      heading (negative = backwards).
    * ``"continuous"``, ``"full"``: ``Box(-1, 1, (3,))`` = (speed, strafe, turn rate); positive
      strafe moves left.

    Continuous actions outside [-1, 1] are clipped; NaN or inf raises ``ValueError``, and so does
    a discrete action that is not an integer in range.

    **Collisions**: the agent slides along walls: the part of a move that points into a wall is
    removed and the rest is kept (``info["collided"]`` tells when that happened); it never
    enters a wall cell.

    **Observation space** (``obs``):

    * ``"pixels"``: uint8 image ``[size, size, 3]`` (``channel_order="last"``) or ``[3, size, size]``.
    * ``"state"``: float32 ``[14]``: agent x, y (metres), cos and sin of the heading, goal x, y,
      then the distances (metres, at most ``ray_range``) from the agent's centre to the nearest
      wall along 8 directions, starting at the heading and turning left in 45 degree steps.
    * ``"pixels+viewpoint"``: ``Dict(pixels=..., viewpoint=float32 [5])``.

    **Camera** (``camera``; the default differs from the Jaco envs', whose default is ``"fixed"``,
    because here the camera is the agent's own eye):

    * ``"moving"`` (default): first-person, at the agent's position, ``eye_height`` above the
      floor, yaw = heading, pitch = ``pitch``, a 75 degree field of view; it moves with the agent.
    * ``"random"``: as ``"moving"`` with pitch and eye height jittered per episode (uniform within
      +-0.15 rad and +-0.1 m).
    * ``"fixed"``: a fixed view from south of the maze, 60 degrees down, that shows the whole maze
      and an agent marker (blue cylinder, yellow nose); the sky is not drawn.

    The 5-d viewpoint (x, y, z, yaw, pitch; :mod:`envs.camera` conventions) of the camera that
    renders the observation is ``info["viewpoint"]`` and the :attr:`viewpoint` property.

    **Rewards**: ``goal_reward`` (+1) on the step where the agent's centre comes within
    ``reach_radius`` of the goal's centre, else ``-step_cost`` (-0.01).

    **Termination / truncation**: terminated when the goal is reached; truncated after
    ``max_steps`` steps (the registered spec's ``max_episode_steps`` is 500, the default). A
    ``step()`` after either raises ``RuntimeError`` until ``reset()`` (as ``wm/JacoReach`` does).

    **Mazes**: by default every episode gets a new maze whose seed is drawn from the env's RNG
    (so ``reset(seed=s)`` fixes the whole sequence of mazes). ``maze_seed=k`` fixes the maze to
    ``k`` for all episodes; ``fixed_maze=True`` draws one maze seed at the first reset (and at
    every reset that passes a ``seed``) and keeps it. The goal cell belongs to the maze; the
    agent's start cell (any free cell but the goal's) and position in the cell are drawn per
    episode; its heading is uniform among those with at least ``spawn_view_distance`` (1 m)
    of free floor straight ahead (:func:`envs.maze_layout.sample_open_heading`), so a first
    frame shows the maze rather than a wall filling the view (``wm envs stats maze``: 0% of
    reset frames >= 95% wall, against ~30% with a uniform heading; ``spawn_view_distance=0``
    restores it). All of it (mazes, starts, random domains) comes from the env's ``np_random``.

    **Appearance and domain**: the wall and floor colours and patterns of a maze come from its
    seed (as in GQN) when ``colours="maze"``, or from the domain's ``wall_rgb``/``floor_rgb``/
    ``floor_texture`` (plain walls) when ``colours="domain"``. The default ``colours=None``
    picks ``"maze"`` for the ``"sim"`` domain and ``"domain"`` otherwise, so ``domain="real"``
    is a fixed shifted palette and ``domain="randomised"`` a new random one per episode. The
    goal colour, the lights and the camera noise always come from the domain. The camera noise
    (``pixel_noise_std``, e.g. ``domain="real"``) draws from its own generator, seeded from the
    ``reset`` seed, so ``obs="pixels"`` and ``obs="state"`` see the same mazes, starts and
    domains for a seed.

    **Reset options**: ``{"maze_seed": int}`` uses that maze for this episode only. Unknown keys
    raise ``ValueError``.

    **Info keys** (reset and step): ``viewpoint`` (float32 [5]), ``maze_seed`` (int),
    ``goal_distance`` (shortest-path length in cells from the agent's cell to the goal's),
    ``collided`` (bool), ``is_success`` (bool, goal reached this step; SB3's key) and
    ``success`` (the same, an alias matching ``wm/JacoReach``'s key).

    ``render()`` (``render_mode="rgb_array"``) returns the camera image without pixel noise;
    :meth:`render_map` a north-up top-down map of walls, goal and agent;
    :meth:`set_agent_pose` teleports the agent (data collection, tests).

    **Vector envs**: the offscreen renderer (a GL context) is created at the first render, so a
    fresh env pickles and each worker of ``AsyncVectorEnv``/``SubprocVecEnv`` makes its own;
    ``close()`` releases it. Prefer the ``"spawn"``/``"forkserver"`` start methods when the
    parent process has rendered itself: a forked child inherits GL state it must not use.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    #: Physics steps per env step in ``wm envs bench``'s raw-loop baseline.
    n_substeps: int = 1

    def __init__(
        self,
        render_mode: str | None = None,
        obs: str = "pixels",
        size: int = 64,
        channel_order: str = "last",
        camera: str = "moving",
        domain: str | Domain = "sim",
        actions: str = "basic",
        action_type: str = "discrete",
        maze_seed: int | None = None,
        fixed_maze: bool = False,
        colours: str | None = None,
        max_steps: int = 500,
        step_cost: float = 0.01,
        goal_reward: float = 1.0,
        move_step: float = 0.25,
        turn_deg: float = 15.0,
        agent_radius: float = 0.2,
        reach_radius: float = 0.4,
        eye_height: float = 0.5,
        pitch: float = 0.0,
        ray_range: float = 7.0,
        map_size: int = 64,
        spawn_view_distance: float = SPAWN_VIEW_DISTANCE,
    ) -> None:
        """Create the env (the maze is drawn at ``reset``; the renderer at the first render).

        Args:
            render_mode: ``None`` or ``"rgb_array"``.
            obs: ``"pixels"``, ``"state"`` or ``"pixels+viewpoint"``.
            size: image side in pixels (>= 8).
            channel_order: ``"last"`` (HWC) or ``"first"`` (CHW) for pixel observations.
            camera: ``"moving"``, ``"random"`` or ``"fixed"`` (see the class docstring).
            domain: ``"sim"``, ``"real"``, ``"randomised"`` or an :class:`envs.domain.Domain`.
            actions: ``"basic"`` or ``"full"`` action set.
            action_type: ``"discrete"`` or ``"continuous"``.
            maze_seed: use this maze for every episode (``None``: see ``fixed_maze``).
            fixed_maze: keep one maze drawn from the env's RNG instead of a new one per episode.
            colours: ``"maze"``, ``"domain"`` or ``None`` (auto) wall/floor colour source.
            max_steps: steps before truncation.
            step_cost: reward subtracted on every step that does not reach the goal.
            goal_reward: reward of the step that reaches the goal.
            move_step: metres per forward/backward/strafe step (at full continuous speed).
            turn_deg: degrees per turn step (at full continuous turn rate).
            agent_radius: radius of the agent's disc in metres (< 0.5).
            reach_radius: the goal is reached within this distance (metres) of its centre.
            eye_height: camera height above the floor in metres (first-person cameras).
            pitch: camera pitch in radians (first-person cameras), e.g. for data collection.
            ray_range: longest wall distance reported in the state observation (metres).
            map_size: default side in pixels of :meth:`render_map`.
            spawn_view_distance: the spawn heading faces at least this much free floor straight
                ahead (metres; 0 = a uniform heading), see "Mazes" in the class docstring.
        """
        if render_mode is not None:
            check_choice("render_mode", render_mode, self.metadata["render_modes"])
        self.render_mode = render_mode
        self.obs_mode = check_choice("obs", obs, OBS_MODES)
        self.channel_order = check_choice("channel_order", channel_order, CHANNEL_ORDERS)
        self.camera_mode = check_choice("camera", camera, CAMERA_MODES)
        self.actions = check_choice("actions", actions, ACTION_SETS)
        self.action_type = check_choice("action_type", action_type, ACTION_TYPES)
        if colours is not None:
            check_choice("colours", colours, COLOUR_MODES)
        self._domain_spec = domain
        self._fixed_domain = resolve_domain(domain)
        self._colours = colours
        for name, value in (("size", size), ("map_size", map_size), ("max_steps", max_steps)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if size < 8:
            raise ValueError(f"size must be >= 8 pixels, got {size}")
        for name, value in (
            ("move_step", move_step),
            ("turn_deg", turn_deg),
            ("agent_radius", agent_radius),
            ("reach_radius", reach_radius),
            ("ray_range", ray_range),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if agent_radius >= 0.5 * CELL:
            raise ValueError(f"agent_radius must be < {0.5 * CELL} (half a cell), got {agent_radius}")
        if not 0 < eye_height < WALL_HEIGHT + 1.0:
            raise ValueError(f"eye_height must be in (0, {WALL_HEIGHT + 1.0}), got {eye_height}")
        if not abs(pitch) + RANDOM_PITCH_JITTER <= MAX_PITCH:
            raise ValueError(f"|pitch| must be <= {MAX_PITCH - RANDOM_PITCH_JITTER:.3f} rad, got {pitch}")
        if not 0.0 <= spawn_view_distance <= 2.0 * CELL:
            raise ValueError(f"spawn_view_distance must be in [0, {2.0 * CELL}] metres, got {spawn_view_distance}")
        if maze_seed is not None and (int(maze_seed) != maze_seed or maze_seed < 0):
            raise ValueError(f"maze_seed must be a non-negative integer or None, got {maze_seed!r}")
        self.size = int(size)
        self.map_size = int(map_size)
        self.max_steps = int(max_steps)
        self.step_cost = float(step_cost)
        self.goal_reward = float(goal_reward)
        self.move_step = float(move_step)
        self.turn_step = math.radians(turn_deg)
        self.agent_radius = float(agent_radius)
        self.reach_radius = float(reach_radius)
        self.eye_height = float(eye_height)
        self.pitch = float(pitch)
        self.ray_range = float(ray_range)
        self.spawn_view_distance = float(spawn_view_distance)
        self._maze_seed_arg = None if maze_seed is None else int(maze_seed)
        self.fixed_maze = bool(fixed_maze) or maze_seed is not None

        n_actions = 3 if actions == "basic" else 6
        if action_type == "discrete":
            self.action_space = spaces.Discrete(n_actions)
        else:
            self.action_space = spaces.Box(-1.0, 1.0, shape=(2 if actions == "basic" else 3,), dtype=np.float32)
        self.observation_space = observation_space(obs, self.size, channel_order, state_dim=6 + N_RAYS)
        if obs == "state":  # the maze's state is bounded: give the exact box instead of +-inf
            half = 0.5 * GRID_SIZE * CELL
            low = np.array([-half, -half, -1, -1, -half, -half] + [0.0] * N_RAYS, dtype=np.float32)
            high = np.array([half, half, 1, 1, half, half] + [self.ray_range] * N_RAYS, dtype=np.float32)
            self.observation_space = spaces.Box(low, high, dtype=np.float32)

        self.world = MazeWorld(GRID_SIZE)
        self._renderer: OffscreenRenderer | None = None
        self._fixed_pose = overview_pose(GRID_SIZE)
        # Episode state (set by reset).
        self._kept_maze_seed: int | None = self._maze_seed_arg
        self.layout: MazeLayout | None = None
        self.domain: Domain = self._fixed_domain or DOMAINS["sim"]
        self._geometry: GridGeometry | None = None
        self._goal_dist: np.ndarray | None = None
        self._goal_xy = (0.0, 0.0)
        self._x = self._y = self._heading = 0.0
        self._cam_pitch, self._cam_height = self.pitch, self.eye_height
        self._steps = 0
        self._done = False
        self._noise_rng: np.random.Generator | None = None
        self._frame: np.ndarray | None = None
        self._pose: CameraPose = self._fixed_pose

    # -- MuJoCo handles for benchmarks -------------------------------------------------------
    @property
    def model(self) -> mujoco.MjModel:
        """The MuJoCo model (one per env; re-dressed in place at every reset)."""
        return self.world.model

    @property
    def data(self) -> mujoco.MjData:
        """The MuJoCo data of :attr:`model`."""
        return self.world.data

    def ensure_renderer(self) -> OffscreenRenderer:
        """The env's offscreen renderer, created on first use (keeps the env picklable until then)."""
        if self._renderer is None:
            self._renderer = OffscreenRenderer(self.world.model, self.size, self.size)
        return self._renderer

    # -- Gymnasium API ----------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None or self._noise_rng is None:
            # Pixel noise has its own stream: obs="pixels" and obs="state" then draw the same
            # mazes, starts and domains from np_random for a seed.
            self._noise_rng = np.random.default_rng(None if seed is None else [int(seed), NOISE_STREAM])
        options = dict(options or {})
        unknown = sorted(set(options) - set(RESET_OPTIONS))
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; valid keys: {', '.join(RESET_OPTIONS)}")
        rng = self.np_random
        if "maze_seed" in options:
            maze_seed = options["maze_seed"]
            if isinstance(maze_seed, bool) or not isinstance(maze_seed, (int, np.integer)) or maze_seed < 0:
                raise ValueError(f"options['maze_seed'] must be a non-negative integer, got {maze_seed!r}")
            maze_seed = int(maze_seed)
        elif self._maze_seed_arg is not None:
            maze_seed = self._maze_seed_arg
        elif self.fixed_maze:
            if self._kept_maze_seed is None or seed is not None:
                self._kept_maze_seed = int(rng.integers(2**31 - 1))
            maze_seed = self._kept_maze_seed
        else:
            maze_seed = int(rng.integers(2**31 - 1))
        if self.layout is None or self.layout.seed != maze_seed:
            self.layout = generate_maze(maze_seed)
            self._geometry = GridGeometry(self.layout.grid)
            self._goal_dist = bfs_distances(self.layout.grid, self.layout.goal)
        layout = self.layout

        self.domain = self._fixed_domain if self._fixed_domain is not None else random_domain(rng)
        colours = self._colours or ("maze" if self.domain == DOMAINS["sim"] else "domain")
        if colours == "maze":
            appearance = layout.appearance
        else:
            d = self.domain
            appearance = MazeAppearance(d.wall_rgb, d.floor_rgb, "none", d.floor_texture)
        fixed = self.camera_mode == "fixed"
        self.world.load(layout, appearance, self.domain, show_goal=True, show_agent=fixed, show_sky=not fixed)
        self._goal_xy = self.world.to_world(*cell_centre(layout.size, layout.goal))

        starts = [c for c in layout.free_cells() if c != layout.goal]
        r, c = starts[int(rng.integers(len(starts)))]
        gx, gy = cell_centre(layout.size, (r, c))
        jitter = 0.5 - self.agent_radius / CELL - 0.05
        gx, gy = gx + rng.uniform(-jitter, jitter), gy + rng.uniform(-jitter, jitter)
        self._x, self._y = self.world.to_world(gx, gy)
        self._heading = sample_open_heading(self._geometry, gx, gy, rng, self.spawn_view_distance / CELL)
        if self.camera_mode == "random":
            self._cam_pitch = self.pitch + float(rng.uniform(-RANDOM_PITCH_JITTER, RANDOM_PITCH_JITTER))
            self._cam_height = self.eye_height + float(rng.uniform(-RANDOM_HEIGHT_JITTER, RANDOM_HEIGHT_JITTER))
        else:
            self._cam_pitch, self._cam_height = self.pitch, self.eye_height
        if fixed:
            self.world.set_agent(self._x, self._y, self._heading)
        self._steps = 0
        self._done = False
        self._update_pose()
        return self._observation(), self._info(collided=False, success=False)

    def step(self, action):
        if self.layout is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            raise RuntimeError("episode is over (terminated or truncated); call reset() before step()")
        forward, strafe, turn = self._parse_action(action)
        if turn:
            self._heading = (self._heading + turn + math.pi) % (2.0 * math.pi) - math.pi
        collided = False
        if forward or strafe:
            ch, sh = math.cos(self._heading), math.sin(self._heading)
            dx = (forward * ch - strafe * sh) / CELL
            dy = (forward * sh + strafe * ch) / CELL
            gx, gy = self.world.to_grid(self._x, self._y)
            gx, gy, collided = self._geometry.move_disc(gx, gy, dx, dy, self.agent_radius / CELL)
            self._x, self._y = self.world.to_world(gx, gy)
        if self.camera_mode == "fixed":
            self.world.set_agent(self._x, self._y, self._heading)
        self._steps += 1
        self._update_pose()
        success = math.hypot(self._x - self._goal_xy[0], self._y - self._goal_xy[1]) < self.reach_radius
        reward = self.goal_reward if success else -self.step_cost
        truncated = (not success) and self._steps >= self.max_steps
        self._done = success or truncated
        return self._observation(), reward, success, truncated, self._info(collided=collided, success=success)

    def render(self):
        """The current camera image ``[size, size, 3]`` uint8 (no pixel noise), for ``render_mode="rgb_array"``."""
        if self.render_mode is None:
            gym.logger.warn("MazeEnv.render() called without render_mode; pass render_mode='rgb_array'")
            return None
        if self._frame is None:
            self._frame = self.ensure_renderer().render(self.world.data, self.camera_pose)
        return self._frame.copy()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_renderer"] = None  # a GL context cannot travel; a new one is made on demand
        return state

    # -- extras -----------------------------------------------------------------------------
    def _update_pose(self) -> None:
        if self.camera_mode == "fixed":
            self._pose = self._fixed_pose
        else:
            self._pose = CameraPose((self._x, self._y, self._cam_height), self._heading, self._cam_pitch)

    @property
    def camera_pose(self) -> CameraPose:
        """Pose of the camera that renders the observation."""
        return self._pose

    @property
    def viewpoint(self) -> np.ndarray:
        """The 5-d viewpoint (x, y, z, yaw, pitch) of the observation camera, float32."""
        return self._pose.viewpoint()

    @property
    def agent_pose(self) -> tuple[float, float, float]:
        """Agent ``(x, y, heading)`` in the world frame (metres, radians)."""
        return self._x, self._y, self._heading

    @property
    def agent_cell(self) -> tuple[int, int]:
        """Grid cell ``(row, col)`` of the agent's centre."""
        return cell_at(GRID_SIZE, *self.world.to_grid(self._x, self._y))

    def set_agent_pose(self, x: float, y: float, heading: float) -> None:
        """Teleport the agent to world ``(x, y)`` with ``heading`` (radians), e.g. for data collection.

        Raises ``ValueError`` if the disc would overlap a wall. The observation is not
        re-rendered; the next :meth:`step` sees the new pose.
        """
        if self.layout is None:
            raise RuntimeError("call reset() before set_agent_pose()")
        if not all(math.isfinite(v) for v in (x, y, heading)):
            raise ValueError(f"agent pose must be finite, got {(x, y, heading)}")
        gx, gy = self.world.to_grid(x, y)
        if (
            not (0 <= gx < GRID_SIZE and 0 <= gy < GRID_SIZE)
            or self._geometry.clearance(gx, gy) < self.agent_radius / CELL - 1e-9
        ):
            raise ValueError(f"agent at ({x:.3f}, {y:.3f}) would overlap a wall (radius {self.agent_radius} m)")
        self._x, self._y = float(x), float(y)
        self._heading = (float(heading) + math.pi) % (2.0 * math.pi) - math.pi
        if self.camera_mode == "fixed":
            self.world.set_agent(self._x, self._y, self._heading)
        self._update_pose()
        self._frame = None

    def render_map(self, size: int | None = None, agent: bool = True, goal: bool = True) -> np.ndarray:
        """North-up top-down map ``uint8 [size, size, 3]`` (default ``map_size``) of the maze.

        Walls, floor, goal and agent use the fixed palette
        :data:`envs.maze_layout.MAP_COLOURS`; the agent has a heading mark.
        """
        if self.layout is None:
            raise RuntimeError("call reset() before render_map()")
        size = self.map_size if size is None else int(size)
        n = self.layout.size
        goal_g = cell_centre(n, self.layout.goal) if goal else None
        agent_g = (*self.world.to_grid(self._x, self._y), self._heading) if agent else None
        return rasterise_map(
            self.layout.grid,
            size,
            goal=goal_g,
            agent=agent_g,
            goal_radius=GOAL_RADIUS / CELL * 1.5,
            agent_radius=self.agent_radius / CELL,
        )

    def state_vector(self) -> np.ndarray:
        """The ``obs="state"`` vector (see the class docstring), float32 [14]."""
        gx, gy = self.world.to_grid(self._x, self._y)
        rays = [
            self._geometry.ray_distance(gx, gy, self._heading + k * (2 * math.pi / N_RAYS), self.ray_range / CELL)
            * CELL
            for k in range(N_RAYS)
        ]
        return np.array(
            [self._x, self._y, math.cos(self._heading), math.sin(self._heading), *self._goal_xy, *rays],
            dtype=np.float32,
        )

    # -- internals --------------------------------------------------------------------------
    def _parse_action(self, action) -> tuple[float, float, float]:
        """Action -> (forward metres, strafe-left metres, turn-left radians)."""
        if self.action_type == "discrete":
            n = int(self.action_space.n)
            if isinstance(action, (int, np.integer)) and not isinstance(action, (bool, np.bool_)):
                a = int(action)
            else:
                arr = check_finite_action(action)
                if arr.size != 1 or float(arr.reshape(-1)[0]) != round(float(arr.reshape(-1)[0])):
                    raise ValueError(f"invalid discrete action {action!r}: expected one integer in [0, {n})")
                a = int(round(float(arr.reshape(-1)[0])))
            if not 0 <= a < n:
                names = ", ".join(f"{i}={DISCRETE_ACTIONS[i]}" for i in range(n))
                raise ValueError(f"invalid discrete action {action!r}; valid actions ({self.actions}): {names}")
            s, t = self.move_step, self.turn_step
            return ((s, 0.0, 0.0), (0.0, 0.0, t), (0.0, 0.0, -t), (-s, 0.0, 0.0), (0.0, s, 0.0), (0.0, -s, 0.0))[a]
        arr = check_finite_action(action)
        shape = self.action_space.shape
        if arr.shape != shape:
            raise ValueError(
                f"continuous action must have shape {shape} "
                f"({'speed, turn' if shape == (2,) else 'speed, strafe, turn'}), got {arr.shape}"
            )
        arr = np.clip(arr, -1.0, 1.0)
        if shape == (2,):
            return float(arr[0]) * self.move_step, 0.0, float(arr[1]) * self.turn_step
        return float(arr[0]) * self.move_step, float(arr[1]) * self.move_step, float(arr[2]) * self.turn_step

    def _observation(self):
        self._frame = None
        if self.obs_mode == "state":
            return self.state_vector()
        frame = self.ensure_renderer().render(self.world.data, self.camera_pose)
        self._frame = frame
        image = add_camera_noise(frame, self.domain.pixel_noise_std, self._noise_rng)
        image = format_image(image, self.channel_order)
        if self.obs_mode == "pixels":
            return image
        return {"pixels": image, "viewpoint": self.viewpoint}

    def _info(self, collided: bool, success: bool) -> dict[str, Any]:
        r, c = self.agent_cell
        return {
            "viewpoint": self._pose.viewpoint(),
            "maze_seed": self.layout.seed,
            "goal_distance": int(self._goal_dist[r, c]),
            "collided": bool(collided),
            "is_success": bool(success),
            "success": bool(success),
        }

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable description of the current episode's maze and domain."""
        return {"env_id": ENV_ID, "maze": self.layout.summary() if self.layout else None, "domain": asdict(self.domain)}
