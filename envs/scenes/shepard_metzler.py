"""GQN "Shepard-Metzler" objects: 5 or 7 unit cubes joined face to face, seen from a sphere.

An object is a self-avoiding random walk on the integer lattice: each cube shares a face with
the previous one and no two cubes overlap. Each cube takes one colour of a fixed palette of
seven, never the colour of a cube it shares a face with (:func:`colour_cubes`: a lattice cube has
at most six neighbours, so a colour is always free), so neighbouring cubes never merge into one
blob. The object is centred at the origin (mean of the cube centres) and given a uniformly
random 3D rotation: cube ``k`` is centred at ``R (cube_offsets[k] - centre_offset)`` in the
world, ``R`` the rotation of ``rotation_quaternion_wxyz``. Every camera looks at the origin,
with yaw uniform in ``[-pi, pi)`` and pitch uniform in ``pitch_range`` (with ``trajectory=True``
the yaw advances by ``2 pi / views`` per view at one pitch instead), from the distance
:func:`fitted_distance` at which the object, seen from that direction, just fits the frame with
a small margin (``camera_distance`` in the metadata, one per view): objects fill about a third
of the frame and are never cut off by its border. The background is plain black (no floor, no sky). Lengths are in cube
edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.camera import MAX_PITCH, CameraPose, forward_vector, wrap_angle
from envs.domain import Domain, headlight_xml, light_xml
from envs.scenes import SceneRecord, scene_rng
from envs.scenes.canvas import Canvas, get_canvas
from envs.scenes.mjcf import HIDDEN_GROUP, VISIBLE_GROUP

#: Valid numbers of cubes (GQN's shepard_metzler_5_parts and _7_parts).
PARTS: tuple[int, ...] = (5, 7)

#: The fixed palette: cube colour index -> (name, RGB in [0, 1]).
PALETTE: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("red", (0.9, 0.15, 0.15)),
    ("green", (0.2, 0.8, 0.25)),
    ("blue", (0.2, 0.35, 0.95)),
    ("yellow", (0.95, 0.85, 0.2)),
    ("magenta", (0.85, 0.25, 0.85)),
    ("cyan", (0.2, 0.85, 0.9)),
    ("white", (0.92, 0.92, 0.92)),
)

DISTANCE: dict[int, float] = {5: 7.0, 7: 9.5}
"""The fixed camera distances (cube edges) per number of parts used before distances were fitted
per view: the farthest cube corner from the centre of any walk is 2.60 (5 parts) and 3.57 (7, a
straight bar); divided by sin(22.5 deg) that is 6.79 and 9.33. Kept as an upper bound:
:func:`fitted_distance` never exceeds it by more than :data:`FRAME_MARGIN`."""
FRAME_MARGIN = 1.06
"""Ratio of the half field of view to the object's largest half-extent in a view (see
:func:`fitted_distance`): 1.06 leaves about 2 pixels of black round the object at 64 px."""
FOVY_DEG = 45.0
"""Vertical field of view (degrees)."""
PITCH_RANGE = (-np.pi / 3.0, np.pi / 3.0)
"""Default range of camera pitch (radians)."""

#: Six unit steps of the lattice walk.
_STEPS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.int64)
_LIGHTING = Domain(light_direction=(0.3, 0.2, -1.0), light_intensity=0.6, ambient=0.35)


def self_avoiding_walk(rng: np.random.Generator, parts: int) -> np.ndarray:
    """Integer cube offsets ``[parts, 3]`` starting at the origin, each a unit step from the previous, all distinct."""
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    while True:  # a 3D walk traps itself only after dozens of steps; restart if it ever does
        cells = [np.zeros(3, dtype=np.int64)]
        seen = {(0, 0, 0)}
        for _ in range(parts - 1):
            free = [s for s in _STEPS if tuple(cells[-1] + s) not in seen]
            if not free:
                break
            nxt = cells[-1] + free[int(rng.integers(len(free)))]
            cells.append(nxt)
            seen.add(tuple(int(v) for v in nxt))
        if len(cells) == parts:
            return np.stack(cells)


def colour_cubes(rng: np.random.Generator, offsets: np.ndarray, n_colours: int = 7) -> np.ndarray:
    """Palette indices ``[P]`` for cubes at ``offsets``: uniform among the colours no face-sharing neighbour has yet.

    Cubes are coloured in walk order; a cube has at most six lattice neighbours, so with seven
    colours one is always free and no two face-sharing cubes ever share a colour.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    if n_colours < 7:
        raise ValueError(f"n_colours must be >= 7 (a cube can have 6 neighbours), got {n_colours}")
    colours = np.full(len(offsets), -1, dtype=np.int64)
    for k in range(len(offsets)):
        adjacent = np.abs(offsets[:k] - offsets[k]).sum(-1) == 1
        free = np.setdiff1d(np.arange(n_colours), colours[:k][adjacent])
        colours[k] = free[int(rng.integers(len(free)))]
    return colours


