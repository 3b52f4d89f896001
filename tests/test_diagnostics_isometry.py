"""Latent isometry error: Procrustes recovers a planted rotation, least squares a planted linear
map, camera-motion pairs are selected from known poses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worldmodel.diagnostics.isometry import (
    DIGIT_HOMOGRAPHIES,
    camera_motion_pairs,
    digit_homography,
    homography_pairs,
    isometry_error,
    least_squares_map,
    procrustes,
)

D = torch.float64


def _planted(dim=12, n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=D))
    z = torch.randn(n, dim, generator=g, dtype=D)
    return q, z


def test_procrustes_recovers_a_planted_rotation_and_matches_scipy():
    from scipy.linalg import orthogonal_procrustes

    r, z = _planted()
    noisy = z @ r.T + 1e-3 * torch.randn(z.shape, generator=torch.Generator().manual_seed(1), dtype=D)
    est = procrustes(z, noisy)
    assert torch.allclose(est, r, atol=1e-3)
    assert torch.allclose(est @ est.T, torch.eye(12, dtype=D), atol=1e-12)
    ref, _ = orthogonal_procrustes(z.numpy(), noisy.numpy())
    assert np.allclose(est.numpy(), ref.T, atol=1e-10)


def test_isometry_error_separates_rotations_from_general_linear_maps():
    r, z = _planted()
    res = isometry_error(z[:150], z[:150] @ r.T, z[150:], z[150:] @ r.T)
    assert res.orthogonal < 1e-20 and res.linear < 1e-9 and res.identity > 0.5  # ridge 1e-6
    g = torch.Generator().manual_seed(5)
    a = torch.randn(12, 12, generator=g, dtype=D)  # not orthogonal
    lin = isometry_error(z[:150], z[:150] @ a.T, z[150:], z[150:] @ a.T)
    assert lin.linear < 1e-10 and lin.orthogonal > 0.05
    assert torch.allclose(least_squares_map(z, z @ a.T, ridge=0.0), a, atol=1e-10)
    s = lin.summary()
    assert s["dim"] == 12 and s["fit_pairs"] == 150 and s["test_pairs"] == 50


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same shape"):
        procrustes(torch.zeros(3, 4), torch.zeros(3, 5))


class _FakeScenes:
    """Two scenes of 4 views; yaw steps 0.3 between consecutive views of scene 0 (and -0.3 in scene 1)."""

    views = 4

    def __len__(self):
        return 2

    def read_views(self, scene, views):
        sign = 1.0 if scene == 0 else -1.0
        cams = np.array([[1.0, 0.0, 0.5, sign * 0.3 * v, -0.3 + 0.01 * v] for v in views], dtype=np.float32)
        return np.zeros((len(views), 8, 8, 3), dtype=np.uint8), cams


def test_camera_motion_pairs_use_known_poses_in_both_orders():
    pairs, stats = camera_motion_pairs(_FakeScenes(), yaw_step=0.3, yaw_tol=0.01, pitch_tol=0.05)
    assert sorted(pairs) == [(0, 0, 1), (0, 1, 2), (0, 2, 3), (1, 1, 0), (1, 2, 1), (1, 3, 2)]
    assert stats["yaw_mean"] == pytest.approx(0.3, abs=1e-6) and stats["scenes"] == 2
    pairs, _ = camera_motion_pairs(_FakeScenes(), yaw_step=0.6, yaw_tol=0.01, pitch_tol=0.015)
    assert pairs == []  # the 0.6 steps change the pitch by 0.02


def test_digit_homographies_are_fixed_and_warp():
    for name in DIGIT_HOMOGRAPHIES:
        h = digit_homography(name)
        assert h.shape == (3, 3) and torch.equal(h, digit_homography(name))
    x = torch.zeros(2, 1, 40, 40, dtype=torch.uint8)
    x[:, :, 20, 10] = 255
    a, b = homography_pairs(x, digit_homography("shift_3px"))
    assert float(b[0, 0, 20, 13]) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="valid values: rotate_15deg"):
        digit_homography("flip")
