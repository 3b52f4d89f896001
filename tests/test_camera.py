"""Camera conventions: viewpoints, 7-d forms, pose matrices, the orbit rig, and MuJoCo's free camera."""

import numpy as np
import pytest

import envs  # noqa: F401  (sets MUJOCO_GL before mujoco is imported)
from envs.camera import (
    CameraPose,
    OrbitRig,
    OrbitRigConfig,
    pose_matrix,
    relative_transform,
    viewpoint5_from7,
    viewpoint7,
)


def test_look_at_points_forward_at_target():
    rng = np.random.default_rng(0)
    for _ in range(50):
        eye, target = rng.normal(size=3) * 2, rng.normal(size=3) * 0.3
        pose = CameraPose.look_at(eye, target)
        d = (target - eye) / np.linalg.norm(target - eye)
        if abs(d[2]) < np.sin(np.deg2rad(84)):
            np.testing.assert_allclose(pose.forward, d, atol=1e-9)


@pytest.mark.parametrize("order", ["ports", "deepmind"])
def test_viewpoint7_round_trip_and_order(order):
    v = np.array([[0.1, -0.2, 0.3, 2.5, -0.4]], dtype=np.float32)
    v7 = viewpoint7(v, order)
    assert v7.shape == (1, 7)
    np.testing.assert_allclose(viewpoint5_from7(v7, order), v, atol=1e-6)
    expected_first = np.cos(2.5) if order == "ports" else np.sin(2.5)
    assert v7[0, 3] == pytest.approx(expected_first, abs=1e-6)


def test_viewpoint7_rejects_bad_input():
    with pytest.raises(ValueError, match="ports"):
        viewpoint7(np.zeros(5), order="other")
    with pytest.raises(ValueError, match="5"):
        viewpoint7(np.zeros(4))


def test_pose_matrix_is_rigid_and_looks_along_minus_z():
    v = np.array([1.0, 2.0, 0.5, 0.7, -0.3])
    t = pose_matrix(v)
    r = t[:3, :3]
    np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)
    np.testing.assert_allclose(-r[:, 2], CameraPose.from_viewpoint(v).forward, atol=1e-12)
    np.testing.assert_allclose(t[:3, 3], v[:3])


def test_relative_transform_composes():
    rng = np.random.default_rng(1)
    a = np.concatenate([rng.normal(size=3), [0.3, 0.2]])
    b = np.concatenate([rng.normal(size=3), [-1.2, -0.4]])
    rel = relative_transform(a, b).astype(np.float64)
    np.testing.assert_allclose(pose_matrix(a) @ rel, pose_matrix(b), atol=1e-5)
    np.testing.assert_allclose(relative_transform(a, a), np.eye(4), atol=1e-6)


def test_orbit_rig_is_smooth_reproducible_and_in_range():
    cfg = OrbitRigConfig()
    poses = []
    for _ in range(2):
        rig = OrbitRig(cfg)
        rig.reset(np.random.default_rng(5))
        poses.append([rig.step().viewpoint() for _ in range(200)])
    a, b = np.array(poses[0]), np.array(poses[1])
    np.testing.assert_array_equal(a, b)
    centre = np.array(cfg.centre)
    dist = np.linalg.norm(a[:, :3] - centre, axis=1)
    assert dist.min() >= cfg.radius[0] - 1e-6 and dist.max() <= cfg.radius[1] + 1e-6
    steps = np.linalg.norm(np.diff(a[:, :3], axis=0), axis=1)
    assert steps.min() > 0, "a moving camera must move every step"
    assert steps.max() < 0.25, "trajectory must be smooth"


def test_free_camera_matches_pose():
    """Rendering with MuJoCo's free camera agrees with our pose: a sphere placed on the
    optical axis appears at the image centre."""
    import mujoco

    from envs.rendering import OffscreenRenderer

    pose = CameraPose.look_at([1.5, -1.0, 1.2], [0.0, 0.0, 0.0])
    ball = np.asarray(pose.position) + 1.0 * pose.forward
    xml = f"""<mujoco><visual><headlight ambient="1 1 1"/></visual><worldbody>
      <geom type="sphere" size="0.05" pos="{ball[0]} {ball[1]} {ball[2]}" rgba="1 0 0 1"/>
    </worldbody></mujoco>"""
    model = mujoco.MjModel.from_xml_string(xml)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    r = OffscreenRenderer(model, 33, 33)
    img = r.render(data, pose)
    r.close()
    red = (img[..., 0] > 150) & (img[..., 1] < 80)
    ys, xs = np.nonzero(red)
    assert len(ys) > 0
    assert abs(ys.mean() - 16) < 1.5 and abs(xs.mean() - 16) < 1.5
