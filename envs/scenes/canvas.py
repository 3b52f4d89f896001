"""A compiled template model with its offscreen renderer, cached once per process and thread.

Creating a MuJoCo GL context (``mujoco.Renderer``) costs about 50-70 ms with Mesa, while
rendering a 64x64 view costs about 1 ms. Scene generators therefore compile one *template*
model per family that holds every object slot, then, per scene, write colours, poses and
visibility (geom groups) into that model and render. A :class:`Canvas` is such a template plus
its data and renderer. :func:`get_canvas` keeps at most :data:`MAX_CANVASES` of them per
thread in a :class:`envs.scenes.gl_cache.GLCache` (least recently used are closed; never shared
across threads or a ``fork``), and :func:`close_canvases` releases them all (it also runs at
interpreter exit).

A generator must write *every* per-scene field of the template on every scene, so that a
scene's pixels never depend on the scenes rendered before it.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Sequence

import numpy as np

from envs.camera import CameraPose
from envs.rendering import OffscreenRenderer, configure_gl_backend
from envs.scenes.gl_cache import GLCache, inherited_count

#: Most canvases one thread keeps open at a time.
MAX_CANVASES = 4

_LIVE: weakref.WeakSet[Canvas] = weakref.WeakSet()
_CANVASES: GLCache[Canvas] = GLCache("canvases", MAX_CANVASES)


class Canvas:
    """A compiled template model, its ``MjData`` and a square offscreen renderer."""

    def __init__(self, xml: str, size: int, fovy_deg: float, extent: float) -> None:
        """Compile ``xml``; views are ``size`` x ``size`` with vertical field of view ``fovy_deg``.

        ``extent`` (metres) sets MuJoCo's scale for the near and far clipping planes.
        """
        configure_gl_backend()
        import mujoco

        self.model = mujoco.MjModel.from_xml_string(xml)
        self.model.vis.global_.fovy = float(fovy_deg)
        self.model.stat.extent = float(extent)
        self.data = mujoco.MjData(self.model)
        self.size = int(size)
        self.renderer: OffscreenRenderer | None = OffscreenRenderer(self.model, self.size, self.size)
        self.owner_pid = os.getpid()
        """Process that compiled this canvas (a forked child never closes it)."""
        _LIVE.add(self)

    @property
    def closed(self) -> bool:
        """Whether the GL context has been released."""
        return self.renderer is None

    def render(self, poses: Sequence[CameraPose]) -> np.ndarray:
        """Run forward kinematics on the current model state and render one view per pose: uint8 [V,H,W,3]."""
        import mujoco

        if self.renderer is None:
            raise RuntimeError("this canvas has been closed")
        mujoco.mj_forward(self.model, self.data)
        frames = np.empty((len(poses), self.size, self.size, 3), dtype=np.uint8)
        for i, pose in enumerate(poses):
            frames[i] = self.renderer.render(self.data, pose)
        return frames

    def segment(self, poses: Sequence[CameraPose]) -> np.ndarray:
        """Like :meth:`render` but returns the geom id seen at each pixel: int32 [V,H,W], -1 for none."""
        import mujoco

        if self.renderer is None:
            raise RuntimeError("this canvas has been closed")
        mujoco.mj_forward(self.model, self.data)
        return np.stack([self.renderer.segment(self.data, pose) for pose in poses])

    def close(self) -> None:
        """Release the GL context (idempotent)."""
        if self.renderer is not None:
            self.renderer.close()
            self.renderer = None
        _LIVE.discard(self)


def get_canvas(key: str, size: int, build: Callable[[int], Canvas]) -> Canvas:
    """The cached canvas of template ``key`` at image ``size``, built with ``build(size)`` if missing."""
    return _CANVASES.get((key, int(size)), lambda: build(int(size)))


def close_canvases() -> None:
    """Close every canvas this thread has cached (the next scene compiles a fresh one)."""
    _CANVASES.clear()


def open_canvas_count() -> int:
    """Number of canvases of this process whose GL context is still open (all threads, none inherited)."""
    inherited_count()  # notices a fork first
    return sum(1 for c in list(_LIVE) if not c.closed and c.owner_pid == os.getpid())
