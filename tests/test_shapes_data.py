"""Procedural dSprites grid, the dSprites .npz reader, the pinwheel and the single-image loaders."""

import numpy as np
import pytest
import torch

from worldmodel.data.factors import FactorDataError, FactorDataset
from worldmodel.data.image_loader import FactorImageLoader, factor_run_data, make_image_loader
from worldmodel.data.pinwheel import PointLoader, make_pinwheel
from worldmodel.data.shapes import FACTOR_SIZES, DSpritesNpz, ShapesDataset

DS = ShapesDataset()


def _one(shape=0, scale=5, orientation=0, x=16, y=16):
    return DS.render(np.array([[shape, scale, orientation, x, y]]))[0, 0] > 0


def test_factor_grid_counts_and_index_order():
    assert DS.factor_sizes == (3, 6, 40, 32, 32) and len(DS) == 737_280
    assert DS.factor_names == ("shape", "scale", "orientation", "pos_x", "pos_y")
    assert isinstance(DS, FactorDataset)
    idx = np.array([0, 1, 32, 737_279, 123_457])
    fac = DS.factors_of(idx)
    np.testing.assert_array_equal(fac[:3], [[0, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 1, 0]])  # pos_y fastest
    np.testing.assert_array_equal(fac[3], np.array(FACTOR_SIZES) - 1)
    np.testing.assert_array_equal(DS.index_of(fac), idx)
    with pytest.raises(IndexError, match="0..737279"):
        DS.factors_of([737_280])


def test_rendering_is_binary_and_deterministic():
    rng = np.random.default_rng(0)
    fac = DS.sample_factors(200, rng)
    assert fac.shape == (200, 5) and (fac.max(0) < np.array(FACTOR_SIZES)).all()
    a = DS.render(fac)
    assert a.shape == (200, 1, 64, 64) and a.dtype == np.uint8 and set(np.unique(a)) <= {0, 255}
    np.testing.assert_array_equal(a, DS.render(fac))
    obs = DS.sample_observations_from_factors(fac, np.random.default_rng(99))
    assert obs.dtype == np.float32 and obs.shape == (200, 1, 64, 64)
    np.testing.assert_array_equal(obs, a / 255.0)
    assert (a.reshape(200, -1).sum(1) > 0).all()  # never empty, never clipped to nothing
    np.testing.assert_array_equal(DS.images(DS.index_of(fac)), a)


def test_shapes_differ_and_scale_grows_the_area_monotonically():
    square, ellipse, heart = _one(0), _one(1), _one(2)
    assert (square != heart).sum() > 30 and (ellipse != heart).sum() > 30 and (square != ellipse).sum() > 30
    for shape in range(3):
        areas = [_one(shape, scale=s).sum() for s in range(6)]
        assert all(b > a for a, b in zip(areas, areas[1:])), areas


def _axis_angle(mask):
    ys, xs = np.nonzero(mask)
    x, y = xs - xs.mean(), -(ys - ys.mean())  # y up
    cov = np.cov(np.stack([x, y]))
    w, v = np.linalg.eigh(cov)
    major = v[:, np.argmax(w)]
    return np.arctan2(major[1], major[0]) % np.pi


def test_orientation_rotates_the_shape_counter_clockwise():
    thetas = np.linspace(0, 2 * np.pi, 40)
    for k in (0, 3, 7, 13, 22, 30):
        got = _axis_angle(_one(1, orientation=k))
        diff = (got - thetas[k] % np.pi + np.pi / 2) % np.pi - np.pi / 2
        assert abs(diff) < np.deg2rad(4), (k, np.rad2deg(got), np.rad2deg(thetas[k] % np.pi))
    np.testing.assert_array_equal(_one(0, orientation=0), _one(0, orientation=39))  # 0 and 2 pi, as in dSprites
    assert (_one(2, orientation=0) != _one(2, orientation=10)).sum() > 20


def test_positions_move_the_centroid():
    def centroid(mask):
        ys, xs = np.nonzero(mask)
        return xs.mean(), ys.mean()

    (x0, y0), (x1, _), (_, y1) = centroid(_one(x=0, y=0)), centroid(_one(x=31, y=0)), centroid(_one(x=0, y=31))
    assert x1 - x0 > 30 and y1 - y0 > 30  # pos_x to the right, pos_y downwards


def _fake_dsprites(path, sizes=(1, 3, 2, 2, 2, 2), **override):
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij"), -1).reshape(-1, len(sizes))
    n = len(grid)
    imgs = np.zeros((n, 8, 8), dtype=np.uint8)
    for i in range(n):  # image i shows its index in binary on the first row
        imgs[i, 0, :7] = [(i >> b) & 1 for b in range(7)]
    arrays = {"imgs": imgs, "latents_values": grid.astype(np.float64), "latents_classes": grid.astype(np.int64)}
    arrays.update(override)
    np.savez(path, **arrays)
    return path, grid


