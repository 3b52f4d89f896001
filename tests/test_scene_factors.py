"""Ground-truth factors recorded by the Jaco and Rooms collectors, their binning, and the metrics on scene views."""

from __future__ import annotations

import json

import numpy as np
import pytest

from worldmodel.data.collect import CollectConfig, collect
from worldmodel.data.reader import SceneDataset
from worldmodel.data.scene_factors import (
    CAMERA_FACTORS,
    SceneFactorError,
    SceneFactors,
    discretise,
    is_scene_dataset,
    load_scene_factors,
    scene_split,
)

SIZE = 16


def _collect(tmp_path, source: str, scenes: int = 3, views: int = 3, **options):
    out = tmp_path / source
    collect(
        CollectConfig(
            source=source,
            scenes=scenes,
            out=str(out),
            views=views,
            size=SIZE,
            seed=4,
            options=options,
            workers=1,
            progress=False,
        )
    )
    return out


def _close(a: np.ndarray, b: np.ndarray) -> None:
    """Re-rendered frames equal the recorded ones up to the float32 rounding of the recorded camera."""
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.mean() < 0.1 and (diff > 8).mean() < 0.002, (diff.mean(), (diff > 8).mean())  # 5 cm off: 0.65, 1.3%


def test_jaco_factors_are_recorded_and_match_the_render(tmp_path):
    import mujoco

    from envs import jaco_model as jm
    from envs.camera import CameraPose
    from envs.domain import DOMAINS
    from envs.rendering import OffscreenRenderer

    root = _collect(tmp_path, "jaco")
    ds = SceneDataset(root)
    sf = load_scene_factors(ds)
    joints = tuple(f"joint/{n}" for n in jm.JOINT_NAMES)
    assert sf.names == CAMERA_FACTORS + joints + ("target/x", "target/y", "target/z")
    assert sf.values.shape == (9, 17) and sf.frames.shape == (9, SIZE, SIZE, 3) and set(sf.kinds) == {"continuous"}
    assert sf.scene.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and sf.view.tolist() == [0, 1, 2] * 3
    # Deterministic: a second collection records the same factors.
    again = load_scene_factors(_collect(tmp_path / "again", "jaco"))
    np.testing.assert_array_equal(again.values, sf.values)

    model = jm.build_model(DOMAINS["sim"], room=True)  # a fresh model, not the collector's cached one
    data, ids = mujoco.MjData(model), jm.JacoIds(model)
    renderer = OffscreenRenderer(model, SIZE, SIZE)
    try:
        for i in range(len(ds)):
            rows = sf.values[sf.scene == i]
            assert np.all(rows[:, 5:] == rows[0, 5:]) and len(np.unique(rows[:, 3])) == ds.views  # per scene, per view
            extras = ds.read_extras(i)
            qpos, target = rows[0, 5:14], rows[0, 14:]
            np.testing.assert_allclose(qpos, extras["qpos"], atol=1e-6)
            np.testing.assert_allclose(target, extras["target"], atol=1e-6)
            np.testing.assert_array_equal(rows[:, :5], ds.cameras(i))
            mujoco.mj_resetData(model, data)
            jm.place_target(data, ids, target)
            data.qpos[:] = qpos
            mujoco.mj_forward(model, data)
            np.testing.assert_allclose(data.mocap_pos[ids.target_mocap], target)  # the rendered target
            for v in range(ds.views):
                frame = renderer.render(data, CameraPose.from_viewpoint(ds.cameras(i)[v]))
                _close(frame, ds[i]["frames"][v])
    finally:
        renderer.close()


def test_rooms_factors_are_recorded_and_match_the_render(tmp_path):
    import colorsys

    from envs.camera import CameraPose
    from envs.scenes import rooms

    root = _collect(tmp_path, "rooms", scenes=4, n_objects=[1, 3])
    ds = SceneDataset(root)
    sf = load_scene_factors(ds, views=[0, 2])
    per_slot = ("shape", "hue", "saturation", "value", "x", "y", "yaw")
    assert len(sf.names) == 5 + 1 + 6 + rooms.MAX_OBJECTS * len(per_slot) and len(sf) == 8
    assert sf.kinds[sf.names.index("object0/shape")] == "categorical"
    for i in range(len(ds)):
        meta = ds.metadata(i)
        row = dict(zip(sf.names, sf.values[sf.scene == i][0], strict=True))
        n = int(row["n_objects"])
        assert n == len(meta["objects"]) and 1 <= n <= 3
        assert all(np.isnan(row[f"object{k}/x"]) for k in range(n, rooms.MAX_OBJECTS))  # empty slots
        objects = []
        for k in range(n):
            rgb = colorsys.hsv_to_rgb(*(row[f"object{k}/{c}"] for c in ("hue", "saturation", "value")))
            np.testing.assert_allclose(rgb, meta["objects"][k]["colour"], atol=1e-6)
            assert meta["shapes"][int(row[f"object{k}/shape"])] == meta["objects"][k]["shape"]
            objects.append(
                rooms.RoomObject(
                    meta["shapes"][int(row[f"object{k}/shape"])],
                    tuple(rgb),
                    (row[f"object{k}/x"], row[f"object{k}/y"]),
                    row[f"object{k}/yaw"],
                )
            )
        wall = colorsys.hsv_to_rgb(*(row[f"wall/{c}"] for c in ("hue", "saturation", "value")))
        floor = colorsys.hsv_to_rgb(*(row[f"floor/{c}"] for c in ("hue", "saturation", "value")))
        layout = rooms.RoomLayout(tuple(wall), tuple(floor), tuple(objects))
        poses = [CameraPose.from_viewpoint(c) for c in ds.cameras(i)]
        _close(rooms.render_layout(layout, poses, SIZE), ds[i]["frames"])  # rebuilt from the factors alone


