"""Domains (appearance presets) and the renderer's error handling."""

import os
import subprocess
import sys

import numpy as np
import pytest

import envs  # noqa: F401
from envs.domain import DOMAINS, Domain, add_camera_noise, random_domain, resolve_domain


def test_resolve_domain_names_and_errors():
    assert resolve_domain("sim") == DOMAINS["sim"]
    assert resolve_domain("randomised") is None
    d = Domain(light_intensity=0.5)
    assert resolve_domain(d) is d
    with pytest.raises(ValueError, match="'sim'.*'real'.*'randomised'"):
        resolve_domain("mars")
    with pytest.raises(ValueError, match="floor_texture"):
        Domain(floor_texture="plaid")


def test_random_domain_reproducible():
    a = random_domain(np.random.default_rng(3))
    b = random_domain(np.random.default_rng(3))
    c = random_domain(np.random.default_rng(4))
    assert a == b and a != c


def test_camera_noise():
    img = np.full((8, 8, 3), 128, np.uint8)
    assert add_camera_noise(img, 0.0, np.random.default_rng(0)) is img
    noisy = add_camera_noise(img, 10.0, np.random.default_rng(0))
    assert noisy.dtype == np.uint8 and noisy.std() > 3


def test_mujoco_gl_defaults_to_egl():
    code = "import os; os.environ.pop('MUJOCO_GL', None); import envs; print(os.environ['MUJOCO_GL'])"
    env = {k: v for k, v in os.environ.items() if k != "MUJOCO_GL"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "egl"


def test_missing_gl_backend_gives_install_hint():
    code = (
        "import envs, mujoco\n"
        "from envs.rendering import OffscreenRenderer\n"
        "m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size=\".1\"/></worldbody></mujoco>')\n"
        "OffscreenRenderer(m, 16, 16)\n"
    )
    env = dict(os.environ, MUJOCO_GL="osmesa", PYOPENGL_PLATFORM="osmesa")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode == 0:
        pytest.skip("OSMesa is installed here, so this backend loads")
    assert "RenderingUnavailableError" in out.stderr
    assert "apt-get install" in out.stderr and "MUJOCO_GL" in out.stderr


def test_invalid_gl_backend_lists_valid_ones():
    env = dict(os.environ, MUJOCO_GL="bogus")
    out = subprocess.run([sys.executable, "-c", "import envs"], env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "bogus" in out.stderr and "egl, osmesa, glfw" in out.stderr


def test_offscreen_renderer_segment_gives_geom_ids_and_close_is_fork_safe():
    import mujoco

    from envs.camera import CameraPose
    from envs.rendering import _FOREIGN, OffscreenRenderer

    m = mujoco.MjModel.from_xml_string(
        '<mujoco><worldbody><geom name="a" type="sphere" size=".3"/></worldbody></mujoco>'
    )
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    r = OffscreenRenderer(m, 16, 16)
    ids = r.segment(d, CameraPose.look_at(np.array([2.0, 0.0, 0.0]), np.zeros(3)))
    assert ids.dtype == np.int32 and ids[8, 8] == 0 and ids[0, 0] == -1
    rgb = r.render(d, CameraPose.look_at(np.array([2.0, 0.0, 0.0]), np.zeros(3)))
    assert rgb[8, 8].max() > 0  # segmentation mode was switched off again
    # Closed from a process that did not create it (a forked child): detached, kept, never freed.
    inner = r._renderer
    r.owner_pid = -1
    r.close()
    assert r.closed and inner in _FOREIGN and inner._gl_context is not None
    _FOREIGN.remove(inner)
    inner.close()
