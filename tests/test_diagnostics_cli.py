"""`wm diagnose equivariance` end to end on a tiny NISO trained with an LEE TensorBoard hook,
the untrained control, and the torch-free CLI choices."""

from __future__ import annotations

import json

import pytest
import torch

from agents.cli import main
from worldmodel.diagnostics import cli as diag_cli


@pytest.fixture(scope="module")
def niso_run(tmp_path_factory):
    """4 training steps of the tiny NISO on 16 px digits, with an LEEHook every 2 steps."""
    from worldmodel.data.homography import load_digit_images
    from worldmodel.diagnostics.hooks import LEEHook
    from worldmodel.train.engine import Trainer, resolve_configs

    out = tmp_path_factory.mktemp("diag") / "niso"
    model_cfg, train_cfg = resolve_configs(
        "niso",
        "tiny",
        {"image_size": 16},
        {
            "data": "digits",
            "out": str(out),
            "steps": 4,
            "batch_size": 8,
            "eval_every": 0,
            "image_every": 0,
            "ckpt_every": 0,
            "log_every": 1,
            "progress": False,
            "threads": 1,
            "warmup_steps": 0,
        },
    )
    probe, _ = load_digit_images("digits", "test", 16)
    hook = LEEHook(probe[:4].float() / 255.0, transforms=("translate_x", "rotate"), every=2)
    Trainer("niso", model_cfg, train_cfg, step_hooks=[hook]).fit()
    return out, hook


def test_training_hook_logs_lee_to_tensorboard(niso_run):
    from worldmodel.train.logger import read_metrics

    out, hook = niso_run
    assert [s for s, _ in hook.history] == [2, 4]
    records = read_metrics(out, "diagnostics")
    assert [r["step"] for r in records] == [2, 4]
    assert records[0]["translate_x"] > 0 and "rotate_relative" in records[0]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    assert "diagnostics/translate_x" in acc.Tags()["scalars"]


def test_untrained_control_is_the_initialisation(niso_run, tmp_path):
    from worldmodel.diagnostics.adapters import untrained_encoder
    from worldmodel.encoders import load_encoder

    out, _ = niso_run
    trained = load_encoder(str(out))
    ctrl = untrained_encoder(str(out))
    on_disk = untrained_encoder(str(out), out=str(tmp_path / "ctrl"))
    assert ctrl.name == "niso (untrained)" and ctrl.feature_dim == trained.feature_dim
    t_state, c_state, d_state = trained.model.state_dict(), ctrl.model.state_dict(), on_disk.model.state_dict()
    assert any(not torch.equal(t_state[k], c_state[k]) for k in t_state)  # training moved the weights
    assert all(torch.equal(c_state[k], d_state[k]) for k in c_state)  # same seed, same initial weights
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(ctrl.encode(x), on_disk.encode(x))


def test_diagnose_equivariance_writes_json_and_plots(niso_run, tmp_path):
    out, _ = niso_run
    dest = tmp_path / "report"
    code = main(
        [
            "diagnose",
            "equivariance",
            "--encoder",
            f"tiny={out}",
            "--out",
            str(dest),
            "--images",
            "4",
            "--transforms",
            "translate_x",
            "rotate",
            "brightness",
            "--layer-images",
            "2",
            "--probes",
            "2",
            "--homographies",
            "shift_3px",
            "--threads",
            "1",
        ]
    )
    assert code == 0
    res = json.loads((dest / "equivariance.json").read_text())
    assert set(res["encoders"]) == {"tiny", "tiny untrained"}
    row = res["encoders"]["tiny"]
    assert set(row["features"]) == {"translate_x", "rotate", "brightness"} and row["map"]["rotate"]["output"] == "map"
    lw = row["layerwise"]
    assert abs(lw["unattributed"]) <= 4 * lw["total_sem"] + 1e-6 * lw["end_to_end"]  # NISO's encoder is all modules
    iso = {r["encoder"]: r for r in res["isometry"]["results"]}
    assert iso["tiny"]["transformation"] == "shift_3px" and iso["tiny"]["fit_pairs"] > iso["tiny"]["test_pairs"] > 0
    assert iso["tiny"]["niso_tau_error"] is not None
    for name in ("lee_transforms.png", "lee_layers.png", "isometry.png", "isometry.md"):
        assert (dest / name).stat().st_size > 0
    assert "best orthogonal R" in (dest / "isometry.md").read_text()


def test_bad_arguments_name_the_valid_values(niso_run, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["diagnose", "equivariance", "--encoder", "x", "--out", str(tmp_path), "--transforms", "twirl"])
    assert "valid values: geometric, translate_x" in capsys.readouterr().err
    out, _ = niso_run
    assert (
        main(["diagnose", "equivariance", "--encoder", str(out), "--out", str(tmp_path), "--data", "/nonexistent"]) == 2
    )


def test_cli_choices_match_the_torch_modules():
    from worldmodel.diagnostics.isometry import DIGIT_HOMOGRAPHIES
    from worldmodel.diagnostics.transforms import GEOMETRIC_NAMES, PADDINGS, TRANSFORM_NAMES

    assert diag_cli.TRANSFORM_NAMES == TRANSFORM_NAMES and diag_cli.GEOMETRIC_NAMES == GEOMETRIC_NAMES
    assert diag_cli.PADDINGS == PADDINGS and diag_cli.HOMOGRAPHY_NAMES == tuple(DIGIT_HOMOGRAPHIES)
