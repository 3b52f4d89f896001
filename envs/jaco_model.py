"""MJCF of a Jaco-style arm built from primitive geoms, and the task's sampling of poses.

The arm has 9 hinge joints like the Kinova Jaco of the GQN paper: 6 arm joints (base yaw,
shoulder pitch, elbow pitch, forearm roll, wrist pitch, hand roll) and 3 finger joints. Every
joint is driven by a MuJoCo ``velocity`` actuator (``ctrl`` = desired joint velocity, rad/s);
the links are gravity-compensated (``gravcomp="1"``), as a real arm's controller would be, so
zero control holds the current pose. The target is a sphere on a mocap body (placed through
``data.mocap_pos``); it never collides with anything. The arm collides with the floor only.

Appearance is not baked into the model: :func:`build_model` compiles one model whose materials,
light and headlight are set from a :class:`envs.domain.Domain` by :func:`apply_domain`, which
only writes ``model`` fields (``mat_rgba``, ``geom_matid``, ``light_*``, ``vis.headlight``).
Changing domain at every reset therefore costs microseconds instead of a recompile.

This module is shared by the environment (:mod:`envs.jaco`) and the GQN-style scene generator
(:mod:`envs.scenes.jaco_scenes`).
"""

from __future__ import annotations

from dataclasses import replace

import mujoco
import numpy as np

from envs.camera import OrbitRigConfig
from envs.domain import TEXTURES, Domain, floor_texture_xml, headlight_xml, light_xml

#: Joint names in ``qpos`` / action order: 6 arm joints, then 3 fingers.
ARM_JOINTS: tuple[str, ...] = ("base_yaw", "shoulder", "elbow", "forearm_roll", "wrist_pitch", "hand_roll")
FINGER_JOINTS: tuple[str, ...] = ("finger_1", "finger_2", "finger_3")
JOINT_NAMES: tuple[str, ...] = ARM_JOINTS + FINGER_JOINTS
N_JOINTS = len(JOINT_NAMES)

#: Joint limits (radians), in ``JOINT_NAMES`` order.
JOINT_RANGES = np.array(
    [
        [-3.1, 3.1],  # base yaw
        [-2.0, 2.0],  # shoulder pitch (0 = upper arm vertical)
        [-2.6, 2.6],  # elbow pitch (0 = forearm in line with the upper arm)
        [-3.1, 3.1],  # forearm roll
        [-2.0, 2.0],  # wrist pitch
        [-3.1, 3.1],  # hand roll
        [0.0, 1.1],  # fingers: 0 = open, positive closes
        [0.0, 1.1],
        [0.0, 1.1],
    ],
    dtype=np.float64,
)

#: Largest commanded joint speed (rad/s) per joint; an action of +-1 requests it.
MAX_JOINT_SPEED = np.array([1.5] * 6 + [2.0] * 3, dtype=np.float64)

#: Radius of the target sphere (metres); the reward is 1 when the hand is within it.
TARGET_RADIUS = 0.05

#: Horizontal distance from the base axis (m), height above the floor (m) where targets appear.
#: Every such point is within reach: the shoulder sits at 0.25 m and the arm reaches ~0.95 m.
TARGET_HORIZONTAL = (0.25, 0.55)
TARGET_HEIGHT = (0.1, 0.5)

#: Camera orbit around the workspace (centre at mid target height, above the base).
ORBIT = OrbitRigConfig(
    centre=(0.0, 0.0, 0.3),
    radius=(1.4, 2.0),
    elevation=(np.deg2rad(15.0), np.deg2rad(55.0)),
    yaw_speed=0.05,
    elevation_speed=0.015,
    radius_speed=0.01,
    smoothness=0.9,
)

#: Azimuth (radians) of the fixed camera: looking at the arm from its front-left.
FIXED_AZIMUTH = float(np.deg2rad(-60.0))

#: Half-range of the random start pose around :data:`HOME_QPOS` (radians), used by the env.
HOME_QPOS = np.array([0.0, 0.4, 1.3, 0.0, 0.8, 0.0, 0.3, 0.3, 0.3], dtype=np.float64)
START_NOISE = np.array([np.pi, 0.4, 0.5, 1.0, 0.6, 1.0, 0.3, 0.3, 0.3], dtype=np.float64)

_MATERIALS = ("body", "accent", "target", "wall", "target_marker")

#: Brightness of the floor marker under the target relative to the target's colour.
MARKER_SHADE = 0.45

