"""The VAE learner on the real engine: shapes and pinwheel runs lower the loss, resume, frozen encoder, CLI."""

import json

import numpy as np
import pytest
import torch

from worldmodel import load_encoder
from worldmodel.models.vae import VAE, load_vae
from worldmodel.train.engine import Trainer, resolve_configs
from worldmodel.train.logger import read_metrics


def _losses(run):
    return [r["loss"] for r in read_metrics(run, "train")]


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("vae") / "shapes"
    model_cfg, cfg = resolve_configs(
        "vae",
        "tiny",
        {"image_size": 32},
        {
            "out": str(out),
            "steps": 40,
            "batch_size": 16,
            "lr": 2e-3,
            "eval_every": 20,
            "image_every": 40,
            "ckpt_every": 20,
            "progress": False,
            "threads": 1,
            "device": "cpu",
            "val_fraction": 0.01,
            "eval_batches": 1,
        },
    )
    result = Trainer("vae", model_cfg, cfg, preset="tiny").fit()
    return out, result


def test_short_shapes_run_lowers_the_loss_and_logs(shapes_run):
    out, result = shapes_run
    losses = _losses(out)
    assert result.step == 40 and len(losses) == 40
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), (losses[:5], losses[-5:])
    assert (out / "checkpoints" / "step_00000040" / "model.safetensors").is_file()
    assert list((out / "tb").iterdir()) and result.last_eval is not None and np.isfinite(result.last_eval["elbo"])
    meta = json.loads((out / "run.json").read_text())
    assert meta["config"]["model"]["in_channels"] == 1 and meta["config"]["model"]["image_size"] == 32


def test_resume_continues_the_shapes_run(shapes_run):
    out, _ = shapes_run
    saved = json.loads((out / "run.json").read_text())["config"]
    model_cfg, cfg = resolve_configs("vae", "tiny", saved["model"], {**saved["train"], "steps": 45})
    result = Trainer("vae", model_cfg, cfg, resume=True, preset="tiny").fit()
    assert result.step == 45 and len(_losses(out)) == 45


def test_frozen_encoder_features_are_the_posterior_mean(shapes_run):
    out, _ = shapes_run
    enc = load_encoder(str(out))
    model, _ = load_vae(str(out))
    assert isinstance(model, VAE) and enc.feature_dim == 4 and enc.image_size == 32 and not enc.uses_viewpoint
    rgb = np.random.default_rng(0).integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    feats = enc.encode_numpy(rgb)
    grey = torch.from_numpy(rgb).permute(0, 3, 1, 2).float().div(255).mean(1, keepdim=True)
    with torch.no_grad():
        expected = model.posterior(grey)[0].numpy()
    np.testing.assert_allclose(feats, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="expects 32x32"):
        enc.encode(np.zeros((1, 64, 64, 3), np.uint8))


def test_pinwheel_run_trains_the_mixture_prior_model(tmp_path):
    model_cfg, cfg = resolve_configs(
        "vae",
        "pinwheel",
        {},
        {
            "out": str(tmp_path / "pin"),
            "steps": 120,
            "lr": 3e-3,
            "lr_final": 3e-3,
            "progress": False,
            "threads": 1,
            "device": "cpu",
            "image_every": 120,
            "eval_every": 120,
        },
    )
    result = Trainer("vae", model_cfg, cfg, preset="pinwheel").fit()
    losses = _losses(tmp_path / "pin")
    assert result.step == 120 and np.mean(losses[-10:]) < np.mean(losses[:10]) - 2.0, (losses[:10], losses[-10:])
    model, config = load_vae(str(tmp_path / "pin"))
    assert config["model"]["architecture"] == "mlp" and config["model"]["prior"] == "mixture"
    with pytest.raises(ValueError, match="not images"):
        load_encoder(str(tmp_path / "pin"))


def test_vae_trains_on_a_scene_dataset_through_the_image_loader(tmp_path):
    from worldmodel.train.synthetic import write_synthetic_dataset

    data = write_synthetic_dataset(tmp_path / "scenes", scenes=10, views=4, size=16, seed=0)
    model_cfg, cfg = resolve_configs(
        "vae",
        "tiny",
        {},
        {
            "data": str(data),
            "out": str(tmp_path / "run"),
            "steps": 3,
            "batch_size": 4,
            "val_fraction": 0.2,
            "eval_every": 3,
            "image_every": 3,
            "progress": False,
            "threads": 1,
            "device": "cpu",
        },
    )
    result = Trainer("vae", model_cfg, cfg, preset="tiny").fit()
    _, config = load_vae(str(tmp_path / "run"))
    assert result.step == 3 and config["model"]["in_channels"] == 3 and config["model"]["image_size"] == 16


def test_cli_and_bad_data_give_clear_errors(tmp_path, capsys):
    from agents.cli import main

    assert main(["train", "vae", "--preset", "pinwheel", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["model"]["prior"] == "mixture" and printed["train"]["data"] == "pinwheel"
    model_cfg, cfg = resolve_configs(
        "vae", "tiny", {}, {"data": "pinwheel", "out": str(tmp_path / "x"), "progress": False}
    )
    with pytest.raises(ValueError, match="--architecture mlp"):
        Trainer("vae", model_cfg, cfg).fit()
    with pytest.raises(ValueError, match="unknown prior|prior='gamma' is not valid"):
        resolve_configs("vae", "small", {"prior": "gamma"}, {})
