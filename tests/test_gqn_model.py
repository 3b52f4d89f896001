"""GQN model: shapes of every variant, KL >= 0, gradients everywhere, order invariance, sigma
schedule, sampling/surprise API, and the frozen encoder loaded from a real training run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from worldmodel.models.gqn import GQN
from worldmodel.models.gqn_config import GQNConfig
from worldmodel.models.registry import get_learner

SIZE = 16


def tiny(**kw) -> GQNConfig:
    base = dict(image_size=SIZE, r_channels=16, hidden_channels=8, z_channels=2, generation_steps=2, kernel_size=3)
    base.update(kw)
    return GQNConfig(**base)


def batch(b: int = 3, k: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "context_frames": torch.rand(b, k, 3, SIZE, SIZE, generator=g),
        "context_viewpoints": torch.randn(b, k, 7, generator=g),
        "query_frame": torch.rand(b, 3, SIZE, SIZE, generator=g),
        "query_viewpoint": torch.randn(b, 7, generator=g),
    }


VARIANTS = [(rep, shared) for rep in ("tower", "pool", "pyramid") for shared in (True, False)]


@pytest.mark.parametrize("representation,shared", VARIANTS)
def test_shapes_kl_and_gradients_of_every_variant(representation, shared):
    torch.manual_seed(0)
    r_channels = 64 if representation == "pyramid" else 16  # pyramid: r/8 channels in its first layer
    model = GQN(tiny(representation=representation, shared_core=shared, r_channels=r_channels))
    b = batch()
    out = model.loss(b)
    assert set(out) >= {"loss", "elbo", "nll", "kl", "bits_per_dim", "sigma"}
    assert all(v.ndim == 0 and torch.isfinite(v) for v in out.values())
    assert out["kl"].item() >= 0
    dims = 3 * SIZE * SIZE
    assert out["bits_per_dim"].item() == pytest.approx(-out["elbo"].item() / (dims * math.log(2)), rel=1e-5)
    out["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == [], f"parameters without gradient: {missing}"

    grid = SIZE // 4
    r = model.represent(b["context_frames"], b["context_viewpoints"])
    assert r.shape == (3, r_channels, grid, grid)
    if representation != "tower":  # pooled representations are broadcast: constant over space
        assert torch.allclose(r, r[..., :1, :1].expand_as(r))
    assert model.encode(b["query_frame"], b["query_viewpoint"]).shape == (3, r_channels)
    assert model.generate(b["context_frames"], b["context_viewpoints"], b["query_viewpoint"]).shape == (
        3,
        3,
        SIZE,
        SIZE,
    )
    recon = model.reconstruct(b["context_frames"], b["context_viewpoints"], b["query_frame"], b["query_viewpoint"])
    assert recon.shape == (3, 3, SIZE, SIZE) and 0 <= recon.min() and recon.max() <= 1
    grid_img = model.visualise(b)["context|query|reconstruction|prior_sample"]
    assert grid_img.shape == (3, 2 + 3, 3, SIZE, SIZE)
    n_cores = 1 if shared else 2
    assert len(model.generator.generation_cores) == n_cores


def test_kl_is_nonnegative_per_step_and_per_query():
    torch.manual_seed(1)
    model = GQN(tiny(generation_steps=3))
    b = batch(b=5, k=3, seed=2)
    r = model.represent(b["context_frames"], b["context_viewpoints"])
    out = model.generator.run(b["query_viewpoint"], r, b["query_frame"])
    assert out.kl_steps.shape == (5, 3)
    assert torch.all(out.kl_steps >= 0)
    s = model.surprise(b["context_frames"], b["context_viewpoints"], b["query_frame"], b["query_viewpoint"], samples=2)
    assert s.shape == (5,) and torch.all(s >= 0)


def test_representation_is_a_sum_over_views_independent_of_order():
    torch.manual_seed(2)
    model = GQN(tiny())
    b = batch(b=2, k=4)
    r = model.represent(b["context_frames"], b["context_viewpoints"])
    perm = torch.tensor([2, 0, 3, 1])
    r_perm = model.represent(b["context_frames"][:, perm], b["context_viewpoints"][:, perm])
    assert torch.allclose(r, r_perm, atol=1e-5)
    singles = sum(
        model.represent(b["context_frames"][:, i : i + 1], b["context_viewpoints"][:, i : i + 1]) for i in range(4)
    )
    assert torch.allclose(r, singles, atol=1e-5)
    empty = model.represent(b["context_frames"][:, :0], b["context_viewpoints"][:, :0])
    assert empty.shape == r.shape and torch.count_nonzero(empty) == 0


def test_sigma_anneals_linearly_and_eval_uses_final_sigma():
    model = GQN(tiny(sigma_start=2.0, sigma_end=0.7, sigma_anneal_steps=100))
    for step, expected in [(0, 2.0), (50, 1.35), (100, 0.7), (10_000, 0.7)]:
        model.set_step(step)
        assert model.sigma.item() == pytest.approx(expected, abs=1e-6)
    model.set_step(0)
    b = batch()
    assert model.loss(b)["sigma"].item() == pytest.approx(2.0)
    ev = model.eval_loss(b)
    assert ev["sigma"].item() == pytest.approx(0.7) and "mse" in ev and not ev["loss"].requires_grad


def test_surprise_curve_and_bad_inputs():
    torch.manual_seed(3)
    model = GQN(tiny())
    frames, views = torch.rand(2, 4, 3, SIZE, SIZE), torch.randn(2, 4, 7)
    curve = model.surprise_curve(frames, views)
    assert list(curve) == [0, 1, 2, 3] and all(v >= 0 and math.isfinite(v) for v in curve.values())
    with pytest.raises(ValueError, match="max_context"):
        model.surprise_curve(frames, views, max_context=4)
    with pytest.raises(ValueError, match=r"\[\.\.\.,3,16,16\]"):
        model.encode(torch.rand(2, 3, 32, 32), torch.randn(2, 7))
    with pytest.raises(ValueError, match="valid values: 'tower', 'pool', 'pyramid'"):
        GQNConfig(representation="cube")
    with pytest.raises(ValueError, match="multiple of 4"):
        GQNConfig(image_size=18)


def test_registry_presets_and_errors():
    spec = get_learner("gqn")
    paper = spec.make_config("paper")
    assert (paper.image_size, paper.r_channels, paper.hidden_channels, paper.generation_steps, paper.shared_core) == (
        64,
        256,
        128,
        12,
        False,
    )
    assert spec.preset("paper")["train"]["batch_size"] == 36
    with pytest.raises(ValueError, match="valid values: 'small', 'paper'"):
        spec.make_config("huge")
    with pytest.raises(ValueError, match="unknown learner 'nope'; valid values: 'gqn'"):
        get_learner("nope")
    with pytest.raises(ValueError, match="unknown gqn model config field"):
        spec.make_config(None, hidden=3)


def test_frozen_encoder_from_a_trained_checkpoint(tmp_path):
    from worldmodel import load_encoder
    from worldmodel.checkpoint import save_checkpoint

    torch.manual_seed(4)
    cfg = tiny(representation="pool")
    model = GQN(cfg)
    import dataclasses

    save_checkpoint(
        tmp_path / "run" / "checkpoints" / "step_00000001",
        model.state_dict(),
        {"learner": "gqn", "model": dataclasses.asdict(cfg), "step": 1},
    )
    enc = load_encoder(str(tmp_path / "run"))  # a run directory resolves to its newest checkpoint
    assert enc.feature_dim == 16 and enc.image_size == SIZE and enc.name == "gqn"
    assert not enc.model.training and not any(p.requires_grad for p in enc.parameters())
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(4, SIZE, SIZE, 3), dtype=np.uint8)
    cams = rng.normal(size=(4, 5)).astype(np.float32)
    feats = enc.encode_numpy(frames, cams)
    assert feats.shape == (4, 16) and feats.dtype == np.float32
    from worldmodel.encoders import viewpoint7_torch

    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    expected = model.eval().encode(x, viewpoint7_torch(torch.from_numpy(cams)))
    np.testing.assert_allclose(feats, expected.detach().numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="expects 16x16 images"):
        enc.encode(np.zeros((1, 32, 32, 3), np.uint8), cams[:1])
    spatial = load_encoder(str(tmp_path / "run"), features="spatial")
    assert spatial.feature_dim == 16  # pooled representations have a 1x1 map
    with pytest.raises(ValueError, match="valid values: 'pooled', 'spatial'"):
        load_encoder(str(tmp_path / "run"), features="mean")
