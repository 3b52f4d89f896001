"""GQN "rooms": a square walled room holding 1-3 objects of 7 shapes, seen from V cameras.

Each scene draws a wall colour, a floor colour and objects (shape, colour, position on the floor
and, with ``object_rotations``, a yaw about the vertical axis; objects always rest on their base).
Camera variants follow DeepMind's gqn-datasets:

* ``camera="ring"`` (``rooms_ring_camera``): every camera at the same height on a circle of
  fixed radius round the room centre, looking at a point above the centre. Angles are drawn
  independently (as in GQN) or, with ``trajectory=True``, follow each other in steps of
  ``angle_step`` (default ``2 pi / views``) so consecutive views form pairs for NISO.
* ``camera="free"`` (``rooms_free_camera_{no,with}_object_rotations``): random positions inside
  the room and random heights, each looking at a random point on or near a random object (plus a
  little yaw/pitch jitter), so nearly every view shows an object. With ``trajectory=True`` the
  camera moves along a straight segment while its gaze slides between two such points.

The room is closed: a ceiling in the wall colour sits on the walls, so no view ever looks into
the void above them (``wm envs stats`` measures both on segmentation renders).

The scene depends only on ``(seed, index)``: the layout is drawn first, so the objects of a
scene are the same whatever the camera variant, ``views`` or ``object_rotations`` (which only
zeroes the drawn yaws).
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from envs.camera import CameraPose, wrap_angle
from envs.domain import Domain, headlight_xml, light_xml
from envs.scenes import SceneRecord, scene_rng
from envs.scenes.canvas import Canvas, get_canvas
from envs.scenes.mjcf import (
    HIDDEN_GROUP,
    SHAPE_SPECS,
    SHAPES,
    VISIBLE_GROUP,
    check_shapes,
    shape_assets_xml,
    yaw_quaternion,
)

#: Camera variants.
CAMERAS: tuple[str, ...] = ("ring", "free")
#: Most objects a room can hold (the template model has this many slots).
MAX_OBJECTS = 5

ROOM_HALF_SIZE = 3.0
"""Half the side of the square room (metres); the floor spans ``[-3, 3]^2``."""
WALL_HEIGHT = 3.5
"""Height of the walls (metres); a ceiling in the wall colour closes the room at this height."""
OBJECT_AREA_RADIUS = 1.8
"""Objects lie entirely inside this disc round the room centre (metres)."""
OBJECT_GAP = 0.1
"""Least horizontal gap between two objects' footprints (metres)."""
RING_RADIUS = 2.6
"""Distance of ring cameras from the vertical axis through the room centre (metres)."""
RING_HEIGHT = 1.2
"""Height of ring cameras (metres)."""
RING_TARGET = (0.0, 0.0, 0.3)
"""Point every ring camera looks at (metres)."""
FREE_HEIGHT = (0.5, 1.6)
"""Range of free camera heights (metres)."""
FREE_WALL_MARGIN = 0.35
"""Least distance from a free camera to a wall (metres)."""
FREE_OBJECT_CLEARANCE = 0.3
"""Least horizontal distance from a free camera to an object's footprint (metres)."""
FREE_MIN_GAZE = 1.2
"""Least distance from a free camera to the point it looks at (metres)."""
FREE_GAZE_SPREAD = 0.3
"""Half-width (metres) of the square round an object's axis where a free camera's gaze point lies."""
FREE_PITCH = (np.deg2rad(-50.0), np.deg2rad(15.0))
"""Range of free camera pitch (radians)."""
FREE_JITTER = (0.25, 0.1)
"""Half-widths of the uniform yaw and pitch jitter of free cameras (radians)."""
FREE_MAX_STEP = 0.3
"""Largest distance (metres) between consecutive views of a free-camera trajectory."""
FREE_MAX_PATH = 3.0
"""Largest length (metres) of a free-camera trajectory."""
FOVY_DEG = 60.0
"""Vertical field of view of every camera (degrees)."""

