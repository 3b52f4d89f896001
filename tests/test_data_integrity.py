"""Dataset integrity: verify exit codes, resume re-checks of committed shards, the sampled
per-shard hash at open, CRC32C backends, and ``wm train --verify``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from worldmodel.data import format as fmt
from worldmodel.data.cli import main as data_cli
from worldmodel.data.collect import CollectConfig, collect
from worldmodel.data.format import DatasetError, read_manifest, write_manifest
from worldmodel.data.reader import SceneDataset
from worldmodel.data.verify import verify_dataset

# 3 views of 48 px, 3 scenes per shard: 62 KiB frames files, larger than the sampled blocks.
SCENES, VIEWS, SIZE, SHARD = 12, 3, 48, 3
ARGS = dict(views=VIEWS, size=SIZE, seed=3, shard_size=SHARD)


def _collect_cli(out: Path, *extra: str) -> int:
    return data_cli(
        [
            "collect",
            "--source",
            "shepard-metzler",
            "--scenes",
            str(SCENES),
            "--views",
            str(VIEWS),
            "--size",
            str(SIZE),
            "--seed",
            "3",
            "--shard-size",
            str(SHARD),
            "--workers",
            "1",
            "--out",
            str(out),
            "--quiet",
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted collection (real MuJoCo renders)."""
    out = tmp_path_factory.mktemp("ref") / "sm"
    collect(CollectConfig("shepard-metzler", SCENES, str(out), workers=1, progress=False, **ARGS))
    return out


@pytest.fixture()
def copy(reference, tmp_path) -> Path:
    out = tmp_path / "sm"
    shutil.copytree(reference, out)
    return out


def assert_identical(a: Path, b: Path) -> None:
    """Same manifest file entries (sizes, sha256, sampled hashes) and the same bytes in every listed file."""
    ma, mb = read_manifest(a), read_manifest(b)
    assert ma["complete"] and mb["complete"]
    assert [s["files"] for s in ma["shards"]] == [s["files"] for s in mb["shards"]]
    for s in ma["shards"]:
        for entry in s["files"].values():
            assert (a / entry["path"]).read_bytes() == (b / entry["path"]).read_bytes()
    da, db = SceneDataset(a, verify=True), SceneDataset(b, verify=True)
    np.testing.assert_array_equal(da[len(da) - 1]["frames"], db[len(db) - 1]["frames"])


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _unsampled_offset(path: Path) -> int:
    """A byte offset of ``path`` that no sampled block covers (computed from the sampling rule)."""
    size = path.stat().st_size
    starts = fmt.sample_offsets(size)
    assert len(starts) > 1, f"{path} is small enough to be hashed whole"
    offset = (starts[1] + fmt.SAMPLE_BLOCK_BYTES + starts[2]) // 2
    assert all(not s <= offset < s + fmt.SAMPLE_BLOCK_BYTES for s in starts)
    return offset


# ----------------------------------------------------------------------------- verify exit codes


def test_verify_exits_nonzero_on_partial_dataset_unless_allowed(copy, reference, capsys):
    m = read_manifest(copy)
    m["shards"] = [s for s in m["shards"] if s["unit"] < 2]  # what a run killed after two shards leaves
    write_manifest(copy, m)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "worldmodel.data.cli", "verify", str(copy), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 3, result.stderr
    expected = "incomplete: 6 of 12 scenes, 2 of 4 shards; missing 2 shard(s): units 2-3 (scenes 6-8, 9-11)"
    assert expected in result.stderr
    assert "--allow-partial" in result.stderr
    assert data_cli(["verify", str(copy), "--quiet", "--allow-partial"]) == 0
    assert "warning:" in capsys.readouterr().err
    # a bad file still wins over incompleteness: exit 1 naming it
    (copy / "shards" / "shard-000000.meta.json").unlink()
    assert data_cli(["verify", str(copy), "--quiet", "--allow-partial"]) == 1
    assert "shard-000000.meta.json: shard file listed in the manifest is missing" in capsys.readouterr().err
    # resuming re-generates the missing meta file's shard and the two uncommitted ones
    assert _collect_cli(copy) == 0
    assert data_cli(["verify", str(copy), "--quiet"]) == 0
    assert_identical(copy, reference)


# ----------------------------------------------------------------------------- resume re-checks


def test_resume_regenerates_a_deleted_committed_shard(copy, reference, capsys):
    (copy / "shards" / "shard-000001.frames.npy").unlink()
    assert _collect_cli(copy) == 0
    out, err = capsys.readouterr()
    assert f"{SCENES}/{SCENES} scenes (complete); {SHARD} new" in out
    assert "committed shard unit 1 was damaged and has been re-generated" in err
    assert "shard-000001.frames.npy: shard file listed in the manifest is missing" in err
    assert_identical(copy, reference)


def test_resume_checks_sampled_hash_by_default_and_sha256_on_request(copy, reference, capsys):
    frames = copy / "shards" / "shard-000002.frames.npy"
    _flip(frames, frames.stat().st_size - 1)  # the last byte: always in the last sampled block
    hidden = copy / "shards" / "shard-000003.frames.npy"
    _flip(hidden, _unsampled_offset(hidden))  # between sampled blocks: only the full sha256 sees it
    assert _collect_cli(copy) == 0
    err = capsys.readouterr().err
    assert "unit 2 was damaged" in err and "sampled blocks" in err and "unit 3" not in err
    with pytest.raises(DatasetError, match=r"shard-000003\.frames\.npy: checksum failure \(sha256"):
        SceneDataset(copy, verify=True)
    assert _collect_cli(copy, "--verify-committed") == 0
    assert "unit 3 was damaged" in capsys.readouterr().err
    assert_identical(copy, reference)


