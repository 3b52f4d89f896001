"""Dataset format: record round-trips, and each corruption case gives its clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from envs.scenes import SceneRecord, generate_scene
from worldmodel.data.cli import main as data_cli
from worldmodel.data.collect import CollectConfig, collect
from worldmodel.data.format import DatasetError, read_manifest, write_manifest
from worldmodel.data.reader import SceneDataset
from worldmodel.data.verify import verify_dataset
from worldmodel.data.writer import DatasetWriter, ShardWriter, write_scenes


def synthetic(n: int, views: int = 4, size: int = 8, seed: int = 0) -> list[SceneRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        frames = rng.integers(0, 256, (views, size, size, 3), dtype=np.uint8)
        cameras = rng.normal(size=(views, 5)).astype(np.float32)
        meta = {"index": i, "domain": {"floor": [0.1, 0.2, 0.3]}, "label": f"scene{i}", "np": np.float32(0.5)}
        extras = {"map": rng.integers(0, 256, (5, 5, 3), dtype=np.uint8), "qpos": rng.normal(size=9)}
        out.append(SceneRecord(frames, cameras, meta, extras))
    return out


@pytest.fixture()
def dataset(tmp_path: Path) -> tuple[Path, list[SceneRecord]]:
    records = synthetic(7)
    root = write_scenes(tmp_path / "ds", records, shard_size=3)
    return root, records


def test_round_trip_synthetic(dataset):
    root, records = dataset
    ds = SceneDataset(root, verify_checksums=True)
    assert len(ds) == 7 and ds.views == 4 and ds.size == 8
    assert ds.info["shards"] == 3 and ds.info["complete"]
    for i, rec in enumerate(records):
        item = ds[i]
        assert item["index"] == i
        assert item["frames"].dtype == np.uint8 and item["cameras"].dtype == np.float32
        np.testing.assert_array_equal(item["frames"], rec.frames)
        np.testing.assert_array_equal(item["cameras"], rec.cameras)
        extras = ds.read_extras(i)
        np.testing.assert_array_equal(extras["map"], rec.extras["map"])
        np.testing.assert_array_equal(extras["qpos"], rec.extras["qpos"])
        meta = ds.metadata(i)
        assert meta["label"] == f"scene{i}" and meta["domain"] == {"floor": [0.1, 0.2, 0.3]} and meta["np"] == 0.5
    frames, cams = ds.read_views(5, [3, 0])
    np.testing.assert_array_equal(frames, records[5].frames[[3, 0]])
    np.testing.assert_array_equal(cams, records[5].cameras[[3, 0]])
    # plain numpy can read a shard: the format is standard .npy
    shard = np.load(root / "shards" / "shard-000001.frames.npy")
    np.testing.assert_array_equal(shard[0], records[3].frames)
    assert verify_dataset(root).ok


def test_round_trip_real_generator(tmp_path):
    out = tmp_path / "sm"
    collect(
        CollectConfig(
            "shepard-metzler", scenes=3, out=str(out), views=3, size=16, seed=5, shard_size=2, workers=1, progress=False
        )
    )
    ds = SceneDataset(out)
    for i in range(3):
        ref = generate_scene("shepard-metzler", 5, i, 3, 16)
        np.testing.assert_array_equal(ds[i]["frames"], ref.frames)
        np.testing.assert_array_equal(ds[i]["cameras"], ref.cameras)
        assert ds.metadata(i)["index"] == i and ds.metadata(i)["seed"] == 5
        for k, v in ref.extras.items():
            np.testing.assert_array_equal(ds.read_extras(i)[k], v)
    assert ds[0]["frames"].std() > 0  # real rendering, not a blank image


def test_unknown_version(dataset):
    root, _ = dataset
    m = json.loads((root / "manifest.json").read_text())
    m["version"] = 99
    (root / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DatasetError, match=r"manifest\.json.*unknown dataset format version 99"):
        SceneDataset(root)


def test_missing_manifest(dataset):
    root, _ = dataset
    (root / "manifest.json").unlink()
    with pytest.raises(DatasetError, match=r"manifest\.json: manifest is missing"):
        SceneDataset(root)
    with pytest.raises(DatasetError, match="does not exist"):
        SceneDataset(root / "nope")


def test_manifest_mismatch(dataset):
    root, _ = dataset
    m = json.loads((root / "manifest.json").read_text())
    m["scenes"] = 8
    (root / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DatasetError, match=r"manifest\.json: manifest mismatch"):
        SceneDataset(root)
    # a shard entry whose shape disagrees with the dataset's views
    m["scenes"] = 7
    m["shards"][1]["files"]["frames"]["shape"][1] = 5
    (root / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DatasetError, match=r"shard-000001\.frames\.npy: manifest mismatch"):
        SceneDataset(root)


def test_truncated_shard(dataset):
    root, _ = dataset
    path = root / "shards" / "shard-000002.frames.npy"
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(DatasetError, match=r"shard-000002\.frames\.npy: shard file is truncated"):
        SceneDataset(root)
    path.unlink()
    with pytest.raises(DatasetError, match=r"shard-000002\.frames\.npy: shard file listed in the manifest is missing"):
        SceneDataset(root)


def test_checksum_failure_and_verify_cli(dataset, capsys):
    root, _ = dataset
    path = root / "shards" / "shard-000001.cameras.npy"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # same size, same header: only the checksum can tell
    path.write_bytes(bytes(data))
    SceneDataset(root, check="size")  # sizes and headers are fine: a size-only open succeeds
    with pytest.raises(DatasetError, match=r"shard-000001\.cameras\.npy: checksum failure: the whole \(small\) file"):
        SceneDataset(root)  # a small file is hashed whole by the default sampled check
    with pytest.raises(DatasetError, match=r"shard-000001\.cameras\.npy: checksum failure"):
        SceneDataset(root, verify_checksums=True)
    meta = root / "shards" / "shard-000000.meta.json"
    meta.write_text(meta.read_text() + " ")  # a second bad file: verify must name both
    assert data_cli(["verify", str(root), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "shard-000001.cameras.npy: checksum failure" in err
    assert "shard-000000.meta.json: shard file is larger than recorded" in err
    assert data_cli(["verify", str(root), "--no-checksums", "--quiet"]) == 1  # the meta size is still wrong


def test_verify_ok_and_info(dataset, capsys):
    root, _ = dataset
    assert data_cli(["verify", str(root), "--quiet"]) == 0
    assert data_cli(["info", str(root), "--json"]) == 0
    info = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert info["scenes"] == 7 and info["views"] == 4 and info["size"] == 8 and info["bytes"] > 7 * 4 * 8 * 8 * 3


def test_incomplete_dataset_is_refused_unless_allowed(dataset):
    root, _ = dataset
    m = read_manifest(root)
    m["units_planned"] = 4
    m["scenes_planned"] = 9
    write_manifest(root, m)
    with pytest.raises(DatasetError, match=r"incomplete \(7 of 9 scenes, 3 of 4 shards\)"):
        SceneDataset(root)
    assert len(SceneDataset(root, allow_incomplete=True)) == 7
    report = verify_dataset(root)
    assert not report.ok and report.files_ok and "missing 1 shard(s): units 3" in report.incomplete
    assert verify_dataset(root, allow_partial=True).ok
    assert any("incomplete" in w for w in verify_dataset(root, allow_partial=True).warnings)


def test_torn_files_are_never_listed(tmp_path):
    """An unfinished shard leaves only dot-named temp files that resume removes."""
    header = {
        "source": "synthetic",
        "views": 4,
        "size": 8,
        "scenes_planned": 4,
        "units_planned": 2,
        "shard_size": 2,
        "collection": {"k": 1},
    }
    recs = synthetic(4)
    with DatasetWriter(tmp_path / "d", header) as dw:
        sw = ShardWriter(tmp_path / "d", 0, 0)
        for r in recs[:2]:
            sw.add(r)
        dw.commit(sw.finish())
        torn = ShardWriter(tmp_path / "d", 1, 2)
        torn.add(recs[2])  # "killed" here: never finished
    leftovers = [p.name for p in (tmp_path / "d" / "shards").iterdir() if p.name.startswith(".tmp-")]
    assert leftovers
    assert len(SceneDataset(tmp_path / "d", allow_incomplete=True)) == 2
    with DatasetWriter(tmp_path / "d", header) as dw:  # resume cleans up
        assert dw.done_units == {0}
    assert not [p for p in (tmp_path / "d" / "shards").iterdir() if p.name.startswith(".tmp-")]
    with pytest.raises(DatasetError, match=r"refusing to resume.*k: 1 then, 2 now"):
        DatasetWriter(tmp_path / "d", {**header, "collection": {"k": 2}})
    # with nothing committed yet there is nothing to protect: new arguments start over
    DatasetWriter(tmp_path / "e", header).close()
    with DatasetWriter(tmp_path / "e", {**header, "collection": {"k": 2}}) as dw:
        assert dw.manifest["collection"] == {"k": 2}


def test_writer_rejects_inconsistent_records(tmp_path):
    recs = synthetic(2)
    bad = SceneRecord(recs[1].frames[:3], recs[1].cameras[:3], {}, recs[1].extras)
    with pytest.raises(ValueError, match=r"scene 1 frames: expected uint8\[4, 8, 8, 3\]"):
        write_scenes(tmp_path / "x", [recs[0], bad], shard_size=2)
    assert not [p for p in (tmp_path / "x" / "shards").iterdir()], "a failed shard must leave no files"
    with pytest.raises(DatasetError, match="a dataset already exists"):
        write_scenes(tmp_path / "x", recs, shard_size=2)
    shutil.rmtree(tmp_path / "x")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match=r"not empty and has no manifest\.json \(found \['notes\.txt'\]\)"):
        write_scenes(tmp_path / "x", recs, shard_size=2)
    shutil.rmtree(tmp_path / "x")
    with pytest.raises(ValueError, match="extras"):
        write_scenes(tmp_path / "x", [recs[0], SceneRecord(recs[1].frames, recs[1].cameras)], shard_size=2)


def test_second_writer_is_locked_out(tmp_path):
    header = {
        "source": "s",
        "views": 4,
        "size": 8,
        "scenes_planned": 2,
        "units_planned": 1,
        "shard_size": 2,
        "collection": {},
    }
    with DatasetWriter(tmp_path / "d", header):
        with pytest.raises(DatasetError, match="another process is writing"):
            DatasetWriter(tmp_path / "d", header)