#: Lighting of every room (directional light from above plus a camera headlight).
ROOM_LIGHTING = Domain(light_direction=(0.5, 0.3, -0.8), light_intensity=0.55, ambient=0.45)

_MAX_TRIES = 10_000


@dataclass(frozen=True)
class RoomObject:
    """One object resting on the floor."""

    shape: str
    """One of :data:`envs.scenes.mjcf.SHAPES`."""
    rgb: tuple[float, float, float]
    """Colour in [0, 1]."""
    position: tuple[float, float]
    """Floor position ``(x, y)`` of the shape's vertical axis (metres)."""
    yaw: float
    """Rotation about the vertical axis (radians)."""

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable description: shape, colour, position (x, y, z of the base) and rotation."""
        return {
            "shape": self.shape,
            "colour": [round(c, 6) for c in self.rgb],
            "position": [float(self.position[0]), float(self.position[1]), 0.0],
            "rotation": {"yaw": float(self.yaw), "quaternion_wxyz": [float(q) for q in yaw_quaternion(self.yaw)]},
        }


@dataclass(frozen=True)
class RoomLayout:
    """Everything drawn about a room except the cameras."""

    wall_rgb: tuple[float, float, float]
    """Colour of all four walls."""
    floor_rgb: tuple[float, float, float]
    """Colour of the floor."""
    objects: tuple[RoomObject, ...] = field(default_factory=tuple)
    """The objects (at most :data:`MAX_OBJECTS`)."""


def _hsv(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> tuple[float, float, float]:
    h, s, v = rng.uniform(0.0, 1.0), rng.uniform(*sat), rng.uniform(*val)
    return tuple(round(float(c), 6) for c in colorsys.hsv_to_rgb(h, s, v))


def _check_n_objects(n_objects: object) -> tuple[int, int]:
    if isinstance(n_objects, (int, np.integer)) and not isinstance(n_objects, bool):
        lo = hi = int(n_objects)
    elif (
        isinstance(n_objects, (tuple, list))
        and len(n_objects) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in n_objects)
    ):
        lo, hi = int(n_objects[0]), int(n_objects[1])
    else:
        raise ValueError(f"n_objects must be an int or an inclusive (low, high) pair of ints, got {n_objects!r}")
    if not 1 <= lo <= hi <= MAX_OBJECTS:
        raise ValueError(f"n_objects must lie in 1..{MAX_OBJECTS} with low <= high, got {n_objects!r}")
    return lo, hi


def sample_layout(
    rng: np.random.Generator,
    n_objects: int | tuple[int, int] = (1, 3),
    shapes: Sequence[str] = SHAPES,
    object_rotations: bool = True,
) -> RoomLayout:
    """Draw wall/floor colours and non-overlapping objects inside the object area."""
    lo, hi = _check_n_objects(n_objects)
    shapes = check_shapes(shapes)
    wall = _hsv(rng, (0.1, 0.6), (0.45, 0.95))
    floor = _hsv(rng, (0.1, 0.6), (0.45, 0.95))
    n = int(rng.integers(lo, hi + 1))
    objects: list[RoomObject] = []
    for _ in range(n):
        shape = shapes[int(rng.integers(len(shapes)))]
        rgb = _hsv(rng, (0.55, 1.0), (0.55, 1.0))
        yaw = float(rng.uniform(-np.pi, np.pi))  # drawn always: rotations on/off keep the same layout
        fp = SHAPE_SPECS[shape].footprint_radius
        for _ in range(_MAX_TRIES):
            r = (OBJECT_AREA_RADIUS - fp) * np.sqrt(rng.uniform())
            a = rng.uniform(-np.pi, np.pi)
            xy = (float(r * np.cos(a)), float(r * np.sin(a)))
            if all(
                np.hypot(xy[0] - o.position[0], xy[1] - o.position[1])
                >= fp + SHAPE_SPECS[o.shape].footprint_radius + OBJECT_GAP
                for o in objects
            ):
                break
        else:  # pragma: no cover - MAX_OBJECTS shapes always fit the object area
            raise RuntimeError("could not place the room's objects without overlap")
        objects.append(RoomObject(shape, rgb, xy, yaw if object_rotations else 0.0))
    return RoomLayout(wall, floor, tuple(objects))


def _free_position_ok(p: np.ndarray, layout: RoomLayout) -> bool:
    lim = ROOM_HALF_SIZE - FREE_WALL_MARGIN
    if abs(p[0]) > lim or abs(p[1]) > lim:
        return False
    return all(
        np.hypot(p[0] - o.position[0], p[1] - o.position[1])
        >= SHAPE_SPECS[o.shape].footprint_radius + FREE_OBJECT_CLEARANCE
        for o in layout.objects
    )


def _free_position(rng: np.random.Generator, layout: RoomLayout) -> np.ndarray:
    lim = ROOM_HALF_SIZE - FREE_WALL_MARGIN
    for _ in range(_MAX_TRIES):
        p = np.array([rng.uniform(-lim, lim), rng.uniform(-lim, lim), rng.uniform(*FREE_HEIGHT)])
        if _free_position_ok(p, layout):
            return p
    raise RuntimeError("could not place a free camera")  # pragma: no cover


def _gaze_target(rng: np.random.Generator, eye: np.ndarray, layout: RoomLayout) -> np.ndarray | None:
    """A point on or near a random object, at least :data:`FREE_MIN_GAZE` from ``eye``; None if none is found."""
    for _ in range(100):
        obj = layout.objects[int(rng.integers(len(layout.objects)))]
        x, y = np.asarray(obj.position) + rng.uniform(-FREE_GAZE_SPREAD, FREE_GAZE_SPREAD, 2)
        t = np.array([x, y, rng.uniform(0.0, SHAPE_SPECS[obj.shape].height)])
        if np.linalg.norm(t - eye) >= FREE_MIN_GAZE:
            return t
    return None


def _free_view(rng: np.random.Generator, layout: RoomLayout) -> tuple[np.ndarray, np.ndarray]:
    """A free camera position and the point it looks at (position redrawn if no object is far enough)."""
    for _ in range(_MAX_TRIES):
        eye = _free_position(rng, layout)
        target = _gaze_target(rng, eye, layout)
        if target is not None:
            return eye, target
    raise RuntimeError("could not place a free camera")  # pragma: no cover


def _clip_pitch(pose: CameraPose, d_yaw: float = 0.0, d_pitch: float = 0.0) -> CameraPose:
    pitch = float(np.clip(pose.pitch + d_pitch, FREE_PITCH[0], FREE_PITCH[1]))
    return CameraPose(pose.position, float(wrap_angle(pose.yaw + d_yaw)), pitch)


def sample_cameras(
    rng: np.random.Generator,
    layout: RoomLayout,
    views: int,
    camera: str = "ring",
    trajectory: bool = False,
    angle_step: float | None = None,
) -> list[CameraPose]:
    """Draw ``views`` camera poses of one variant (see the module docstring)."""
    if camera not in CAMERAS:
        raise ValueError(f"unknown camera variant {camera!r}; valid values: {', '.join(map(repr, CAMERAS))}")
    if angle_step is not None and not (camera == "ring" and trajectory):
        raise ValueError("angle_step applies only to camera='ring' with trajectory=True")
    if angle_step is not None and not (np.isfinite(angle_step) and angle_step > 0):
        raise ValueError(f"angle_step must be a positive number of radians, got {angle_step!r}")
    if camera == "ring":
        target = np.asarray(RING_TARGET)
        if trajectory:
            step = 2.0 * np.pi / views if angle_step is None else float(angle_step)
            start, sign = rng.uniform(-np.pi, np.pi), (1.0 if rng.uniform() < 0.5 else -1.0)
            angles = start + sign * step * np.arange(views)
        else:
            angles = rng.uniform(-np.pi, np.pi, views)
        return [
            CameraPose.look_at(np.array([RING_RADIUS * np.cos(a), RING_RADIUS * np.sin(a), RING_HEIGHT]), target)
            for a in angles
        ]
    if not trajectory:
        poses = []
        for _ in range(views):
            eye, target = _free_view(rng, layout)
            jitter = rng.uniform(-1.0, 1.0, 2) * FREE_JITTER
            poses.append(_clip_pitch(CameraPose.look_at(eye, target), *jitter))
        return poses
    # A straight walk with steps of at most FREE_MAX_STEP, every point clear of walls and objects,
    # its gaze sliding between two targets (each far enough from every point of the walk).
    for _ in range(_MAX_TRIES):
        start, t0 = _free_view(rng, layout)
        heading = rng.uniform(-np.pi, np.pi)
        length = rng.uniform(0.3, 1.0) * min(FREE_MAX_STEP * max(views - 1, 1), FREE_MAX_PATH)
        end = start + length * np.array([np.cos(heading), np.sin(heading), 0.0])
        end[2] = rng.uniform(*FREE_HEIGHT)
        t1 = _gaze_target(rng, end, layout)
        if t1 is None:
            continue
        s = np.linspace(0.0, 1.0, views)[:, None]
        eyes, targets = start + s * (end - start), t0 + s * (t1 - t0)
        if all(_free_position_ok(e, layout) for e in eyes) and np.all(
            np.linalg.norm(targets - eyes, axis=-1) >= FREE_MIN_GAZE
        ):
            return [_clip_pitch(CameraPose.look_at(e, t)) for e, t in zip(eyes, targets)]
    raise RuntimeError("could not find a free camera trajectory")  # pragma: no cover


def _template_xml() -> str:
    h, t, wh = ROOM_HALF_SIZE, 0.05, WALL_HEIGHT / 2.0
    walls = "".join(
        f'<geom name="wall{i}" type="box" size="{sx:.3f} {sy:.3f} {wh:.3f}" pos="{x:.3f} {y:.3f} {wh:.3f}" '
        'contype="0" conaffinity="0"/>'
        for i, (sx, sy, x, y) in enumerate(
            [(h + 2 * t, t, 0.0, h + t), (h + 2 * t, t, 0.0, -h - t), (t, h, h + t, 0.0), (t, h, -h - t, 0.0)]
        )
    )
    ceiling = (
        f'<geom name="ceiling" type="box" size="{h + 2 * t:.3f} {h + 2 * t:.3f} {t:.3f}" '
        f'pos="0 0 {WALL_HEIGHT + t:.3f}" contype="0" conaffinity="0"/>'
    )
    slots = "".join(
        f'<body name="slot{k}" mocap="true" pos="0 0 -10">'
        + "".join(SHAPE_SPECS[s].geom_xml(f"slot{k}_{s}", HIDDEN_GROUP) for s in SHAPES)
        + "</body>"
        for k in range(MAX_OBJECTS)
    )
    return (
        '<mujoco model="gqn_rooms">'
        f"{headlight_xml(ROOM_LIGHTING)}"
        f"<asset>{shape_assets_xml()}</asset>"
        f"<worldbody>{light_xml(ROOM_LIGHTING)}"
        # The third plane size is the spacing of its render grid: a coarse grid renders 3x faster.
        # The floor runs under the walls: a floor ending exactly at their faces leaves pixel cracks.
        f'<geom name="floor" type="plane" size="{h + 2 * t:.3f} {h + 2 * t:.3f} 1.0" contype="0" conaffinity="0"/>'
        f"{walls}{ceiling}{slots}</worldbody></mujoco>"
    )


def _build_canvas(size: int) -> Canvas:
    return Canvas(_template_xml(), size, fovy_deg=FOVY_DEG, extent=ROOM_HALF_SIZE)


def _prepare_canvas(layout: RoomLayout, size: int) -> Canvas:
    """This process's cached template, with colours, shapes and poses of ``layout`` written into it."""
    import mujoco

    if len(layout.objects) > MAX_OBJECTS:
        raise ValueError(f"a room holds at most {MAX_OBJECTS} objects, got {len(layout.objects)}")
    canvas = get_canvas("rooms", size, _build_canvas)
    m, d = canvas.model, canvas.data

    def gid(name: str) -> int:
        return mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, name)

    m.geom_rgba[gid("floor")] = (*layout.floor_rgb, 1.0)
    for name in ("wall0", "wall1", "wall2", "wall3", "ceiling"):
        m.geom_rgba[gid(name)] = (*layout.wall_rgb, 1.0)
    # Every slot is rewritten on every scene: unused slots are hidden and parked below the floor.
    for k in range(MAX_OBJECTS):
        obj = layout.objects[k] if k < len(layout.objects) else None
        for s in SHAPES:
            g = gid(f"slot{k}_{s}")
            shown = obj is not None and obj.shape == s
            m.geom_group[g] = VISIBLE_GROUP if shown else HIDDEN_GROUP
            m.geom_rgba[g] = (*obj.rgb, 1.0) if shown else (0.5, 0.5, 0.5, 1.0)
        d.mocap_pos[k] = (obj.position[0], obj.position[1], 0.0) if obj else (0.0, 0.0, -10.0)
        d.mocap_quat[k] = yaw_quaternion(obj.yaw) if obj else (1.0, 0.0, 0.0, 0.0)
    return canvas