# ----------------------------------------------------------------------------- checks at open


def test_truncated_or_zero_filled_shard_is_detected_on_open(copy):
    frames = copy / "shards" / "shard-000001.frames.npy"
    data = frames.read_bytes()
    frames.write_bytes(data[:-100])
    with pytest.raises(
        DatasetError,
        match=rf"shard-000001\.frames\.npy: shard file is truncated "
        rf"\({len(data) - 100} bytes, manifest says {len(data)}\)",
    ):
        SceneDataset(copy)
    # the right size but a zero-filled second half (what a crash can leave on some file systems)
    half = len(data) // 2
    assert any(data[half:]), "the rendered frames should not already be all black"
    frames.write_bytes(data[:half] + bytes(len(data) - half))
    with pytest.raises(DatasetError, match=r"shard-000001\.frames\.npy: checksum failure: 8 sampled blocks"):
        SceneDataset(copy)
    SceneDataset(copy, check="size")  # the size-only check cannot see it


def test_flipped_byte_sampled_check_and_full_verify(copy):
    frames = copy / "shards" / "shard-000000.frames.npy"
    size = frames.stat().st_size
    offset = fmt.sample_offsets(size)[4] + 7  # inside a sampled block
    _flip(frames, offset)
    with pytest.raises(DatasetError, match=r"shard-000000\.frames\.npy: checksum failure: 8 sampled blocks"):
        SceneDataset(copy)
    _flip(frames, offset)  # restore
    SceneDataset(copy, verify=True)
    _flip(frames, _unsampled_offset(frames))
    SceneDataset(copy)  # documented limit: a byte between the sampled blocks passes the cheap check
    with pytest.raises(DatasetError, match=r"shard-000000\.frames\.npy: checksum failure \(sha256 differs"):
        SceneDataset(copy, verify=True)
    assert not verify_dataset(copy).ok


def test_manifests_without_sampled_hash_still_open(copy):
    m = read_manifest(copy)
    for shard in m["shards"]:
        for entry in shard["files"].values():
            entry.pop("sample")
    write_manifest(copy, m)
    frames = copy / "shards" / "shard-000000.frames.npy"
    _flip(frames, frames.stat().st_size - 1)
    assert len(SceneDataset(copy)) == SCENES  # older manifests: sizes and headers only
    with pytest.raises(DatasetError, match="checksum failure"):
        SceneDataset(copy, verify=True)
    with pytest.raises(ValueError, match="valid values: size, sample, full"):
        SceneDataset(copy, check="quick")


# ----------------------------------------------------------------------------- CRC32C


def test_crc32c_backends_agree_and_fallback_warns_once(monkeypatch):
    from worldmodel.data import tfrecord

    assert tfrecord.CRC32C_BACKEND == "google_crc32c"  # a dependency: imports run at C speed
    fast, name = tfrecord.resolve_crc32c()
    monkeypatch.setitem(sys.modules, "google_crc32c", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "crc32c", None)
    slow, slow_name = tfrecord.resolve_crc32c()
    assert (name, slow_name) == ("google_crc32c", "python")
    rng = np.random.default_rng(0)
    vectors = {b"123456789": 0xE3069283, bytes(32): 0x8A9136AA, b"\xff" * 32: 0x62A8AB43, bytes(range(32)): 0x46DD794E}
    with pytest.warns(RuntimeWarning, match="pure-Python fallback"):
        assert slow(b"123456789") == 0xE3069283
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second call must not warn again
        for data, expected in vectors.items():
            assert fast(data) == slow(data) == tfrecord.crc32c_python(data) == expected
        blob = rng.integers(0, 256, 100_003, dtype=np.uint8).tobytes()
        assert fast(blob) == slow(blob)


# ----------------------------------------------------------------------------- wm train --verify


def test_train_verify_refuses_a_corrupted_dataset(tmp_path, capsys):
    from agents.cli import main
    from worldmodel.train.data import verify_run_datasets
    from worldmodel.train.synthetic import write_synthetic_dataset

    data = write_synthetic_dataset(tmp_path / "balls", scenes=24, views=5, size=16, seed=0)
    frames = data / "shards" / "shard-000000.frames.npy"
    args = ["train", "gqn", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "1", "--no-progress"]
    assert verify_run_datasets(str(data), None) == [str(data)]  # what --verify runs passes a good dataset
    _flip(frames, _unsampled_offset(frames))
    SceneDataset(data)  # the flipped byte lies between the sampled blocks: only the full check sees it
    assert main([*args, "--verify"]) == 2
    assert "shard-000000.frames.npy: checksum failure (sha256 differs" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before the run started
    # without --verify the default open checks sizes: a truncated shard is refused by name
    frames.write_bytes(frames.read_bytes()[:-1])
    assert main(args) == 2
    assert "shard-000000.frames.npy: shard file is truncated" in capsys.readouterr().err
    assert json.loads((data / "manifest.json").read_text())["complete"]