def test_dsprites_npz_reader_serves_the_grid(tmp_path):
    path, grid = _fake_dsprites(tmp_path / "dsprites_ndarray_fake.npz")
    ds = DSpritesNpz(path)
    assert ds.factor_sizes == (3, 2, 2, 2, 2) and len(ds) == 48 and isinstance(ds, FactorDataset)
    fac = np.array([[2, 1, 0, 1, 1], [0, 0, 0, 0, 0]])
    obs = ds.sample_observations_from_factors(fac, np.random.default_rng(0))
    rows = [int(np.flatnonzero((grid[:, 1:] == f).all(1))[0]) for f in fac]
    decoded = [int(sum(int(obs[i, 0, 0, b]) << b for b in range(7))) for i in range(2)]
    assert decoded == rows and obs.max() == 1.0 and obs.dtype == np.float32
    assert ds.images([rows[0]]).max() == 255


def test_dsprites_npz_of_the_wrong_shape_gives_clear_errors(tmp_path):
    path, grid = _fake_dsprites(tmp_path / "a.npz", latents_classes=np.zeros((48, 5), dtype=np.int64))
    with pytest.raises(FactorDataError, match=r"latents_classes must have shape \[N, 6\]"):
        DSpritesNpz(path)
    np.savez(tmp_path / "b.npz", images=np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(FactorDataError, match=r"missing arrays \['imgs', 'latents_values', 'latents_classes'\]"):
        DSpritesNpz(tmp_path / "b.npz")
    path, grid = _fake_dsprites(tmp_path / "c.npz", imgs=np.zeros((48, 8), np.uint8))
    with pytest.raises(FactorDataError, match="imgs must have shape"):
        DSpritesNpz(path)
    partial = _fake_dsprites(tmp_path / "d.npz")[1]
    np.savez(
        tmp_path / "d.npz",
        imgs=np.zeros((47, 8, 8), np.uint8),
        latents_values=partial[:47].astype(float),
        latents_classes=partial[:47],
    )
    with pytest.raises(FactorDataError, match="grid"):
        DSpritesNpz(tmp_path / "d.npz")
    with pytest.raises(FactorDataError, match=r"shape factors must have shape \[n, 5\]"):
        DS.render(np.zeros((3, 4), dtype=int))
    with pytest.raises(FactorDataError, match="column 1 holds classes"):
        DS.render(np.array([[0, 6, 0, 0, 0]]))


def test_factor_image_loader_batches_are_deterministic_and_split_across_ranks():
    loader = FactorImageLoader(DS, np.arange(1000), batch_size=16, seed=3)
    b1 = next(iter(loader))
    assert b1["image"].shape == (16, 1, 64, 64) and b1["image"].dtype == torch.uint8
    assert b1["factors"].shape == (16, 5) and len(loader) == 62
    loader.set_epoch(0)
    torch.testing.assert_close(next(iter(loader))["index"], b1["index"])
    loader.set_epoch(1)
    assert not torch.equal(next(iter(loader))["index"], b1["index"])
    shares = [set(FactorImageLoader(DS, np.arange(1000), 10, seed=3, rank=r, world_size=2).order(0)) for r in (0, 1)]
    assert not shares[0] & shares[1] and len(shares[0]) == 500
    run = factor_run_data(DS, 8, seed=0, val_fraction=0.01)
    assert run.info["image_size"] == 64 and run.info["val"]["count"] == 7373
    assert np.intersect1d(run.train_loader.indices, run.val_loader.indices).size == 0


def test_pinwheel_has_four_arms_of_100_points():
    pts, lab = make_pinwheel(seed=0)
    assert pts.shape == (400, 2) and pts.dtype == np.float32 and np.bincount(lab).tolist() == [100] * 4
    np.testing.assert_array_equal(pts, make_pinwheel(seed=0)[0])
    assert not np.array_equal(pts, make_pinwheel(seed=1)[0])
    angles = [np.angle(np.mean(np.exp(1j * np.arctan2(*pts[lab == k][:, ::-1].T)))) for k in range(4)]
    gaps = np.diff(np.unwrap(np.sort(angles)))
    np.testing.assert_allclose(np.abs(gaps), np.pi / 2, atol=0.25)
    radii = np.linalg.norm(pts, axis=1)
    assert 0.8 < np.median(radii) < 1.2
    batches = list(PointLoader(pts, lab, batch_size=100))
    assert len(batches) == 4 and batches[0]["points"].shape == (100, 2)


def test_image_loader_kind_reads_single_views(tmp_path):
    from worldmodel.train.synthetic import write_synthetic_dataset

    data = write_synthetic_dataset(tmp_path / "scenes", scenes=6, views=4, size=16, seed=0)
    loader = make_image_loader(data, batch_size=3, seed=0)
    batch = next(iter(loader))
    assert batch["image"].shape == (3, 16, 16, 3) and batch["image"].dtype == torch.uint8
    assert batch["camera"].shape == (3, 5) and (batch["view"] < 4).all() and len(loader) == 2