def adjacent_same_colour(offsets: np.ndarray, colours: np.ndarray) -> bool:
    """Whether two face-sharing cubes (lattice ``offsets`` ``[P,3]``) have the same colour index."""
    offsets, colours = np.asarray(offsets), np.asarray(colours)
    touching = np.abs(offsets[:, None] - offsets[None]).sum(-1) == 1
    return bool((touching & (colours[:, None] == colours[None])).any())


_CORNERS = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])


def object_corners(centres: np.ndarray, quaternion: np.ndarray) -> np.ndarray:
    """World positions ``[8P, 3]`` of every corner of unit cubes at ``centres`` ``[P,3]`` rotated by ``quaternion``."""
    points = (np.asarray(centres, dtype=np.float64)[:, None] + _CORNERS).reshape(-1, 3)
    return points @ quaternion_matrix(np.asarray(quaternion, dtype=np.float64)).T


def fitted_distance(
    points: np.ndarray, yaw: float, pitch: float, fovy_deg: float = 45.0, margin: float = FRAME_MARGIN
) -> float:
    """Least distance from the origin at which a camera looking at it along ``(yaw, pitch)`` sees all ``points``.

    Exact for a square image: a point ``p`` with right/up coordinates ``(x, y)`` and depth offset
    ``p . f`` (``f`` the viewing direction) stays inside the frame when
    ``max(|x|, |y|) <= tan(fovy / 2) / margin * (d + p . f)``; the distance is the largest ``d``
    any point needs. ``margin`` > 1 leaves a border of black round the object.
    """
    f = forward_vector(float(yaw), float(pitch))
    right = np.array([-np.sin(yaw), np.cos(yaw), 0.0])
    up = np.cross(right, f)
    k = np.tan(np.deg2rad(fovy_deg) / 2.0) / float(margin)
    p = np.asarray(points, dtype=np.float64)
    return float(np.max(np.maximum(np.abs(p @ right), np.abs(p @ up)) / k - p @ f))


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random unit quaternion ``(w, x, y, z)`` with ``w >= 0``."""
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def quaternion_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of a unit quaternion ``(w, x, y, z)``."""
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def sample_cameras(
    rng: np.random.Generator,
    views: int,
    distance: float,
    pitch_range: tuple[float, float] = PITCH_RANGE,
    trajectory: bool = False,
) -> list[CameraPose]:
    """Cameras at ``distance`` from the origin, each looking at it."""
    if trajectory:
        yaw0, sign = rng.uniform(-np.pi, np.pi), (1.0 if rng.uniform() < 0.5 else -1.0)
        yaws = yaw0 + sign * 2.0 * np.pi / views * np.arange(views)
        pitches = np.full(views, rng.uniform(*pitch_range))
    else:
        yaws = rng.uniform(-np.pi, np.pi, views)
        pitches = rng.uniform(pitch_range[0], pitch_range[1], views)
    poses = []
    for yaw, pitch in zip(yaws, pitches):
        yaw = float(wrap_angle(yaw))
        eye = -distance * forward_vector(yaw, float(pitch))
        poses.append(CameraPose(tuple(float(v) for v in eye), yaw, float(pitch)))
    return poses


