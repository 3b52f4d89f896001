"""Headless offscreen rendering with MuJoCo.

``MUJOCO_GL`` defaults to ``egl`` (Mesa renders on the CPU without a display; on a GPU machine
the NVIDIA EGL vendor library is used). :class:`OffscreenRenderer` wraps ``mujoco.Renderer``
with the toolkit's defaults (shadows, reflections and skybox off: they cost far more than
they add at 64x64) and turns a missing GL backend into an error that says what to install.
"""

from __future__ import annotations

import os

import numpy as np

# Renderers closed (or dropped) in a process that did not create them: a child of ``fork()``
# shares its parent's GL objects (a copy of Mesa's state, or the very same driver handles on a
# GPU), so freeing them there could break the parent. They are kept referenced, never freed.
_FOREIGN: list = []

DEFAULT_GL_BACKEND = "egl"
GL_BACKENDS: tuple[str, ...] = ("egl", "osmesa", "glfw")

_INSTALL_HINT = (
    "MuJoCo could not create an offscreen OpenGL context with MUJOCO_GL={backend!r}: {err}\n"
    "On Debian/Ubuntu install Mesa's EGL (software rendering, no display needed):\n"
    "    apt-get install -y libegl1 libegl-mesa0 libgl1-mesa-dri libgles2\n"
    "or choose another backend with MUJOCO_GL in {{egl, osmesa, glfw}} "
    "(osmesa needs libosmesa6; glfw needs a display)."
)


class RenderingUnavailableError(RuntimeError):
    """No OpenGL backend could be loaded for offscreen rendering."""


def configure_gl_backend() -> str:
    """Set ``MUJOCO_GL`` to ``egl`` unless the user chose a backend; return the backend in use.

    Must run before ``mujoco`` is first imported (``import envs`` does it).
    """
    backend = os.environ.setdefault("MUJOCO_GL", DEFAULT_GL_BACKEND).lower()
    if backend in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", backend)
        # Mesa's llvmpipe renders with helper threads that a fork() does not copy: a child forked
        # after its parent rendered (gymnasium's AsyncVectorEnv default) would deadlock in its
        # first render. Rendering in the calling thread is fork-safe and, at 64x64 (one raster
        # tile), no slower. Ignored by GPU drivers.
        os.environ.setdefault("LP_NUM_THREADS", "0")
    return backend


def import_mujoco():
    """Import ``mujoco``; if its GL backend cannot load, raise :class:`RenderingUnavailableError` with a hint.

    MuJoCo loads the backend named by ``MUJOCO_GL`` at import time, so a missing library shows
    up here (as an ``AttributeError``/``ImportError``/``RuntimeError`` from PyOpenGL or MuJoCo).
    """
    backend = os.environ.get("MUJOCO_GL", "")
    if backend and backend.lower() not in (*GL_BACKENDS, "disable", "disabled", "off", "false", "0"):
        raise RenderingUnavailableError(f"invalid MUJOCO_GL={backend!r}; valid values: {', '.join(GL_BACKENDS)}")
    try:
        import mujoco
    except (ImportError, AttributeError, RuntimeError, OSError) as err:
        raise RenderingUnavailableError(_INSTALL_HINT.format(backend=backend, err=err)) from err
    return mujoco


def disable_costly_effects(scene) -> None:
    """Turn off shadows, reflections and skybox on an ``MjvScene``."""
    import mujoco

    scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
    scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
    scene.flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = 0


class OffscreenRenderer:
    """RGB renderer of one MuJoCo model at a fixed size, from any roll-free camera pose."""

    def __init__(self, model, height: int, width: int) -> None:
        import mujoco

        if height <= 0 or width <= 0:
            raise ValueError(f"image size must be positive, got {height}x{width}")
        # The offscreen buffer must be at least as large as the image.
        model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), width)
        model.vis.global_.offheight = max(int(model.vis.global_.offheight), height)
        try:
            self._renderer = mujoco.Renderer(model, height, width)
        except Exception as err:  # the GL loaders raise several unrelated types
            raise RenderingUnavailableError(
                _INSTALL_HINT.format(backend=os.environ.get("MUJOCO_GL", ""), err=err)
            ) from err
        disable_costly_effects(self._renderer.scene)
        self.owner_pid = os.getpid()
        """Process that created the GL context; only it ever frees the context."""
        self.camera = mujoco.MjvCamera()
        self.height, self.width = height, width
        self._buf = np.empty((height, width, 3), dtype=np.uint8)

    @property
    def closed(self) -> bool:
        """Whether the GL context has been released (or, in a forked child, detached)."""
        return getattr(self, "_renderer", None) is None

    def render(self, data, pose) -> np.ndarray:
        """Render ``data`` seen from ``pose`` (a :class:`envs.camera.CameraPose`); returns a new uint8 array [H,W,3]."""
        pose.apply_to(self.camera)
        self._renderer.update_scene(data, camera=self.camera)
        self._renderer.render(out=self._buf)
        return self._buf.copy()

    def segment(self, data, pose) -> np.ndarray:
        """Geom id seen at each pixel of ``data`` from ``pose``: int32 [H,W], -1 where no geom is seen.

        Rendered with MuJoCo's segmentation mode (no lighting, no anti-aliasing: exact ids).
        """
        if self._renderer is None:
            raise RuntimeError("this renderer has been closed")
        import mujoco

        pose.apply_to(self.camera)
        self._renderer.enable_segmentation_rendering()
        try:
            self._renderer.update_scene(data, camera=self.camera)
            seg = self._renderer.render()
        finally:
            self._renderer.disable_segmentation_rendering()
        ids = np.where(seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM), seg[..., 0], -1)
        return ids.astype(np.int32)

    def close(self) -> None:
        """Release the GL context (idempotent).

        In a process other than the creator (a forked child) the context is the parent's: it is
        detached from this object but kept referenced and never freed.
        """
        r = getattr(self, "_renderer", None)
        if r is not None:
            self._renderer = None
            if getattr(self, "owner_pid", os.getpid()) == os.getpid():
                r.close()
            else:
                _FOREIGN.append(r)

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:
            pass