def render_layout(layout: RoomLayout, poses: Sequence[CameraPose], size: int) -> np.ndarray:
    """Render ``layout`` from each pose: uint8 [V, size, size, 3] (uses this process's cached template)."""
    return _prepare_canvas(layout, size).render(poses)


#: Label of :func:`label_layout` for pixels that see no geom at all (void, rendered black).
VOID_LABEL = -1
#: Label of :func:`label_layout` for the room itself (floor, walls, ceiling).
ROOM_LABEL = 0


def label_layout(layout: RoomLayout, poses: Sequence[CameraPose], size: int) -> np.ndarray:
    """What each pixel of each view shows, from a segmentation render: int8 [V, size, size].

    :data:`VOID_LABEL` (-1) where no geom is seen, :data:`ROOM_LABEL` (0) on the floor, walls or
    ceiling, ``k + 1`` on object ``k`` of ``layout.objects``.
    """
    canvas = _prepare_canvas(layout, size)
    ids = canvas.segment(poses)
    lut = np.zeros(canvas.model.ngeom + 1, dtype=np.int8)  # index 0 <- geom id -1
    lut[0] = VOID_LABEL
    for k in range(len(layout.objects)):
        lut[1 + np.flatnonzero(canvas.model.geom_bodyid == canvas.model.body(f"slot{k}").id)] = k + 1
    return lut[ids + 1]


