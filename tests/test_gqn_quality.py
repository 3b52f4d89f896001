"""`wm eval gqn`: PSNR of held-out query views from a GQN against the nearest-view and mean-context
baselines, on real datasets written with the project's writer and a tiny GQN trained by the engine."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from worldmodel.eval.gqn_quality import (
    METHODS,
    QualityConfig,
    bootstrap_ci,
    choose_views,
    evaluate_quality,
    nearest_view,
    psnr,
)
from worldmodel.train.synthetic import write_synthetic_dataset

TINY_MODEL = dict(
    image_size=16,
    r_channels=8,
    hidden_channels=8,
    z_channels=2,
    generation_steps=2,
    kernel_size=3,
    max_context=3,
    sigma_anneal_steps=0,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    train = write_synthetic_dataset(root / "train", scenes=20, views=5, size=16, seed=0)
    held = write_synthetic_dataset(root / "held", scenes=7, views=5, size=16, seed=1)
    return root, train, held


@pytest.fixture(scope="module")
def run(data):
    from worldmodel.train.engine import Trainer, resolve_configs

    root, train, _ = data
    model_cfg, cfg = resolve_configs(
        "gqn",
        "small",
        TINY_MODEL,
        dict(
            data=str(train),
            out=str(root / "run"),
            steps=3,
            batch_size=4,
            val_fraction=0.2,
            eval_every=0,
            ckpt_every=3,
            image_every=0,
            log_every=1,
            progress=False,
            device="cpu",
        ),
    )
    return Trainer("gqn", model_cfg, cfg, preset="small").fit().run_dir


@pytest.fixture(scope="module")
def model(run):
    from worldmodel.eval.gqn_quality_cli import load_gqn

    return load_gqn(str(run), "cpu")[0]


def test_psnr_matches_a_hand_computed_value_and_caps_exact_predictions():
    target = torch.full((2, 3, 4, 4), 0.5)
    pred = torch.zeros(2, 3, 4, 4)
    pred[1] = 0.5
    pred[1, 0, 0, 0] = 0.7  # one value off by 0.2 in 48: MSE 0.04 / 48
    out = psnr(pred, target, cap_db=100.0)
    assert out.shape == (2,)
    assert out[0].item() == pytest.approx(10 * math.log10(1 / 0.25))  # 6.0206 dB
    assert out[1].item() == pytest.approx(10 * math.log10(48 / 0.04), rel=1e-5)  # 30.79 dB
    assert psnr(target, target, cap_db=100.0).tolist() == [100.0, 100.0]
    assert psnr(target, target, cap_db=60.0).tolist() == [60.0, 60.0]
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(pred[:1], target)


def test_nearest_view_uses_position_then_angle_and_keeps_the_first_of_ties():
    q = torch.tensor([[2.0, 0.0, 1.0, math.pi, 0.0]])
    ctx = torch.tensor(
        [
            [
                [0.0, 2.0, 1.0, -math.pi / 2, 0.0],  # far away
                [2.1, 0.0, 1.0, math.pi, 0.0],  # 0.1 away, same direction
                [2.0, 0.0, 1.0, math.pi / 2, 0.0],
            ]
        ]
    )  # same place, turned by 90 degrees
    assert nearest_view(ctx, q).tolist() == [1]
    assert nearest_view(ctx, q, position_scale=0.01).tolist() == [2]  # positions dominate: 10 vs 1.57
    twins = torch.stack([q[0], q[0]])[None]
    assert nearest_view(twins, q).tolist() == [0]
    with pytest.raises(ValueError, match=r"\[B,K,5\]"):
        nearest_view(ctx[0], q)


def test_bootstrap_interval_brackets_the_mean():
    x = np.random.default_rng(0).normal(20.0, 2.0, size=200)
    s = bootstrap_ci(x, resamples=500, seed=1)
    assert s["n"] == 200 and s["ci"][0] < s["mean"] < s["ci"][1]
    assert 0.3 < s["ci"][1] - s["ci"][0] < 1.0  # about 2 * 1.96 * 2 / sqrt(200) = 0.55
    assert bootstrap_ci([3.0])["ci"] == [3.0, 3.0]


def test_view_choice_is_seeded_per_scene():
    a = choose_views(10, 4, seed=0, scene_index=7)
    assert len(set(a.tolist())) == 5 and a.max() < 10
    assert np.array_equal(a, choose_views(10, 4, seed=0, scene_index=7))
    assert not np.array_equal(a, choose_views(10, 4, seed=1, scene_index=7))
    with pytest.raises(ValueError, match=r"kmax must be in 1\.\.9"):
        choose_views(10, 10, seed=0, scene_index=0)


def _twin_dataset(root):
    """Scenes of 4 views: views 0 and 1 share camera and image, so do views 2 and 3 (other camera and image)."""
    from envs.scenes import SceneRecord
    from worldmodel.data.writer import write_scenes

    rng = np.random.default_rng(0)
    records = []
    for i in range(6):
        a, b = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
        ca = np.array([2.0, 0.0, 1.0, math.pi, -0.3], dtype=np.float32)
        cb = np.array([0.0, 2.0, 1.0, -math.pi / 2, -0.3], dtype=np.float32)
        records.append(
            SceneRecord(frames=np.stack([a, a, b, b]), cameras=np.stack([ca, ca, cb, cb]), metadata={"index": i})
        )
    return write_scenes(root, records, shard_size=4, source="twins")


def test_nearest_baseline_is_exact_when_the_query_twin_is_in_the_context(model, tmp_path):
    from worldmodel.data.reader import SceneDataset

    ds = SceneDataset(_twin_dataset(tmp_path / "twins"))
    cfg = QualityConfig(kmax=3, samples=2, batch_size=4, bootstrap=100, grid_scenes=2)
    res = evaluate_quality(model, ds, range(len(ds)), cfg)
    # with all 3 other views as context the query's twin is always there: an exact copy
    assert res["per_scene"]["psnr"]["nearest_context"][3] == [100.0] * 6
    assert res["psnr"][3]["nearest_context"] == {"mean": 100.0, "ci": [100.0, 100.0], "n": 6}
    assert max(res["per_scene"]["psnr"]["mean_context"][3]) < 30.0  # the mean blends in the other image
    assert all(v < 100.0 for v in res["per_scene"]["psnr"]["prior_mean"][3])
    # K = 1: exact only for the scenes whose single context view is the twin
    for g, near in zip(res["scene_indices"], res["per_scene"]["psnr"]["nearest_context"][1]):
        q, c = res["views"][str(g)][:2]
        assert (near == 100.0) == (q // 2 == c // 2)


def test_result_shapes_keys_and_determinism(model, data):
    from worldmodel.data.reader import SceneDataset

    ds = SceneDataset(data[2])
    cfg = QualityConfig(kmax=3, samples=3, batch_size=3, bootstrap=100, grid_scenes=2, seed=5)
    res = evaluate_quality(model, ds, range(len(ds)), cfg)
    assert sorted(res["psnr"]) == [1, 2, 3] and sorted(res["surprise"]) == [0, 1, 2, 3]
    for k in (1, 2, 3):
        assert set(res["psnr"][k]) == set(METHODS)
        for m in METHODS:
            s = res["psnr"][k][m]
            assert s["n"] == 7 and s["ci"][0] <= s["mean"] <= s["ci"][1] and 0 < s["mean"] < 100
        assert res["psnr"][k]["best_of_n"]["mean"] >= res["psnr"][k]["prior_sample"]["mean"]
        gain = res["gain_over_nearest"][k]["prior_mean"]["mean"]
        assert gain == pytest.approx(res["psnr"][k]["prior_mean"]["mean"] - res["psnr"][k]["nearest_context"]["mean"])
    assert all(s["mean"] >= 0 for s in res["surprise"].values())
    assert res["grid"]["context"].shape == (2, 3, 3, 16, 16) and res["grid"]["best_sample"].shape == (2, 3, 16, 16)
    again = evaluate_quality(model, ds, range(len(ds)), cfg)
    assert again["per_scene"] == res["per_scene"] and again["views"] == res["views"]
    other = evaluate_quality(model, ds, range(len(ds)), QualityConfig(kmax=3, samples=3, bootstrap=100, seed=6))
    assert other["views"] != res["views"]


def test_cli_writes_json_and_png_on_held_out_data_and_on_the_runs_split(run, data, tmp_path, capsys):
    from agents.cli import main

    out = tmp_path / "q" / "quality.json"
    assert (
        main(
            [
                "eval",
                "gqn",
                "--run",
                str(run),
                "--data",
                str(data[2]),
                "--kmax",
                "2",
                "--samples",
                "2",
                "--bootstrap",
                "100",
                "--no-progress",
                "--out",
                str(out),
                "--seed",
                "3",
            ]
        )
        == 0
    )
    assert "held-out query PSNR" in capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["format"] == "wm-gqn-quality-v1" and res["run"]["step"] == 3
    assert res["run"]["checkpoint_dir"].endswith("step_00000003")
    assert res["data"]["scenes_used"] == 7 and res["data"]["overlaps_training"] is False
    assert res["data"]["scene_indices"] == list(range(7))
    assert res["settings"]["kmax"] == 2 and res["settings"]["samples"] == 2 and res["settings"]["seed"] == 3
    assert sorted(res["psnr"]) == ["1", "2"] and sorted(res["surprise"]) == ["0", "1", "2"]
    assert res["versions"]["torch"] and res["settings"]["device"] == "cpu"
    import matplotlib.image

    png = matplotlib.image.imread(out.with_suffix(".png"))
    assert png.ndim == 3 and png.shape[0] > 300 and png.shape[1] > 600
    # default data: the run's validation split (last 20% = 4 of its 20 training scenes), default kmax = max_context
    out2 = tmp_path / "split.json"
    assert (
        main(
            [
                "eval",
                "gqn",
                "--run",
                str(run),
                "--samples",
                "1",
                "--bootstrap",
                "50",
                "--no-progress",
                "--grid-scenes",
                "0",
                "--out",
                str(out2),
            ]
        )
        == 0
    )
    res2 = json.loads(out2.read_text())
    assert res2["data"]["scene_indices"] == [16, 17, 18, 19] and "validation split" in res2["data"]["split"]
    assert sorted(res2["psnr"]) == ["1", "2", "3"]


def test_cli_errors_name_the_problem(run, data, tmp_path, capsys):
    from agents.cli import main
    from worldmodel.train.synthetic import write_synthetic_dataset

    assert main(["eval", "gqn", "--run", str(run), "--data", str(data[2]), "--kmax", "5", "--no-progress"]) == 2
    assert "--kmax 1..4" in capsys.readouterr().err
    empty = tmp_path / "empty_run"
    empty.mkdir()
    assert main(["eval", "gqn", "--run", str(empty), "--data", str(data[2])]) == 2
    assert "holds no GQN checkpoint" in capsys.readouterr().err
    small = write_synthetic_dataset(tmp_path / "px8", scenes=2, views=4, size=8, seed=0)
    assert main(["eval", "gqn", "--run", str(run), "--data", str(small), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "8px images" in err and "16px" in err
    assert (
        main(
            [
                "eval",
                "gqn",
                "--run",
                str(run),
                "--data",
                str(data[1]),
                "--samples",
                "1",
                "--scenes",
                "2",
                "--bootstrap",
                "20",
                "--no-progress",
                "--out",
                str(tmp_path / "t.json"),
            ]
        )
        == 0
    )
    assert "is the run's training dataset" in capsys.readouterr().err
    assert json.loads((tmp_path / "t.json").read_text())["data"]["overlaps_training"] is True
