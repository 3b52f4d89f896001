"""GQN and pair loaders: shapes, context counts, skips, relative transforms, determinism, ranks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from envs.camera import pose_matrix, viewpoint7
from envs.scenes import SceneRecord
from worldmodel.data.loader import make_gqn_loader, make_pair_loader
from worldmodel.data.reader import SceneDataset
from worldmodel.data.transfer import to_device
from worldmodel.data.writer import write_scenes

SCENES, VIEWS, SIZE = 24, 8, 8


def _records() -> list[SceneRecord]:
    """Scenes whose pixels name their (scene, view): frames[v, 0, 0] = (scene, view, 7)."""
    rng = np.random.default_rng(3)
    out = []
    for i in range(SCENES):
        frames = rng.integers(0, 256, (VIEWS, SIZE, SIZE, 3), dtype=np.uint8)
        frames[:, 0, 0] = [(i, v, 7) for v in range(VIEWS)]
        cams = np.concatenate(
            [
                rng.uniform(-2, 2, (VIEWS, 3)),
                rng.uniform(-np.pi, np.pi, (VIEWS, 1)),
                rng.uniform(-1.2, 1.2, (VIEWS, 1)),
            ],
            axis=1,
        ).astype(np.float32)
        out.append(SceneRecord(frames, cams, {"index": i}))
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[SceneDataset, list[SceneRecord]]:
    records = _records()
    root = write_scenes(tmp_path_factory.mktemp("loader") / "ds", records, shard_size=5, source="rooms")
    return SceneDataset(root), records


def _ids(frames: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(scene, view) encoded in the top-left pixel of uint8 frames [..., H, W, 3]."""
    px = frames[..., 0, 0, :].numpy()
    assert (px[..., 2] == 7).all()
    return px[..., 0].astype(int), px[..., 1].astype(int)


def test_gqn_batches(data):
    ds, records = data
    loader = make_gqn_loader(ds, batch_size=4, max_context=5, seed=1)
    assert len(loader) == SCENES // 4
    ks = set()
    for _ in range(4):
        for b in loader:
            B, K = b["context_frames"].shape[:2]
            ks.add(K)
            assert b["context_frames"].shape == (B, K, SIZE, SIZE, 3) and b["context_frames"].dtype == torch.uint8
            assert b["context_cameras"].shape == (B, K, 5) and b["context_cameras"].dtype == torch.float32
            assert b["query_frame"].shape == (B, SIZE, SIZE, 3) and b["query_frame"].dtype == torch.uint8
            assert b["query_camera"].shape == (B, 5) and b["query_camera"].dtype == torch.float32
            assert B == 4 and 1 <= K <= 5
            cs, cv = _ids(b["context_frames"])
            qs, qv = _ids(b["query_frame"])
            for j in range(B):
                scene = int(b["index"][j])
                assert (cs[j] == scene).all() and qs[j] == scene
                views = [*cv[j], qv[j]]
                assert len(set(views)) == K + 1  # without replacement, query not among the context
                np.testing.assert_array_equal(b["context_cameras"][j].numpy(), records[scene].cameras[cv[j]])
                np.testing.assert_array_equal(b["query_camera"][j].numpy(), records[scene].cameras[qv[j]])
    assert ks == {1, 2, 3, 4, 5}
    assert make_gqn_loader(ds, batch_size=2, seed=0).batch_specs.max_context == 5  # rooms default
    with pytest.raises(ValueError, match=r"max_context must be in 1\.\.7"):
        make_gqn_loader(ds, batch_size=2, max_context=8)


def test_pairs_and_relative_transform(data):
    ds, records = data
    loader = make_pair_loader(ds, batch_size=6, skips=(2, 4), seed=2)
    skips = set()
    for b in loader:
        assert b["frame_a"].shape == (6, SIZE, SIZE, 3) and b["frame_b"].dtype == torch.uint8
        assert b["relative"].shape == (6, 4, 4) and b["relative"].dtype == torch.float32
        assert b["skip"].dtype == torch.int64
        sa, va = _ids(b["frame_a"])
        sb, vb = _ids(b["frame_b"])
        np.testing.assert_array_equal(sa, sb)
        np.testing.assert_array_equal(vb - va, b["skip"].numpy())  # b = a + k along the ordered views
        skips.update(b["skip"].tolist())
        for j in range(6):
            cam_a, cam_b = records[sa[j]].cameras[va[j]], records[sa[j]].cameras[vb[j]]
            np.testing.assert_array_equal(b["camera_a"][j].numpy(), cam_a)
            expected = np.linalg.inv(pose_matrix(cam_a)) @ pose_matrix(cam_b)
            np.testing.assert_allclose(b["relative"][j].numpy(), expected, atol=1e-5)
    assert skips == {2, 3, 4}
    zero = next(iter(make_pair_loader(ds, batch_size=3, skips=(0, 0))))
    np.testing.assert_allclose(zero["relative"].numpy(), np.broadcast_to(np.eye(4), (3, 4, 4)), atol=1e-5)
    with pytest.raises(ValueError, match=r"skips must be an inclusive range .* 0 <= lo <= hi <= 7"):
        make_pair_loader(ds, batch_size=2, skips=(1, 8))


def _batches(loader) -> list[dict[str, torch.Tensor]]:
    return [b for b in loader]