def _template_xml() -> str:
    cubes = "".join(
        f'<geom name="cube{k}" type="box" size="0.5 0.5 0.5" pos="{k} 0 0" group="{HIDDEN_GROUP}" '
        'contype="0" conaffinity="0"/>'
        for k in range(max(PARTS))
    )
    return (
        '<mujoco model="gqn_shepard_metzler">'
        f"{headlight_xml(_LIGHTING)}"
        f"<worldbody>{light_xml(_LIGHTING)}"
        f'<body name="object" mocap="true">{cubes}</body>'
        "</worldbody></mujoco>"
    )


def _build_canvas(size: int) -> Canvas:
    import mujoco

    canvas = Canvas(_template_xml(), size, fovy_deg=FOVY_DEG, extent=4.0)
    # Cube positions are rewritten per scene: stop MuJoCo's kinematics from reusing the body frame
    # for geoms that happened to coincide with it at compile time (cube 0 sits at the origin).
    canvas.model.geom_sameframe[:] = int(mujoco.mjtSameFrame.mjSAMEFRAME_NONE)
    return canvas


def _prepare_canvas(centres: np.ndarray, colours: np.ndarray, quaternion: np.ndarray, size: int) -> Canvas:
    """This process's cached template with the cubes of one object written into it."""
    import mujoco

    canvas = get_canvas("shepard-metzler", size, _build_canvas)
    m, d = canvas.model, canvas.data
    for k in range(max(PARTS)):
        g = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, f"cube{k}")
        if k < len(centres):
            m.geom_group[g] = VISIBLE_GROUP
            m.geom_pos[g] = centres[k]
            m.geom_rgba[g] = (*PALETTE[int(colours[k])][1], 1.0)
        else:
            m.geom_group[g] = HIDDEN_GROUP
            m.geom_pos[g] = (0.0, 0.0, 0.0)
    d.mocap_pos[0] = (0.0, 0.0, 0.0)
    d.mocap_quat[0] = quaternion
    return canvas


def render_object(
    centres: np.ndarray, colours: np.ndarray, quaternion: np.ndarray, poses: list[CameraPose], size: int
) -> np.ndarray:
    """Render cubes at ``centres`` ``[P,3]`` (object frame) with palette indices ``colours`` ``[P]``,
    the object rotated by ``quaternion`` (w, x, y, z): uint8 [V, size, size, 3]."""
    return _prepare_canvas(centres, colours, quaternion, size).render(poses)


def label_object(
    centres: np.ndarray, colours: np.ndarray, quaternion: np.ndarray, poses: list[CameraPose], size: int
) -> np.ndarray:
    """Segmentation of :func:`render_object`'s views: int8 [V, size, size], cube index ``k`` or -1 (background)."""
    import mujoco

    canvas = _prepare_canvas(centres, colours, quaternion, size)
    ids = canvas.segment(poses)
    lut = np.full(canvas.model.ngeom + 1, -1, dtype=np.int8)  # index 0 <- geom id -1
    for k in range(len(centres)):
        lut[1 + mujoco.mj_name2id(canvas.model, mujoco.mjtObj.mjOBJ_GEOM, f"cube{k}")] = k
    return lut[ids + 1]


@dataclass(frozen=True)
class SMScene:
    """Everything drawn for one Shepard-Metzler scene (what :func:`generate` renders)."""

    offsets: np.ndarray
    """Integer cube offsets ``[P,3]`` of the walk."""
    colours: np.ndarray
    """Palette index of each cube ``[P]``."""
    quaternion: np.ndarray
    """Object rotation ``(w, x, y, z)``."""
    centre: np.ndarray
    """Mean of the offsets (the object is drawn about it)."""
    distances: np.ndarray
    """Camera distance of each view ``[V]`` (:func:`fitted_distance`)."""
    poses: list
    """Camera poses (:class:`envs.camera.CameraPose`), one per view."""