def layout_factors(layout: RoomLayout, shapes: Sequence[str] = SHAPES) -> dict[str, Any]:
    """The layout's ground-truth factors as metadata: ``{"factors": {name: value}, "factor_kinds": {name: kind}}``.

    ``n_objects`` (categorical), ``wall/hue|saturation|value`` and ``floor/...`` (HSV of the
    rendered colours, in [0, 1]) and, per object slot ``k < MAX_OBJECTS``, ``object<k>/shape``
    (categorical: index into ``shapes``), ``object<k>/hue|saturation|value``, ``object<k>/x|y``
    (floor position, metres) and ``object<k>/yaw`` (radians); a slot the room leaves empty holds
    ``None``. The camera pose of each view is the dataset's ``cameras`` array.
    """
    factors: dict[str, Any] = {"n_objects": len(layout.objects)}
    kinds = {"n_objects": "categorical"}
    for part, rgb in (("wall", layout.wall_rgb), ("floor", layout.floor_rgb)):
        for name, v in zip(("hue", "saturation", "value"), colorsys.rgb_to_hsv(*rgb), strict=True):
            factors[f"{part}/{name}"], kinds[f"{part}/{name}"] = float(v), "continuous"
    for k in range(MAX_OBJECTS):
        obj = layout.objects[k] if k < len(layout.objects) else None
        hsv = colorsys.rgb_to_hsv(*obj.rgb) if obj else (None,) * 3
        values = {
            "shape": list(shapes).index(obj.shape) if obj else None,
            **dict(zip(("hue", "saturation", "value"), (None if v is None else float(v) for v in hsv), strict=True)),
            "x": float(obj.position[0]) if obj else None,
            "y": float(obj.position[1]) if obj else None,
            "yaw": float(obj.yaw) if obj else None,
        }
        for name, v in values.items():
            factors[f"object{k}/{name}"] = v
            kinds[f"object{k}/{name}"] = "categorical" if name == "shape" else "continuous"
    return {"factors": factors, "factor_kinds": kinds}