def _synthetic(n_scenes: int = 60, views: int = 4, seed: int = 0) -> SceneFactors:
    rng = np.random.default_rng(seed)
    scene_values = np.column_stack(
        [rng.uniform(-1, 1, n_scenes), rng.integers(0, 3, n_scenes).astype(float), np.full(n_scenes, 0.3)]
    )
    scene_values[rng.uniform(size=n_scenes) < 0.25, 0] = np.nan
    n = n_scenes * views
    cams = rng.uniform(-1, 1, (n, 5)).astype(np.float32)
    values = np.concatenate([cams.astype(np.float64), np.repeat(scene_values, views, axis=0)], axis=1)
    return SceneFactors(
        frames=np.zeros((n, 4, 4, 3), np.uint8),
        cameras=cams,
        values=values,
        names=CAMERA_FACTORS + ("size", "kind", "fixed"),
        kinds=("continuous",) * 6 + ("categorical", "continuous"),
        scene=np.repeat(np.arange(n_scenes), views),
        view=np.tile(np.arange(views), n_scenes),
    )


def test_discretise_quantile_bins_missing_class_categories_and_constants():
    sf = _synthetic()
    b = discretise(sf, num_bins=10)
    assert b.dropped == ("fixed",) and b.names == CAMERA_FACTORS + ("size", "kind")
    assert b.sizes == (10,) * 5 + (11, 3) and b.classes.shape == (240, 7)
    counts = np.bincount(b.classes[:, 0], minlength=10)
    assert counts.min() >= 20 and counts.max() <= 28  # equal-count bins of 240 views
    missing = np.isnan(sf.values[:, 5])
    assert np.all(b.classes[missing, 5] == 10) and np.all(b.classes[~missing, 5] < 10)
    np.testing.assert_array_equal(b.classes[:, 6], sf.values[:, 6].astype(int))
    assert b.categories["kind"] == [0.0, 1.0, 2.0] and len(b.edges["camera/x"]) == 9
    with pytest.raises(SceneFactorError, match="num_bins must be an integer >= 2, got 1"):
        discretise(sf, num_bins=1)
    assert scene_split(600, 0.2) == (range(0, 480), range(480, 600))
    with pytest.raises(SceneFactorError, match="test_fraction must be in"):
        scene_split(10, 1.0)


def test_scene_metrics_rank_true_factors_above_mixed_and_split_by_scene():
    from worldmodel.eval.disentanglement.dci import DCIConfig
    from worldmodel.eval.disentanglement.scenes import SceneEvalConfig, parse_scene_metrics, score_codes

    sf = _synthetic(n_scenes=90)
    b = discretise(sf, num_bins=5)
    truth = np.nan_to_num(sf.values[:, :7], nan=2.0)
    rng = np.random.default_rng(1)
    mixed = truth @ np.linalg.qr(rng.normal(size=(7, 7)))[0]
    config = SceneEvalConfig(num_bins=5, dci=DCIConfig(importance="random_forest", n_estimators=30))
    good = score_codes(truth, b, sf.scene, seed=0, config=config)
    bad = score_codes(mixed, b, sf.scene, seed=0, config=config)
    assert good["fit_scenes"] == 60 and good["test_scenes"] == 30 and good["fit_views"] == 240
    for metric in ("mig", "dci", "sap"):
        assert good["scores"][metric] > bad["scores"][metric] + 0.1, metric
    assert good["scores"]["dci"] > 0.8 and good["metrics"]["dci"]["informativeness"] > 0.6
    with pytest.raises(ValueError, match="cannot run on a scene dataset; allowed: mig, dci, sap"):
        parse_scene_metrics("factorvae,mig")


def test_cli_scores_a_collected_scene_dataset(tmp_path, capsys):
    pytest.importorskip("torch")
    from agents.cli import main
    from tests.agents_fake_env import save_tiny_gqn

    root = _collect(tmp_path, "jaco", scenes=6, views=4)
    assert is_scene_dataset(root) and not is_scene_dataset(tmp_path)
    ckpt = save_tiny_gqn(tmp_path / "gqn", size=SIZE)
    out = tmp_path / "res" / "scene.json"
    args = [
        "eval",
        "disentanglement",
        "--run",
        str(ckpt),
        "--data",
        str(root),
        "--preset",
        "quick",
        "--scenes",
        "0:6",
        "--bins",
        "3",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    res = json.loads(out.read_text())
    assert set(res["scores"]) == {"mig", "dci", "sap"} and res["views"] == 24
    assert res["fit_scenes"] == 4 and res["test_scenes"] == 2 and res["encoder"]["viewpoint"] == "recorded"
    assert "joint/finger_1" in res["factors"]["dropped"] and "target/x" in res["factors"]["names"]
    assert all(0.0 <= v <= 1.0 for v in res["scores"].values())
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert main([*args[:-3], "--metrics", "factorvae", "--out", str(out)]) == 2
    assert "FactorVAE and beta-VAE scores intervene on factors" in capsys.readouterr().err
    sm = _collect(tmp_path, "shepard-metzler", scenes=2, views=2)
    assert main([*args[:5], str(sm), "--out", str(out), "--no-progress"]) == 2
    assert "records no ground-truth factors" in capsys.readouterr().err