def sample_scene(
    seed: int,
    index: int,
    views: int,
    parts: int,
    pitch_range: tuple[float, float] = PITCH_RANGE,
    trajectory: bool = False,
) -> SMScene:
    """Draw scene ``index`` of base ``seed`` (unvalidated arguments: :func:`generate` checks them)."""
    rng = scene_rng(seed, index)
    offsets = self_avoiding_walk(rng, int(parts))
    colours = colour_cubes(rng, offsets, len(PALETTE))
    quaternion = random_rotation(rng)
    centre = offsets.mean(axis=0)
    directions = sample_cameras(rng, int(views), 1.0, pitch_range, bool(trajectory))
    corners = object_corners(offsets - centre, quaternion)
    distances = np.array([fitted_distance(corners, p.yaw, p.pitch, FOVY_DEG) for p in directions])
    poses = [CameraPose(tuple(float(v) * d for v in p.position), p.yaw, p.pitch) for p, d in zip(directions, distances)]
    return SMScene(offsets, colours, quaternion, centre, distances, poses)


def generate(
    seed: int,
    index: int,
    views: int = 15,
    size: int = 64,
    *,
    parts: int = 7,
    pitch_range: tuple[float, float] = PITCH_RANGE,
    trajectory: bool = False,
) -> SceneRecord:
    """Scene ``index`` of a Shepard-Metzler dataset with base ``seed``.

    Args:
        seed, index: the scene is a function of these two only.
        views: number of cameras. size: image side in pixels.
        parts: number of cubes, 5 or 7.
        pitch_range: ``(low, high)`` camera pitch in radians, within ``+-85`` degrees.
        trajectory: cameras on one circle of latitude at consecutive yaws instead of at random.
    """
    if int(views) < 1:
        raise ValueError(f"views must be >= 1, got {views}")
    if int(size) < 8:
        raise ValueError(f"size must be >= 8 pixels, got {size}")
    if isinstance(parts, bool) or parts not in PARTS:
        raise ValueError(f"parts must be one of {', '.join(map(str, PARTS))}, got {parts!r}")
    try:
        lo, hi = (float(v) for v in pitch_range)
    except (TypeError, ValueError):
        raise ValueError(f"pitch_range must be a (low, high) pair of radians, got {pitch_range!r}") from None
    if not (-MAX_PITCH <= lo <= hi <= MAX_PITCH):
        raise ValueError(
            f"pitch_range must satisfy -{np.rad2deg(MAX_PITCH):.0f} deg <= low <= high <= "
            f"{np.rad2deg(MAX_PITCH):.0f} deg (in radians), got {pitch_range!r}"
        )
    obj = sample_scene(seed, index, int(views), int(parts), (lo, hi), bool(trajectory))
    offsets, colours, quaternion, poses, centre = obj.offsets, obj.colours, obj.quaternion, obj.poses, obj.centre
    frames = render_object(offsets - centre, colours, quaternion, poses, int(size))
    metadata: dict[str, Any] = {
        "source": "shepard-metzler",
        "seed": int(seed),
        "index": int(index),
        "parts": int(parts),
        "cube_offsets": offsets.tolist(),
        "centre_offset": centre.tolist(),
        "colours": [PALETTE[int(c)][0] for c in colours],
        "colour_indices": [int(c) for c in colours],
        "palette": {name: list(rgb) for name, rgb in PALETTE},
        "rotation_quaternion_wxyz": quaternion.tolist(),
        "camera_distance": [float(d) for d in obj.distances],
        "pitch_range": [lo, hi],
        "trajectory": bool(trajectory),
        "fovy_deg": FOVY_DEG,
    }
    cameras = np.stack([p.viewpoint() for p in poses]).astype(np.float32)
    extras = {"cube_offsets": offsets.astype(np.int8), "colour_indices": colours.astype(np.int8)}
    return SceneRecord(frames=frames, cameras=cameras, metadata=metadata, extras=extras)


__all__ = [
    "DISTANCE",
    "SMScene",
    "adjacent_same_colour",
    "colour_cubes",
    "fitted_distance",
    "object_corners",
    "sample_scene",
    "PALETTE",
    "PARTS",
    "generate",
    "label_object",
    "quaternion_matrix",
    "random_rotation",
    "render_object",
    "sample_cameras",
    "self_avoiding_walk",
]
