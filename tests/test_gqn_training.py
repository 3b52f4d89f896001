"""A tiny GQN trained by the engine on a real (synthetic-scene) dataset on disk improves its
held-out ELBO within a few dozen steps, and writes everything a run must write."""

from __future__ import annotations

import json

import pytest

from worldmodel.train.engine import Trainer, resolve_configs
from worldmodel.train.logger import read_metrics
from worldmodel.train.synthetic import write_synthetic_dataset

TINY_MODEL = dict(
    image_size=16,
    r_channels=16,
    hidden_channels=8,
    z_channels=2,
    generation_steps=2,
    kernel_size=3,
    max_context=3,
    sigma_anneal_steps=0,
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("data") / "balls", scenes=48, views=5, size=16, seed=0)


def test_elbo_improves_within_a_few_dozen_steps(dataset, tmp_path):
    model_cfg, cfg = resolve_configs(
        "gqn",
        "small",
        TINY_MODEL,
        dict(
            data=str(dataset),
            out=str(tmp_path / "run"),
            steps=40,
            batch_size=8,
            lr=5e-3,
            lr_final=5e-3,
            val_fraction=0.2,
            eval_every=10,
            eval_batches=2,
            ckpt_every=20,
            image_every=20,
            log_every=5,
            progress=False,
            device="cpu",
        ),
    )
    result = Trainer("gqn", model_cfg, cfg, preset="small").fit()
    evals = read_metrics(result.run_dir, "eval")
    assert [e["step"] for e in evals] == [0, 10, 20, 30, 40]
    assert evals[-1]["loss"] < evals[0]["loss"] - 10, evals  # nats per image, at the fixed final sigma
    train = read_metrics(result.run_dir, "train")
    assert [r["step"] for r in train] == list(range(1, 41))
    first, last = sum(r["loss"] for r in train[:5]) / 5, sum(r["loss"] for r in train[-5:]) / 5
    assert last < first
    # the run directory holds what every run must write
    meta = json.loads((result.run_dir / "run.json").read_text())
    assert meta["seed"] == 0 and meta["config"]["learner"] == "gqn" and meta["config"]["model"]["image_size"] == 16
    assert meta["versions"]["torch"] and meta["extra"]["data"]["val"]["scenes"] == 10
    assert (result.run_dir / "tb").is_dir() and any((result.run_dir / "tb").iterdir())
    assert result.checkpoint.name == "step_00000040"
    from worldmodel.checkpoint import list_checkpoints

    assert [p.name for p in list_checkpoints(result.run_dir)] == ["step_00000020", "step_00000040"]
    # the TensorBoard event file holds the image grid and the scalars
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(result.run_dir / "tb"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert "images/context|query|reconstruction|prior_sample" in tags["images"]
    assert {
        "train/loss",
        "train/kl",
        "train/nll",
        "train/sigma",
        "train/lr",
        "train/grad_norm",
        "train/throughput/scenes_per_s",
        "val/elbo",
        "val/bits_per_dim",
    } <= set(tags["scalars"])


def test_cli_rejects_bad_options_with_the_valid_values(dataset, tmp_path, capsys):
    from agents.cli import main

    with pytest.raises(SystemExit):
        main(["train", "gqn", "--representation", "cube"])
    assert "invalid choice: 'cube'" in capsys.readouterr().err
    code = main(["train", "gqn", "--data", str(dataset), "--out", str(tmp_path / "r"), "--device", "tpu"])
    assert code == 2 and "valid values" in capsys.readouterr().err
    code = main(
        [
            "train",
            "gqn",
            "--data",
            str(dataset),
            "--out",
            str(tmp_path / "r"),
            "--image-size",
            "32",
            "--steps",
            "1",
            "--no-progress",
        ]
    )
    assert code == 2 and "16px images" in capsys.readouterr().err
    # resolved configuration: defaults < preset < explicit options
    assert main(["train", "gqn", "--preset", "paper", "--hidden-channels", "96", "--print-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert (
        cfg["model"]["hidden_channels"] == 96 and cfg["model"]["r_channels"] == 256 and cfg["train"]["batch_size"] == 36
    )
