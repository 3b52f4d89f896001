"""NISO model: losses, a short training run, the shared engine, checkpoints and the frozen encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from worldmodel.data.homography import HomographyPairConfig, HomographyPairLoader
from worldmodel.eval.niso_eval import equivariance_eval
from worldmodel.models.niso import Niso, build_niso, load_niso
from worldmodel.train.engine import Trainer, resolve_configs


def _train_config(tmp, data, steps, **over):
    _, cfg = resolve_configs(
        "niso",
        "tiny",
        {},
        {
            "data": str(data),
            "out": str(tmp),
            "steps": steps,
            "progress": False,
            "eval_every": 4,
            "eval_batches": 1,
            "image_every": 4,
            "ckpt_every": 4,
            "log_every": 2,
            **over,
        },
    )
    return cfg


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A tiny NISO trained by the shared engine on homography digits (16x16)."""
    out = tmp_path_factory.mktemp("niso_digits")
    model_cfg, _ = resolve_configs("niso", "tiny", {"image_size": 16}, {})
    result = Trainer("niso", model_cfg, _train_config(out, "digits", 8), preset="tiny").fit()
    return out, result


def test_loss_terms_and_visuals_are_finite_and_well_shaped():
    torch.manual_seed(0)
    model = build_niso("tiny")
    batch = next(iter(HomographyPairLoader(HomographyPairConfig(size=16, batch_size=4))))
    out = model.loss(batch)
    for key in ("loss", "recon", "equiv", "mult", "equivariance_error", "identity_error"):
        assert torch.isfinite(out[key]) and out[key].ndim == 0, key
    torch.testing.assert_close(out["loss"].detach(), out["recon"] + 0.5 * out["equiv"] + 0.1 * out["mult"])
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    vis = model.visualise(batch)
    assert vis["reconstructions"].shape == (4, 4, 1, 16, 16)
    assert vis["tau"].shape == (4, 1, 8, 8) and vis["spectrum"].shape == (1, 1, 48, 32)
    ae = build_niso("tiny", mode="autoencoder")
    assert ae.operator is None and set(ae.loss(batch)) == {"loss", "recon"}
    with pytest.raises(ValueError, match="valid values: 'niso', 'autoencoder'"):
        build_niso("tiny", mode="vae")


def test_short_training_run_lowers_the_equivariance_error():
    torch.manual_seed(0)
    model = build_niso("tiny")
    before = equivariance_eval(model, pairs=64)
    loader = HomographyPairLoader(HomographyPairConfig(size=16, batch_size=16))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _step, batch in zip(range(60), loader):
        loss = model.loss(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        phi, _, mass = model.spectral()
        torch.testing.assert_close(phi.T @ (mass[:, None] * phi), torch.eye(8), atol=1e-4, rtol=0)
    after = equivariance_eval(model, pairs=64)
    assert after["equivariance_error"] < 0.5 * before["equivariance_error"]
    assert after["ratio_to_identity"] < before["ratio_to_identity"]


def test_engine_trains_on_digits_with_logs_checkpoints_and_resume(digits_run):
    out, result = digits_run
    assert result.step == 8 and result.checkpoint is not None
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert len(train) == 8 and all(np.isfinite(r["equivariance_error"]) for r in train)
    assert any(r["kind"] == "eval" for r in records)
    assert list((out / "tb").glob("events.out.tfevents.*"))
    model, config = load_niso(out)
    assert config["learner"] == "niso" and config["model"]["in_channels"] == 1 and config["step"] == 8
    phi, lam, mass = model.spectral()
    torch.testing.assert_close(phi.T @ (mass[:, None] * phi), torch.eye(8), atol=1e-4, rtol=0)
    # resume continues from step 8 with the saved configuration
    model_cfg, _ = resolve_configs("niso", "tiny", {"image_size": 16, "in_channels": 1}, {})
    resumed = Trainer("niso", model_cfg, _train_config(out, "digits", 10), resume=True, preset="tiny").fit()
    assert resumed.step == 10
    steps = [
        json.loads(line)["step"]
        for line in (out / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["kind"] == "train"
    ]
    assert steps == list(range(1, 11))


def test_frozen_encoder_round_trip_and_agents_wrapper(digits_run):
    out, _ = digits_run
    from worldmodel.encoders import load_encoder

    enc = load_encoder(str(out))
    model, _ = load_niso(out)
    assert enc.name == "niso" and enc.image_size == 16 and enc.feature_dim == 8 * 8 and not enc.uses_viewpoint
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(3, 16, 16, 3), dtype=np.uint8)
    feats = enc.encode_numpy(frames)
    grey = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255).mean(1, keepdim=True)
    with torch.no_grad():
        np.testing.assert_allclose(feats, model.features(grey, "latent").numpy(), rtol=1e-5, atol=1e-5)
    gram = load_encoder(str(out), features="gram")
    assert gram.feature_dim == 8 * 9 // 2 and gram.encode_numpy(frames).shape == (3, 36)
    with pytest.raises(ValueError, match="valid: 'latent', 'gram', 'grid'"):
        load_encoder(str(out), features="pixels")
    with pytest.raises(ValueError, match="expects 16x16"):
        enc.encode_numpy(np.zeros((1, 20, 20, 3), dtype=np.uint8))

    import gymnasium as gym

    import envs  # noqa: F401 - registers wm/ environments
    from agents.wrappers import EncoderObservationWrapper

    env = EncoderObservationWrapper(gym.make("wm/JacoReach-v0", size=16, obs="pixels+viewpoint"), enc)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64,) and obs.dtype == np.float32
    obs2, *_ = env.step(env.action_space.sample())
    assert obs2.shape == (64,) and np.isfinite(obs2).all() and not np.allclose(obs, obs2)
    env.close()


def test_engine_trains_niso_on_a_scene_dataset(tmp_path):
    from worldmodel.train.synthetic import write_synthetic_dataset

    data = write_synthetic_dataset(tmp_path / "scenes", scenes=10, views=6, size=16, seed=0)
    model_cfg, _ = resolve_configs("niso", "tiny", {"skips": (0, 2)}, {})
    cfg = _train_config(tmp_path / "run", data, 3, batch_size=4, val_fraction=0.2, image_every=3, eval_every=3)
    result = Trainer("niso", model_cfg, cfg, preset="tiny").fit()
    assert result.step == 3 and np.isfinite(result.last_train["loss"])
    model, config = load_niso(tmp_path / "run")
    assert isinstance(model, Niso) and config["model"]["in_channels"] == 3 and config["model"]["image_size"] == 16
