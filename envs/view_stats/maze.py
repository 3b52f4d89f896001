"""What the maze cameras see, measured by segmentation renders (``wm envs stats maze``).

Every measured frame is rendered once more as a segmentation image (MuJoCo's per-pixel geom
ids, :meth:`envs.rendering.OffscreenRenderer.segment`) from the frame's camera pose, and
each pixel is classed as ``wall`` (maze wall boxes and the outer border), ``floor``, ``sky``,
``goal``, ``agent`` or ``background`` (no geom: the black clear colour, e.g. a gap between
the wall tops and the sky). Three sets of frames are measured:

* ``reset``: the first frame of ``wm/Maze-v0`` episodes (default first-person camera);
* ``random_policy``: frames of uniformly random discrete actions (new episode every
  :data:`RANDOM_POLICY_SEGMENT` steps or when one ends);
* ``scene``: GQN-style random views of the maze scene family (:mod:`envs.scenes.maze_scenes`,
  ``camera="random"``, :data:`SCENE_VIEWS` views per scene);
* ``trajectory``: the scene family's ``camera="trajectory"`` views (smooth walks, NISO pairs).

For each set ``S`` the result holds ``S_wall_filled`` (fraction of frames with at least
:data:`WALL_FILLED` of their pixels wall), ``S_band`` (fraction of frames with at least one
background pixel), and the mean pixel fractions ``S_wall``, ``S_floor``, ``S_sky``,
``S_background``; ``frames`` is the number of frames per set.
"""

from __future__ import annotations

import mujoco
import numpy as np

from envs.camera import CameraPose
from envs.rendering import OffscreenRenderer

CLASSES: tuple[str, ...] = ("wall", "floor", "sky", "goal", "agent", "background")
"""Pixel classes, in the order of :func:`class_fractions`' output."""
WALL_FILLED = 0.95
"""A frame with at least this fraction of wall pixels counts as wall-filled."""
RANDOM_POLICY_SEGMENT = 100
"""Random-policy steps per episode before a reset."""
SCENE_VIEWS = 10
"""Views per scene of the maze scene family."""
GEOM_PREFIXES: dict[str, str] = {
    "wall": "wall",
    "border": "wall",
    "floor": "floor",
    "sky": "sky",
    "goal": "goal",
    "agent": "agent",
}
"""Geom-name prefix -> pixel class of the maze model's geoms."""
SETS: tuple[str, ...] = ("reset", "random_policy", "scene", "trajectory")
"""The frame sets of :func:`maze_view_stats`."""


def geom_classes(model: mujoco.MjModel) -> np.ndarray:
    """Class index (into :data:`CLASSES`) of every geom of a :class:`envs.maze.MazeWorld` model, by name."""
    out = np.full(model.ngeom, CLASSES.index("background"), dtype=np.int64)
    for g in range(model.ngeom):
        name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, g) or ""
        for prefix, cls in GEOM_PREFIXES.items():
            if name.startswith(prefix):
                out[g] = CLASSES.index(cls)
                break
        else:
            known = ", ".join(GEOM_PREFIXES)
            raise ValueError(f"geom {g} ({name!r}) of the maze model has no pixel class; known prefixes: {known}")
    return out


class SegmentationCounter:
    """Renders segmentation images of one maze model and returns per-class pixel fractions."""

    def __init__(self, model: mujoco.MjModel, size: int) -> None:
        self.model = model
        self._renderer = OffscreenRenderer(model, size, size)
        self._classes = geom_classes(model)

    def class_fractions(self, data: mujoco.MjData, pose: CameraPose) -> np.ndarray:
        """Fraction of the pixels of each class in :data:`CLASSES` seen from ``pose``, float64 [6]."""
        ids = self._renderer.segment(data, pose)
        labels = np.where(ids >= 0, self._classes[np.clip(ids, 0, None)], CLASSES.index("background"))
        return np.bincount(labels.ravel(), minlength=len(CLASSES)) / labels.size

    def close(self) -> None:
        """Release the GL context."""
        self._renderer.close()