#: Half side (m) and height (m) of the room of ``wm/JacoReach-v1`` (walls at x, y = +-ROOM_HALF_SIZE).
ROOM_HALF_SIZE = 2.6
ROOM_HEIGHT = 2.4


def _floor_material(texture: str) -> str:
    return f"floor_{texture}"


def _room_xml() -> str:
    """Four walls around the arm (the GQN Jaco scenes stand in a room, not in a black void).

    Walls are thin boxes of material ``wall`` at ``+-ROOM_HALF_SIZE``, ``ROOM_HEIGHT`` tall, that
    collide with nothing. Every orbit camera stays inside them (its radius is below
    ``ROOM_HALF_SIZE - 0.3`` around a centre near the base), and they are tall enough that no view
    of the orbit sees over them.
    """
    h, z, t = ROOM_HALF_SIZE, ROOM_HEIGHT / 2, 0.02
    walls = (
        ("wall_px", h, 0.0, t, h),
        ("wall_nx", -h, 0.0, t, h),
        ("wall_py", 0.0, h, h, t),
        ("wall_ny", 0.0, -h, h, t),
    )
    return "".join(
        f'<geom name="{n}" type="box" pos="{x} {y} {z}" size="{sx} {sy} {z}" material="wall" contype="0" '
        'conaffinity="0"/>'
        for n, x, y, sx, sy in walls
    )


def _marker_xml() -> str:
    # A flat disc on the floor under the target, moved with it (a second mocap body). It plays
    # the part of a drop shadow under an overhead light: it shows where on the floor the target
    # stands, which one view of a floating sphere cannot tell (its depth along the ray).
    return (
        '<body name="target_marker" mocap="true" pos="0.4 0 0">'
        f'<geom name="target_marker" type="cylinder" pos="0 0 0.002" size="{TARGET_RADIUS} 0.002" '
        'material="target_marker" contype="0" conaffinity="0"/></body>'
    )


