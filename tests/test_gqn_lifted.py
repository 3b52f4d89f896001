"""The geometry-aware ('lifted') GQN representation: its camera projection matches MuJoCo's
renders, lifting and rendering have the right shapes and gradients, views aggregate by a sum,
and the frozen features are the world volume."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401
from envs.camera import viewpoint7
from worldmodel.models.gqn import GQN
from worldmodel.models.gqn_config import GQNConfig
from worldmodel.models.gqn_lifted import grid_points, project

SIZE = 32


def tiny(**kw) -> GQNConfig:
    base = dict(
        image_size=SIZE,
        representation="lifted",
        features="spatial",
        r_channels=16,
        hidden_channels=8,
        z_channels=2,
        generation_steps=2,
        volume_size=(6, 6, 4),
        volume_channels=4,
        ray_samples=6,
        position_scale=1.5,
    )
    base.update(kw)
    return GQNConfig(**base)


def _views(n: int, seed: int = 0) -> np.ndarray:
    """Viewpoints of the JacoReach-v1 orbit (metric, 5-d)."""
    env = gym.make("wm/JacoReach-v1", camera="random", obs="state")
    out = []
    for i in range(n):
        _, info = env.reset(seed=seed + i)
        out.append(info["viewpoint"])
    env.close()
    return np.stack(out)


def test_projection_matches_mujoco_render_of_the_target():
    env = gym.make("wm/JacoReach-v1", camera="random", obs="pixels", size=64)
    checked = 0
    for seed in range(12):
        frame, info = env.reset(seed=seed)
        red = (frame[..., 0] > 150) & (frame[..., 1] < 60) & (frame[..., 2] < 60)
        if red.sum() < 5:  # target hidden behind the arm in this view
            continue
        v7 = torch.as_tensor(viewpoint7(info["viewpoint"]))[None]
        target = torch.as_tensor(env.unwrapped.target_position, dtype=torch.float32)[None, None]
        uv, depth = project(target, v7, fovy_deg=45.0)
        col, row = (uv[0, 0, 0].item() + 1) / 2 * 64, (uv[0, 0, 1].item() + 1) / 2 * 64
        ys, xs = np.nonzero(red)
        assert depth.item() > 0.5
        assert abs(col - (xs.mean() + 0.5)) < 2.0 and abs(row - (ys.mean() + 0.5)) < 2.0, (seed, col, row)
        checked += 1
    env.close()
    assert checked >= 5


def test_grid_points_are_cell_centres_inside_the_bounds():
    pts = grid_points((0.0, 1.0, -1.0, 1.0, 0.0, 0.5), (4, 2, 5))
    assert pts.shape == (5, 2, 4, 3)
    assert torch.allclose(pts[0, 0, :, 0], torch.tensor([0.125, 0.375, 0.625, 0.875]))
    assert torch.allclose(pts[:, 0, 0, 2], torch.tensor([0.05, 0.15, 0.25, 0.35, 0.45]))


def _batch(b: int = 2, k: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    v = torch.as_tensor(viewpoint7(_views(b * (k + 1)))).reshape(b, k + 1, 7)
    return {
        "context_frames": torch.rand(b, k, 3, SIZE, SIZE, generator=g),
        "context_viewpoints": v[:, :k],
        "query_frame": torch.rand(b, 3, SIZE, SIZE, generator=g),
        "query_viewpoint": v[:, k],
    }


def test_lifted_gqn_loss_gradients_and_sum_aggregation():
    torch.manual_seed(0)
    model = GQN(tiny())
    b = _batch()
    out = model.loss(b)
    assert torch.isfinite(out["loss"]) and out["kl"].item() >= 0
    out["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing
    assert model.psi.cnn[0].weight.grad.abs().sum() > 0
    # r is the render of the sum of the views' volumes: order-invariant, additive
    v_q = b["query_viewpoint"]
    r = model.represent(b["context_frames"], b["context_viewpoints"], v_q)
    perm = torch.tensor([2, 0, 1])
    assert torch.allclose(
        r, model.represent(b["context_frames"][:, perm], b["context_viewpoints"][:, perm], v_q), atol=1e-5
    )
    # psi sees positions over position_scale (the GQN's input scaling) and lifts them back to metres
    vol = sum(model.psi(b["context_frames"][:, i], model._viewpoints(b["context_viewpoints"][:, i])) for i in range(3))
    grid = SIZE // 4
    assert torch.allclose(r, model.psi.render(vol, model._viewpoints(v_q), grid), atol=1e-5)
    with pytest.raises(ValueError, match="query_viewpoint"):
        model.represent(b["context_frames"], b["context_viewpoints"])
    assert model.represent(b["context_frames"][:, :0], b["context_viewpoints"][:, :0], v_q).shape == (2, 16, grid, grid)


def test_volume_is_zero_outside_the_view_and_features_are_the_flattened_volume():
    torch.manual_seed(0)
    # a volume outside every orbit camera's field of view: nothing projects inside, so only the
    # 3-D convs' biases remain and the volume is the same for any image
    far = GQN(tiny(volume_bounds=(20.0, 21.0, 20.0, 21.0, 0.0, 1.0)))
    b = _batch()
    a = far.psi(b["query_frame"], far._viewpoints(b["query_viewpoint"]))
    other = far.psi(torch.rand_like(b["query_frame"]), far._viewpoints(b["query_viewpoint"]))
    assert torch.equal(a, other)
    model = GQN(tiny())
    feats = model.encode(b["query_frame"], b["query_viewpoint"])
    assert feats.shape == (2, model.config.feature_dim) and model.config.feature_dim == 4 * 6 * 6 * 4
    assert feats.abs().sum() > 0


def test_bad_volume_settings_raise():
    with pytest.raises(ValueError, match="volume_bounds"):
        tiny(volume_bounds=(1.0, 0.0, -1.0, 1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="ray_depth"):
        tiny(ray_depth=(2.0, 1.0))
    with pytest.raises(ValueError, match="representation"):
        GQNConfig(image_size=SIZE, representation="voxels")
