"""GQN "jaco" scenes: the Jaco-style arm in random joint angles with a target, seen from V views.

Each scene draws (from :func:`envs.scenes.scene_rng` of ``(seed, index)``) an arm pose, a target,
the domain when ``domain="randomised"``, and V camera poses on the orbit shell around the arm.
``task="v1"`` (default) shows the world of ``wm/JacoReach-v1``: the room, the target box in front
of the arm, arm poses from the env's start distribution (hand anywhere in the workspace) and the
env's orbit (:data:`envs.jaco_v1.ORBIT_V1`), so a representation trained on these scenes sees what
the agents see. ``task="v0"`` keeps the first release's scenes (9 joint angles uniform within their
limits, targets all around the base, no walls, :data:`envs.jaco_model.ORBIT`). The model comes from the env's builder
(:mod:`envs.jaco_model`); one compiled model and renderer per image size are kept per process
and thread (:mod:`envs.scenes.gl_cache`) and recoloured for each scene, so the output depends only on the arguments.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import mujoco
import numpy as np

from envs import jaco_model as jm
from envs import jaco_v1 as v1
from envs.camera import OrbitRig
from envs.domain import DOMAIN_CHOICES, DOMAINS, Domain, add_camera_noise, random_domain, resolve_domain
from envs.rendering import OffscreenRenderer
from envs.scenes import SceneRecord, scene_rng
from envs.scenes.gl_cache import GLCache
from envs.spaces import check_choice

#: Camera placements of a scene's views.
SCENE_CAMERAS: tuple[str, ...] = ("trajectory", "orbit")

#: Task whose world the scenes show -> its environment id.
SCENE_TASKS: dict[str, str] = {"v1": "wm/JacoReach-v1", "v0": "wm/JacoReach-v0"}
#: Environment of the default task.
ENV_ID = SCENE_TASKS["v1"]


class _SceneWorld:
    """A compiled arm model, its data and an offscreen renderer of one size."""

    def __init__(self, size: int, task: str, target_marker: bool = False) -> None:
        self.model = jm.build_model(DOMAINS["sim"], room=task == "v1", target_marker=target_marker)
        self.data = mujoco.MjData(self.model)
        self.ids = jm.JacoIds(self.model)
        self.renderer = OffscreenRenderer(self.model, size, size)

    @property
    def closed(self) -> bool:
        """Whether the GL context has been released."""
        return self.renderer.closed

    def close(self) -> None:
        """Release the GL context (never the parent's in a forked child: see :mod:`envs.scenes.gl_cache`)."""
        self.renderer.close()


#: Worlds per (size, task, target marker), per process and thread (see :mod:`envs.scenes.gl_cache`).
_WORLDS: GLCache[_SceneWorld] = GLCache("jaco scene worlds", max_entries=4)


def _world(size: int, task: str, target_marker: bool = False) -> _SceneWorld:
    return _WORLDS.get((size, task, target_marker), lambda: _SceneWorld(size, task, target_marker))


def scene_factors(qpos: np.ndarray, target: np.ndarray) -> dict[str, Any]:
    """The scene's ground-truth factors as metadata: ``{"factors": {name: value}, "factor_kinds": {name: kind}}``.

    ``joint/<name>`` for the 9 joints of :data:`envs.jaco_model.JOINT_NAMES` (radians; the v1 task
    keeps the 3 fingers fixed, so those are constant) and ``target/x|y|z`` (metres), all
    ``"continuous"``. The camera pose of each view is the dataset's ``cameras`` array.
    """
    factors = {f"joint/{n}": float(q) for n, q in zip(jm.JOINT_NAMES, qpos, strict=True)}
    factors.update({f"target/{a}": float(t) for a, t in zip("xyz", target, strict=True)})
    return {"factors": factors, "factor_kinds": dict.fromkeys(factors, "continuous")}


def generate(
    seed: int,
    index: int,
    views: int,
    size: int,
    camera: str = "trajectory",
    domain: str | Domain = "sim",
    steps_per_view: int = 5,
    task: str = "v1",
    target_marker: bool = False,
) -> SceneRecord:
    """Render scene ``index`` of the dataset with base ``seed``: ``views`` images of ``size`` px.

    Args:
        seed, index: the scene is a deterministic function of these (and the other arguments).
        views: number of views V (GQN jaco: 11).
        size: image side in pixels (GQN jaco: 64).
        camera: ``"trajectory"`` (default): consecutive poses of a moving :class:`OrbitRig`, so
            views are ordered along one smooth path (NISO pairs); ``"orbit"``: independent random
            poses on the orbit shell (GQN's original sampling).
        domain: ``"sim"``, ``"real"``, ``"randomised"`` (drawn per scene) or a :class:`Domain`.
        steps_per_view: rig steps between consecutive trajectory views (a frame skip, >= 1).
        task: ``"v1"`` (the world of ``wm/JacoReach-v1``) or ``"v0"`` (see the module doc).
        target_marker: show the env's floor marker under the target (``target_marker=True`` of
            the envs), so that datasets match agents run with it.

    Returns:
        A :class:`SceneRecord` with ``frames`` uint8 [V,size,size,3], ``cameras`` float32 [V,5],
        ``extras`` ``{"qpos": float32 [9], "target": float32 [3]}`` and JSON metadata (env id,
        seed, index, camera, domain parameters, qpos, target, and the named ground-truth factors
        of :func:`scene_factors`).
    """
    check_choice("camera", camera, SCENE_CAMERAS)
    check_choice("task", task, SCENE_TASKS)
    if not isinstance(domain, Domain):
        check_choice("domain", domain, DOMAIN_CHOICES)
    if views < 1:
        raise ValueError(f"views must be >= 1, got {views}")
    if size < 8:
        raise ValueError(f"size must be >= 8 pixels, got {size}")
    if steps_per_view < 1:
        raise ValueError(f"steps_per_view must be >= 1, got {steps_per_view}")

    rng = scene_rng(seed, index)
    # Independent child streams, so e.g. the camera mode never changes the arm pose.
    world_rng, cam_rng, domain_rng, noise_rng = rng.spawn(4)
    dom = resolve_domain(domain) or random_domain(domain_rng)

    w = _world(int(size), task, bool(target_marker))
    model, data = w.model, w.data
    jm.apply_domain(model, dom, w.ids)
    mujoco.mj_resetData(model, data)
    if task == "v1":
        target = world_rng.uniform(v1.TARGET_BOX[:, 0], v1.TARGET_BOX[:, 1])
        jm.place_target(data, w.ids, target)
        qpos = v1.sample_start_qpos(world_rng, model, data, w.ids)  # also runs mj_forward
    else:
        target = jm.sample_target(world_rng)
        jm.place_target(data, w.ids, target)
        qpos = jm.sample_qpos(world_rng, model, data)  # also runs mj_forward (light direction included)

    rig = OrbitRig(v1.ORBIT_V1 if task == "v1" else jm.ORBIT)
    frames = np.empty((views, size, size, 3), dtype=np.uint8)
    cameras = np.empty((views, 5), dtype=np.float32)
    pose = rig.reset(cam_rng, randomise=True)
    for v in range(views):
        if v > 0:
            if camera == "orbit":
                pose = rig.reset(cam_rng, randomise=True)
            else:
                for _ in range(steps_per_view):
                    pose = rig.step()
        frames[v] = add_camera_noise(w.renderer.render(data, pose), dom.pixel_noise_std, noise_rng)
        cameras[v] = pose.viewpoint()

    metadata: dict[str, Any] = {
        "source": "jaco",
        "env_id": SCENE_TASKS[task],
        "task": task,
        "target_marker": bool(target_marker),
        "seed": int(seed),
        "index": int(index),
        "camera": camera,
        "steps_per_view": int(steps_per_view),
        "domain": asdict(dom),
        "qpos": [float(q) for q in qpos],
        "target": [float(t) for t in target],
        **scene_factors(qpos, target),
    }
    extras = {"qpos": qpos.astype(np.float32), "target": target.astype(np.float32)}
    return SceneRecord(frames=frames, cameras=cameras, metadata=metadata, extras=extras)