def jaco_xml(domain: Domain, room: bool = False, target_marker: bool = False) -> str:
    """The arm scene's MJCF, with the light and headlight of ``domain``.

    Colours are neutral placeholders; :func:`apply_domain` sets them on the compiled model.
    Floor materials for every texture in :data:`envs.domain.TEXTURES` are white so that the
    material colour set at run time tints them. ``room=True`` adds four walls
    (:func:`_room_xml`; ``wm/JacoReach-v1``), ``False`` keeps v0's open floor.
    ``target_marker=True`` adds a disc on the floor under the target (:func:`place_target` moves both).
    """
    white = Domain(floor_rgb=(1.0, 1.0, 1.0))
    floors = "".join(floor_texture_xml(replace(white, floor_texture=t), name=_floor_material(t)) for t in TEXTURES)
    # Arm geoms: contype 0 / conaffinity 1 -> they touch the floor (contype 1) but not each other.
    arm = 'contype="0" conaffinity="1"'
    ghost = 'contype="0" conaffinity="0"'
    finger_bodies = "".join(
        f"""
              <body name="finger_{i + 1}_link" pos="{0.032 * np.cos(a):.4f} {0.032 * np.sin(a):.4f} 0.045"
                    euler="0 0 {np.rad2deg(a):.2f}">
                <joint name="finger_{i + 1}" axis="0 -1 0" range="{JOINT_RANGES[6 + i, 0]} {JOINT_RANGES[6 + i, 1]}"/>
                <geom type="capsule" fromto="0 0 0 0.012 0 0.07" size="0.011" material="accent" {arm}/>
              </body>"""
        for i, a in enumerate(np.deg2rad([0.0, 120.0, 240.0]))
    )
    r = JOINT_RANGES
    return f"""
<mujoco model="jaco_reach">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="0.01" integrator="implicitfast"/>
  {headlight_xml(domain)}
  <visual>
    <!-- Coarse tessellation: at 64 px it looks the same and renders ~3x faster than the default 28x16. -->
    <quality numslices="10" numstacks="5"/>
  </visual>
  <default>
    <joint armature="0.01" damping="0.05" limited="true"/>
    <geom density="500"/>
  </default>
  <asset>
    {floors}
    <material name="body" rgba="0.5 0.5 0.5 1"/>
    <material name="accent" rgba="0.8 0.8 0.8 1"/>
    <material name="target" rgba="1 0 0 1"/>
    <material name="wall" rgba="0.6 0.65 0.75 1"/>
    <material name="target_marker" rgba="0.45 0 0 1"/>
  </asset>
  <worldbody>
    {light_xml(domain)}
    <geom name="floor" type="plane" size="3 3 0.1" material="{_floor_material(domain.floor_texture)}"
          contype="1" conaffinity="0"/>
    {_room_xml() if room else ""}
    <geom name="pedestal" type="cylinder" pos="0 0 0.05" size="0.09 0.05" material="accent" {ghost}/>
    <body name="base" pos="0 0 0.1" gravcomp="1">
      <joint name="base_yaw" axis="0 0 1" range="{r[0, 0]} {r[0, 1]}"/>
      <geom type="cylinder" fromto="0 0 0 0 0 0.15" size="0.05" material="body" {ghost}/>
      <body name="upper_arm" pos="0 0 0.15" gravcomp="1">
        <joint name="shoulder" axis="0 1 0" range="{r[1, 0]} {r[1, 1]}"/>
        <geom type="sphere" size="0.055" material="accent" {ghost}/>
        <geom type="capsule" fromto="0 0 0 0 0 0.4" size="0.04" material="body" {arm}/>
        <body name="forearm" pos="0 0 0.4" gravcomp="1">
          <joint name="elbow" axis="0 1 0" range="{r[2, 0]} {r[2, 1]}"/>
          <geom type="sphere" size="0.048" material="accent" {arm}/>
          <geom type="capsule" fromto="0 0 0 0 0 0.22" size="0.035" material="body" {arm}/>
          <body name="wrist_1" pos="0 0 0.22" gravcomp="1">
            <joint name="forearm_roll" axis="0 0 1" range="{r[3, 0]} {r[3, 1]}"/>
            <geom type="capsule" fromto="0 0 0 0 0 0.1" size="0.031" material="body" {arm}/>
            <body name="wrist_2" pos="0 0 0.1" gravcomp="1">
              <joint name="wrist_pitch" axis="0 1 0" range="{r[4, 0]} {r[4, 1]}"/>
              <geom type="sphere" size="0.036" material="accent" {arm}/>
              <geom type="capsule" fromto="0 0 0 0 0 0.08" size="0.03" material="body" {arm}/>
              <body name="hand" pos="0 0 0.08" gravcomp="1">
                <joint name="hand_roll" axis="0 0 1" range="{r[5, 0]} {r[5, 1]}"/>
                <geom type="cylinder" fromto="0 0 0 0 0 0.045" size="0.045" material="accent" {arm}/>
                <site name="hand" pos="0 0 0.1" size="0.01" rgba="0 0 0 0"/>
                {finger_bodies}
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>
    <body name="target" mocap="true" pos="0.4 0 0.3">
      <geom name="target" type="sphere" size="{TARGET_RADIUS}" material="target" {ghost}/>
    </body>
    {_marker_xml() if target_marker else ""}
  </worldbody>
  <actuator>
    {
        "".join(
            f'<velocity name="{j}" joint="{j}" kv="{kv}" ctrlrange="{-s} {s}"/>'
            for j, s, kv in zip(JOINT_NAMES, MAX_JOINT_SPEED, [40, 40, 25, 8, 8, 4, 1, 1, 1])
        )
    }
  </actuator>
</mujoco>
"""