def _same(xs, ys) -> bool:
    return len(xs) == len(ys) and all(
        x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(xs, ys)
    )


def test_determinism_and_workers(data):
    ds, _ = data
    a = _batches(make_gqn_loader(ds, batch_size=4, max_context=4, seed=5, num_workers=0))
    b = _batches(make_gqn_loader(ds, batch_size=4, max_context=4, seed=5, num_workers=2))
    assert _same(a, b)  # the number of workers changes nothing
    c = _batches(make_gqn_loader(ds, batch_size=4, max_context=4, seed=6))
    assert not _same(a, c)
    loader = make_gqn_loader(ds, batch_size=4, max_context=4, seed=5)
    first, second = _batches(loader), _batches(loader)
    assert _same(first, a) and not _same(first, second)  # passes advance the epoch
    loader.set_epoch(0)
    assert _same(_batches(loader), a)
    p0 = _batches(make_pair_loader(ds, batch_size=4, seed=5, num_workers=0))
    p2 = _batches(make_pair_loader(ds, batch_size=4, seed=5, num_workers=2))
    assert _same(p0, p2)


def test_distributed_ranks_are_disjoint(data):
    ds, _ = data
    seen, ks = [], []
    for rank in range(2):
        loader = make_gqn_loader(ds, batch_size=3, max_context=3, seed=4, num_replicas=2, rank=rank)
        loader.set_epoch(3)
        batches = list(loader)
        seen.append({int(i) for b in batches for i in b["index"]})
        ks.append([b["context_frames"].shape[1] for b in batches])
    assert seen[0] and seen[1] and not (seen[0] & seen[1])
    assert ks[0] == ks[1] and len(set(ks[0])) > 1  # every rank runs the same K per batch; K still varies
    assert seen[0] | seen[1] == set(range(SCENES))
    with pytest.raises(ValueError, match="distributed=True needs torch.distributed"):
        make_gqn_loader(ds, batch_size=3, distributed=True)


def test_to_device(data):
    ds, _ = data
    b = next(iter(make_gqn_loader(ds, batch_size=2, max_context=3, seed=0)))
    out = to_device(b, "cpu")
    K = b["context_frames"].shape[1]
    assert out["context_frames"].shape == (2, K, 3, SIZE, SIZE) and out["context_frames"].dtype == torch.float32
    np.testing.assert_allclose(
        out["query_frame"].numpy(), b["query_frame"].permute(0, 3, 1, 2).numpy() / 255.0, atol=1e-7
    )
    assert 0.0 <= float(out["query_frame"].min()) and float(out["query_frame"].max()) <= 1.0
    np.testing.assert_allclose(out["context_viewpoints"].numpy(), viewpoint7(b["context_cameras"].numpy()), atol=1e-6)
    np.testing.assert_allclose(out["query_viewpoint"].numpy(), viewpoint7(b["query_camera"].numpy()), atol=1e-6)
    dm = to_device(b, "cpu", viewpoint_order="deepmind")
    np.testing.assert_allclose(
        dm["query_viewpoint"].numpy(), viewpoint7(b["query_camera"].numpy(), "deepmind"), atol=1e-6
    )
    assert torch.equal(out["index"], b["index"])
    p = to_device(next(iter(make_pair_loader(ds, batch_size=2))), "cpu", dtype=torch.bfloat16, channels_last=True)
    assert p["frame_a"].dtype == torch.bfloat16 and p["frame_a"].is_contiguous(memory_format=torch.channels_last)
    assert p["viewpoint_a"].shape == (2, 7) and p["relative"].dtype == torch.float32
    cl = to_device(b, "cpu", channels_last=True)["context_frames"]  # 5-d: flattens to a channels-last batch
    assert cl.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(cl, out["context_frames"])


def test_dataset_survives_pickling(data, tmp_path: Path):
    """Workers get the dataset by pickling (spawn): memory maps must not travel."""
    import pickle

    ds, records = data
    ds[0]  # opens a map
    clone = pickle.loads(pickle.dumps(ds))
    assert not clone._maps
    np.testing.assert_array_equal(clone[7]["frames"], records[7].frames)


def test_pair_skips_reach_past_the_trajectory_protocols_largest(tmp_path):
    """Training pairs may span more frames than the evaluated skips (up to 10), within the views."""
    from worldmodel.data.loader import MAX_SKIP
    from worldmodel.models.niso_config import MAX_PAIR_SKIP, NisoConfig
    from worldmodel.train.synthetic import write_synthetic_dataset

    assert MAX_SKIP == MAX_PAIR_SKIP  # the config's bound and the loader's are one limit, kept in two torch layers

    ds = SceneDataset(write_synthetic_dataset(tmp_path / "long", scenes=4, views=16, size=8, seed=0))
    seen = {int(k) for b in make_pair_loader(ds, batch_size=2, skips=(11, 12), seed=0) for k in b["skip"]}
    assert seen <= {11, 12} and seen
    assert NisoConfig(skips=(0, 12)).skips == (0, 12)
    with pytest.raises(ValueError, match=f"max <= {MAX_PAIR_SKIP}"):
        NisoConfig(skips=(0, MAX_PAIR_SKIP + 1))
    with pytest.raises(ValueError, match="<= 15"):
        make_pair_loader(ds, batch_size=2, skips=(0, 16))