def summarise(name: str, fractions: np.ndarray) -> dict[str, float]:
    """The ``name_*`` figures (see the module doc) of per-frame class fractions ``[frames, 6]``."""
    f = np.asarray(fractions, dtype=np.float64)
    wall, bg = f[:, CLASSES.index("wall")], f[:, CLASSES.index("background")]
    out = {f"{name}_wall_filled": float(np.mean(wall >= WALL_FILLED)), f"{name}_band": float(np.mean(bg > 0))}
    for cls in ("wall", "floor", "sky", "background"):
        out[f"{name}_{cls}"] = float(f[:, CLASSES.index(cls)].mean())
    return out


def env_frames(frames: int, seed: int, size: int, policy: str) -> np.ndarray:
    """Class fractions ``[frames, 6]`` of ``wm/Maze-v0`` frames: ``policy`` is ``"reset"`` or ``"random"``."""
    import gymnasium as gym

    import envs  # noqa: F401  (registers the environments)

    if policy not in ("reset", "random"):
        raise ValueError(f"policy must be 'reset' or 'random', got {policy!r}")
    env = gym.make("wm/Maze-v0", obs="state", size=size)  # state obs: the segmentation is the only render
    base = env.unwrapped
    counter = SegmentationCounter(base.model, size)
    out = np.empty((frames, len(CLASSES)))
    env.reset(seed=seed)
    env.action_space.seed(seed)
    steps = 0
    try:
        for i in range(frames):
            if policy == "reset":
                if i:
                    env.reset()
            else:
                _, _, terminated, truncated, _ = env.step(env.action_space.sample())
                steps += 1
                if terminated or truncated or steps >= RANDOM_POLICY_SEGMENT:
                    env.reset()
                    steps = 0
            out[i] = counter.class_fractions(base.data, base.camera_pose)
    finally:
        counter.close()
        env.close()
    return out


def scene_frames(frames: int, seed: int, size: int, camera: str = "random") -> np.ndarray:
    """Class fractions ``[frames, 6]`` of views of the maze scene family (``camera``: its camera path)."""
    from envs.maze import MazeWorld
    from envs.maze_layout import GRID_SIZE, generate_maze
    from envs.scenes import generate_scene

    world = MazeWorld(GRID_SIZE)
    counter = SegmentationCounter(world.model, size)
    out = np.empty((frames, len(CLASSES)))
    i, index = 0, 0
    try:
        while i < frames:
            rec = generate_scene("maze", seed=seed, index=index, views=SCENE_VIEWS, size=size, camera=camera)
            layout = generate_maze(int(rec.metadata["maze"]["maze_seed"]))
            world.load(layout, layout.appearance, _sim_domain(), show_goal=False, show_sky=True)
            for viewpoint in rec.cameras[: frames - i]:
                out[i] = counter.class_fractions(world.data, CameraPose.from_viewpoint(viewpoint))
                i += 1
            index += 1
    finally:
        counter.close()
    return out


def _sim_domain():
    from envs.domain import DOMAINS

    return DOMAINS["sim"]


def maze_view_stats(frames: int = 300, seed: int = 0, size: int = 64) -> dict[str, float]:
    """Measured view fractions of the maze family (see the module doc), ``frames`` per set."""
    if frames < 1 or size < 8:
        raise ValueError(f"need frames >= 1 and size >= 8, got frames={frames}, size={size}")
    out: dict[str, float] = {"frames": float(frames)}
    out.update(summarise("reset", env_frames(frames, seed, size, "reset")))
    out.update(summarise("random_policy", env_frames(frames, seed, size, "random")))
    out.update(summarise("scene", scene_frames(frames, seed, size, "random")))
    out.update(summarise("trajectory", scene_frames(frames, seed, size, "trajectory")))
    return out
