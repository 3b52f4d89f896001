"""NISO's trajectory pose protocol: head training, chained evaluation, the mean-motion reference, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agents.cli import main as wm
from envs.camera import relative_transform
from worldmodel.checkpoint import save_checkpoint
from worldmodel.eval.niso_eval import HeadConfig
from worldmodel.eval.pose_protocol import (
    TrajectoryProtocolConfig,
    evaluate_trajectories,
    fit_pose_head,
    mean_motion_predictor,
    trajectory_pose_loss,
    trajectory_protocol,
)
from worldmodel.models.niso import build_niso


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from worldmodel.train.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("traj") / "data", scenes=10, views=7, size=16, seed=0)


@pytest.fixture(scope="module")
def split(scenes):
    from worldmodel.data.reader import SceneDataset
    from worldmodel.train.data import SceneSubset

    full = SceneDataset(scenes)
    return SceneSubset(full, range(7)), SceneSubset(full, range(7, 10))


def test_true_relative_poses_give_zero_ate_and_the_mean_motion_reference_does_not(split):
    _, test = split
    config = TrajectoryProtocolConfig(skips=(1, 2, 3))
    cams = {}

    def oracle(frames, a, b, skip):
        i = next(k for k in range(len(test)) if np.array_equal(test.read_views(k, list(range(7)))[0], frames))
        cams[i] = True
        c = test.cameras(i)
        return relative_transform(c[a], c[b])

    res = evaluate_trajectories(oracle, test, config, "oracle")
    assert len(cams) == len(test)
    for skip in ("1", "2", "3"):
        assert res["per_skip"][skip]["sequences"] == len(test)
        assert res["per_skip"][skip]["ate"] < 1e-5 and res["per_skip"][skip]["rpe_translation"] < 1e-5
        assert len(res["per_sequence"][skip]) == len(test) and max(res["per_sequence"][skip]) < 1e-5
    ref = evaluate_trajectories(mean_motion_predictor(split[0], config), test, config, "mean")
    # with 3 or fewer aligned positions a similarity can fit any path; at skip 1 (6 positions) it cannot
    assert ref["per_skip"]["1"]["ate"] > 1e-3


def test_scale_invariant_head_learns_relative_magnitudes_and_the_fitted_scale_restores_units():
    torch.manual_seed(0)
    rot = torch.linalg.qr(torch.randn(512, 3, 3))[0]
    rot = rot * torch.linalg.det(rot)[:, None, None]  # proper rotations
    trans = torch.randn(512, 3)
    y = torch.cat((rot.reshape(-1, 9), trans), 1)
    config = TrajectoryProtocolConfig(head=HeadConfig(steps=600, hidden=64, dropout=0.0))
    head = fit_pose_head(y.clone(), y, config, "test")  # features = the targets: learnable exactly
    pred = head(y)[:, :3, 3].float()
    rmse = float((pred - trans).square().sum(-1).mean().sqrt())
    assert rmse < 0.5 * float(trans.square().sum(-1).mean().sqrt())
    # the scale-invariant loss ignores a global rescaling of the prediction; plain L1 does not
    out = torch.cat((y[:, :9], 3.0 * trans), 1)
    assert float(trajectory_pose_loss(out, y, "scale_invariant")) < 0.05
    assert float(trajectory_pose_loss(out, y, "l1")) > 1.0


def test_trajectory_protocol_scores_every_model_on_the_same_sequences(split):
    train, test = split
    torch.manual_seed(0)
    niso = build_niso("tiny", in_channels=3)
    ae = build_niso("tiny", in_channels=3, mode="autoencoder", features="grid")
    config = TrajectoryProtocolConfig(skips=(1, 3), train_pairs=64, head=HeadConfig(steps=20, hidden=16))
    res = trajectory_protocol({"NISO": (niso, "tau"), "AE": (ae, "concat")}, train, test, config)
    assert list(res)[:2] == ["settings", "mean motion"]
    assert res["NISO"]["feature_dim"] == 64 and res["AE"]["feature_dim"] == 2 * 64 * 8
    for name in ("mean motion", "NISO", "AE"):
        for skip in ("1", "3"):
            assert res[name]["per_skip"][skip]["sequences"] == 3 and np.isfinite(res[name]["per_skip"][skip]["ate"])
            assert len(res[name]["per_sequence"][skip]) == 3
    assert res["settings"]["skips"] == (1, 3) and res["settings"]["test_scenes"] == 3


def test_bad_settings_are_refused_with_the_allowed_values(split):
    with pytest.raises(ValueError, match="translation_loss.*'scale_invariant'"):
        TrajectoryProtocolConfig(translation_loss="l2")
    with pytest.raises(ValueError, match="skips"):
        TrajectoryProtocolConfig(skips=(0, 1))
    with pytest.raises(ValueError, match="too short for skip 10"):
        evaluate_trajectories(lambda *a: None, split[1], TrajectoryProtocolConfig(), "x")


def test_wm_eval_niso_trajectory_writes_json(tmp_path, scenes):
    torch.manual_seed(0)
    paths = []
    for name, mode in (("niso", "niso"), ("ae", "autoencoder")):
        model = build_niso("tiny", in_channels=3, mode=mode)
        cfg = {f: getattr(model.config, f) for f in model.config.__dataclass_fields__}
        cfg["channels"], cfg["skips"] = list(cfg["channels"]), list(cfg["skips"])
        paths.append(save_checkpoint(tmp_path / name, model.state_dict(), {"learner": "niso", "model": cfg, "step": 0}))
    out = tmp_path / "traj.json"
    args = ["eval", "niso", "trajectory", str(paths[0]), f"plain={paths[1]}", "--data", str(scenes)]
    args += ["--skips", "1", "2", "--train-pairs", "32", "--head-steps", "5", "--out", str(out)]
    assert wm(args) == 0
    res = json.loads(out.read_text())
    assert {"NISO", "plain", "mean motion"} <= set(res)
    assert res["NISO"]["kind"] == "tau" and res["plain"]["kind"] == "concat"
    assert set(res["plain"]["per_skip"]) == {"1", "2"}


def test_eval_threads_option_sets_torch_threads_and_refuses_negative(tmp_path, scenes):
    before = torch.get_num_threads()
    args = ["eval", "niso", "trajectory", str(tmp_path / "missing"), "--data", str(scenes)]
    try:
        assert wm([*args, "--threads", "-1"]) == 2  # refused before any checkpoint is read
        assert wm([*args, "--threads", "1"]) == 2  # the missing checkpoint, after the threads are set
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