class JacoIds:
    """Indices into a compiled Jaco model that the env and the scene generator need."""

    def __init__(self, model: mujoco.MjModel) -> None:
        name = mujoco.mj_name2id
        self.hand_site = name(model, mujoco.mjtObj.mjOBJ_SITE, "hand")
        self.target_geom = name(model, mujoco.mjtObj.mjOBJ_GEOM, "target")
        self.floor_geom = name(model, mujoco.mjtObj.mjOBJ_GEOM, "floor")
        self.target_mocap = int(model.body_mocapid[name(model, mujoco.mjtObj.mjOBJ_BODY, "target")])
        marker = name(model, mujoco.mjtObj.mjOBJ_BODY, "target_marker")
        #: mocap index of the floor marker under the target, or -1 when the model has none.
        self.marker_mocap = int(model.body_mocapid[marker]) if marker >= 0 else -1
        found = {m: name(model, mujoco.mjtObj.mjOBJ_MATERIAL, m) for m in _MATERIALS}
        self.materials = {m: i for m, i in found.items() if i >= 0}
        self.floor_materials = {t: name(model, mujoco.mjtObj.mjOBJ_MATERIAL, _floor_material(t)) for t in TEXTURES}
        joints = [name(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in JOINT_NAMES]
        self.qpos = np.array([model.jnt_qposadr[j] for j in joints])
        self.dofs = np.array([model.jnt_dofadr[j] for j in joints])
        if not np.array_equal(self.qpos, np.arange(N_JOINTS)) or not np.array_equal(self.dofs, np.arange(N_JOINTS)):
            raise AssertionError("Jaco joints must occupy qpos/qvel[0:9] in JOINT_NAMES order")


def build_model(domain: Domain, room: bool = False, target_marker: bool = False) -> mujoco.MjModel:
    """Compile the arm scene (with walls when ``room``, the floor marker when ``target_marker``)
    and set its appearance to ``domain``."""
    model = mujoco.MjModel.from_xml_string(jaco_xml(domain, room=room, target_marker=target_marker))
    apply_domain(model, domain, JacoIds(model))
    return model


def apply_domain(model: mujoco.MjModel, domain: Domain, ids: JacoIds) -> None:
    """Set colours, floor pattern and lighting of a compiled model to ``domain``.

    Writes only model fields read at render time. The light direction takes effect at the next
    ``mj_forward``/``mj_step`` (which recomputes ``data.light_xdir``). Camera noise is not a
    model property: the caller applies ``domain.pixel_noise_std`` to rendered images.
    Textured floors are tinted by the material colour, so a checker's second colour is
    ``0.8 * floor_rgb`` here (``envs.domain.floor_texture_xml`` bakes ``0.75 * rgb + 0.05``).
    """
    colours = (
        ("body", domain.body_rgb),
        ("accent", domain.accent_rgb),
        ("target", domain.target_rgb),
        ("wall", domain.wall_rgb),
    )
    if "target_marker" in ids.materials:
        colours += (("target_marker", tuple(MARKER_SHADE * c for c in domain.target_rgb)),)
    for key, rgb in colours:
        model.mat_rgba[ids.materials[key], :3] = rgb
    floor_mat = ids.floor_materials[domain.floor_texture]
    model.mat_rgba[floor_mat, :3] = domain.floor_rgb
    model.geom_matid[ids.floor_geom] = floor_mat
    d = np.asarray(domain.light_direction, dtype=np.float64)
    model.light_dir[0] = d / max(float(np.linalg.norm(d)), 1e-9)
    model.light_diffuse[0] = domain.light_intensity
    model.vis.headlight.ambient[:] = domain.ambient


def place_target(data: mujoco.MjData, ids: JacoIds, target: np.ndarray) -> None:
    """Put the target centre at ``target`` (and the floor marker, if any, on the floor under it)."""
    data.mocap_pos[ids.target_mocap] = target
    if ids.marker_mocap >= 0:
        data.mocap_pos[ids.marker_mocap] = (float(target[0]), float(target[1]), 0.0)


def sample_target(rng: np.random.Generator) -> np.ndarray:
    """A random target centre (float64 [3]) inside the reachable workspace."""
    azimuth = rng.uniform(-np.pi, np.pi)
    # Uniform over the annulus' area, not its radius.
    lo, hi = TARGET_HORIZONTAL
    radius = np.sqrt(rng.uniform(lo * lo, hi * hi))
    height = rng.uniform(*TARGET_HEIGHT)
    return np.array([radius * np.cos(azimuth), radius * np.sin(azimuth), height])


def sample_qpos(
    rng: np.random.Generator,
    model: mujoco.MjModel,
    data: mujoco.MjData,
    centre: np.ndarray | None = None,
    spread: np.ndarray | None = None,
    max_tries: int = 100,
) -> np.ndarray:
    """Random joint angles (float64 [9]) whose arm does not touch the floor.

    Angles are uniform in ``centre +- spread`` clipped to the joint limits (default: the whole
    joint range). Leaves ``data`` at the returned pose (``qvel`` zero, ``mj_forward`` done).
    Rejection sampling: after ``max_tries`` failures the last draw is folded upright (shoulder
    and elbow zero), which never touches the floor.
    """
    lo, hi = JOINT_RANGES[:, 0], JOINT_RANGES[:, 1]
    if centre is not None and spread is not None:
        lo, hi = np.maximum(lo, centre - spread), np.minimum(hi, centre + spread)
    for _ in range(max_tries):
        q = rng.uniform(lo, hi)
        data.qpos[:] = q
        data.qvel[:] = 0.0
        mujoco.mj_forward(model, data)
        if data.ncon == 0:
            return q
    q[1:3] = 0.0
    data.qpos[:] = q
    mujoco.mj_forward(model, data)
    return q