def generate(
    seed: int,
    index: int,
    views: int = 10,
    size: int = 64,
    *,
    camera: str = "ring",
    object_rotations: bool = True,
    trajectory: bool = False,
    n_objects: int | tuple[int, int] = (1, 3),
    shapes: Sequence[str] = SHAPES,
    angle_step: float | None = None,
) -> SceneRecord:
    """Scene ``index`` of a rooms dataset with base ``seed``.

    Args:
        seed, index: the scene is a function of these two only.
        views: number of cameras. size: image side in pixels.
        camera: ``"ring"`` or ``"free"`` (see module docstring).
        object_rotations: give each object a random yaw (else all yaws are 0).
        trajectory: order views along a path (ring: consecutive angles; free: a straight walk).
        n_objects: number of objects, or an inclusive ``(low, high)`` range within 1..5.
        shapes: shapes to draw objects from (default all seven).
        angle_step: ring trajectory step in radians (default ``2 pi / views``).

    The metadata records the layout (colours, objects), the camera settings and the named
    ground-truth factors of :func:`layout_factors`.
    """
    if int(views) < 1:
        raise ValueError(f"views must be >= 1, got {views}")
    if int(size) < 8:
        raise ValueError(f"size must be >= 8 pixels, got {size}")
    if camera not in CAMERAS:
        raise ValueError(f"unknown camera variant {camera!r}; valid values: {', '.join(map(repr, CAMERAS))}")
    shapes = check_shapes(shapes)
    rng = scene_rng(seed, index)
    layout = sample_layout(rng, n_objects, shapes, bool(object_rotations))
    poses = sample_cameras(rng, layout, int(views), camera, bool(trajectory), angle_step)
    frames = render_layout(layout, poses, int(size))
    metadata: dict[str, Any] = {
        "source": "rooms",
        "seed": int(seed),
        "index": int(index),
        "camera": camera,
        "object_rotations": bool(object_rotations),
        "trajectory": bool(trajectory),
        "wall_colour": list(layout.wall_rgb),
        "floor_colour": list(layout.floor_rgb),
        "objects": [o.to_json() for o in layout.objects],
        "room_half_size": ROOM_HALF_SIZE,
        "wall_height": WALL_HEIGHT,
        "fovy_deg": FOVY_DEG,
        "shapes": list(shapes),
        **layout_factors(layout, shapes),
    }
    if camera == "ring":
        metadata.update(ring_radius=RING_RADIUS, ring_height=RING_HEIGHT, ring_target=list(RING_TARGET))
        if trajectory:
            metadata["angle_step"] = float(2.0 * np.pi / views if angle_step is None else angle_step)
    cameras = np.stack([p.viewpoint() for p in poses]).astype(np.float32)
    return SceneRecord(frames=frames, cameras=cameras, metadata=metadata)


__all__ = [
    "CAMERAS",
    "MAX_OBJECTS",
    "RoomLayout",
    "RoomObject",
    "generate",
    "label_layout",
    "layout_factors",
    "render_layout",
    "sample_cameras",
    "sample_layout",
]
