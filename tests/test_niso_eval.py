"""NISO downstream evaluations and the ``wm eval niso`` commands (tiny models, real files)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agents.cli import main as wm
from worldmodel.checkpoint import save_checkpoint
from worldmodel.eval.niso_eval import (
    HeadConfig,
    classification_eval,
    pose_eval,
    pose_from_output,
    rotation_error_deg,
)
from worldmodel.models.niso import build_niso


def _save(model, path):
    cfg = {f: getattr(model.config, f) for f in model.config.__dataclass_fields__}
    cfg["channels"], cfg["skips"] = list(cfg["channels"]), list(cfg["skips"])
    return save_checkpoint(path, model.state_dict(), {"learner": "niso", "model": cfg, "step": 0})


def test_gram_features_are_invariant_to_latent_rotations():
    torch.manual_seed(0)
    model = build_niso("tiny")
    x = torch.rand(2, 1, 16, 16)
    a = model.project_images(x).detach()
    q, _ = torch.linalg.qr(torch.randn(8, 8))
    gram = lambda m: m.transpose(1, 2) @ m  # noqa: E731
    torch.testing.assert_close(gram(q @ a), gram(a), atol=1e-4, rtol=1e-4)
    feats = model.features(x, "gram").detach()
    iu = torch.triu_indices(8, 8)
    torch.testing.assert_close(feats, gram(a)[:, iu[0], iu[1]])
    assert model.feature_dim("gram") == feats.shape[1] == 36


def test_classification_eval_trains_a_head_on_clean_digits():
    torch.manual_seed(0)
    model = build_niso("tiny")
    res = classification_eval(model, head=HeadConfig(steps=60, hidden=64), max_train=300)
    assert res["features"] == "gram" and res["feature_dim"] == 36 and res["train_digits"] == 300
    assert res["test_digits"] == 359
    assert 0.0 <= res["warped_accuracy"] <= 1.0
    assert res["train_accuracy"] > 0.3 and res["clean_accuracy"] > 0.2  # 10 classes: chance is 0.1
    ae = build_niso("tiny", mode="autoencoder")
    assert classification_eval(ae, head=HeadConfig(steps=5, hidden=16), max_train=50)["features"] == "grid"


def test_pose_output_is_lifted_to_rotations():
    out = torch.randn(5, 12)
    rot, trans = pose_from_output(out)
    torch.testing.assert_close(rot.transpose(1, 2) @ rot, torch.eye(3).expand(5, 3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(trans, out[:, 9:])
    assert float(rotation_error_deg(rot, rot).max()) < 0.1
    flip = torch.diag(torch.tensor([-1.0, -1.0, 1.0])).expand(5, 3, 3)
    torch.testing.assert_close(rotation_error_deg(rot, rot @ flip), torch.full((5,), 180.0), atol=0.1, rtol=0)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from worldmodel.train.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("scenes") / "data", scenes=10, views=6, size=16, seed=0)


def test_pose_eval_reports_per_skip_errors(scenes):
    from worldmodel.data.reader import SceneDataset
    from worldmodel.train.data import SceneSubset

    torch.manual_seed(0)
    niso = build_niso("tiny", in_channels=3)
    ae = build_niso("tiny", in_channels=3, mode="autoencoder", features="grid")
    full = SceneDataset(scenes)
    train, test = SceneSubset(full, range(8)), SceneSubset(full, range(8, 10))
    res = pose_eval(
        {"NISO": (niso, "tau"), "AE": (ae, "concat")},
        train,
        test,
        train_pairs=64,
        test_pairs_per_skip=8,
        skips=(0, 2),
        head=HeadConfig(steps=30, hidden=32),
    )
    assert res["NISO"]["feature_dim"] == 64 and res["AE"]["feature_dim"] == 2 * 64 * 8
    for name in ("NISO", "AE"):
        per = res[name]["per_skip"]
        assert set(per) == {"0", "1", "2", "all"} and all(per[k]["pairs"] == 8 for k in "012")
        assert all(np.isfinite(per[k]["ate"]) and 0 <= per[k]["rot_deg"] <= 180 for k in per)
    assert res["settings"]["skips"] == [0, 2]


def test_wm_eval_niso_commands(tmp_path, scenes):
    torch.manual_seed(0)
    niso = _save(build_niso("tiny"), tmp_path / "niso")
    ae = _save(build_niso("tiny", mode="autoencoder"), tmp_path / "ae")
    out = tmp_path / "cls.json"
    code = wm(
        [
            "eval",
            "niso",
            "classify",
            f"mine={niso}",
            str(ae),
            "--head-steps",
            "10",
            "--head-hidden",
            "16",
            "--max-train",
            "100",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    rows = json.loads(out.read_text())["results"]
    assert [r["name"] for r in rows] == ["mine", "AE + aug"] and [r["features"] for r in rows] == ["gram", "grid"]
    out = tmp_path / "eq.json"
    assert wm(["eval", "niso", "equivariance", str(niso), "--pairs", "16", "--out", str(out)]) == 0
    res = json.loads(out.read_text())["results"][0]
    assert res["pairs"] == 16 and 0 <= res["equivariance_error"] and res["identity_error"] > 0
    assert wm(["eval", "niso", "equivariance", str(ae)]) == 2  # an autoencoder has no tau: clear error, exit 2
    rgb = _save(build_niso("tiny", in_channels=3), tmp_path / "rgb")
    rgb_ae = _save(build_niso("tiny", in_channels=3, mode="autoencoder"), tmp_path / "rgb_ae")
    out = tmp_path / "pose.json"
    assert (
        wm(
            [
                "eval",
                "niso",
                "pose",
                "--niso",
                str(rgb),
                "--baseline",
                str(rgb_ae),
                "--data",
                str(scenes),
                "--train-pairs",
                "32",
                "--test-pairs",
                "4",
                "--skips",
                "0",
                "1",
                "--head-steps",
                "5",
                "--head-hidden",
                "16",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())
    assert set(res["NISO"]["per_skip"]) == {"0", "1", "all"} and "AE + aug" in res
