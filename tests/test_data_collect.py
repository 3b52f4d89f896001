"""Collection with the real Shepard-Metzler generator: SIGKILL + resume, --shard + merge, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from worldmodel.data.cli import main as data_cli
from worldmodel.data.collect import CollectConfig, collect
from worldmodel.data.format import DatasetError
from worldmodel.data.merge import merge_datasets
from worldmodel.data.reader import SceneDataset
from worldmodel.data.verify import verify_dataset

SCENES, VIEWS, SIZE, SHARD = 60, 3, 16, 3
ARGS = dict(views=VIEWS, size=SIZE, seed=7, shard_size=SHARD)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted, single-process collection."""
    out = tmp_path_factory.mktemp("ref") / "sm"
    collect(CollectConfig("shepard-metzler", SCENES, str(out), workers=1, progress=False, **ARGS))
    return out


def assert_same_dataset(a: Path, b: Path) -> None:
    ma, mb = (json.loads((p / "manifest.json").read_text()) for p in (a, b))
    assert [s["files"] for s in ma["shards"]] == [s["files"] for s in mb["shards"]]  # sha256 for sha256
    da, db = SceneDataset(a, verify_checksums=True), SceneDataset(b, verify_checksums=True)
    assert len(da) == len(db) == ma["scenes_planned"]
    for i in range(len(da)):
        x, y = da[i], db[i]
        assert x["index"] == y["index"] == i
        np.testing.assert_array_equal(x["frames"], y["frames"])
        np.testing.assert_array_equal(x["cameras"], y["cameras"])
        assert da.metadata(i) == db.metadata(i)


def _cmd(out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "worldmodel.data.cli",
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
        "7",
        "--shard-size",
        str(SHARD),
        "--workers",
        "2",
        "--out",
        str(out),
        "--quiet",
    ]


def _committed(out: Path) -> int:
    try:
        return len(json.loads((out / "manifest.json").read_text())["shards"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def test_sigkill_and_resume_equals_uninterrupted(tmp_path, reference):
    out = tmp_path / "sm"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_cmd(out), env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while _committed(out) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)  # the collector and its workers, mid-way
    proc.wait()
    done = _committed(out)
    assert proc.returncode == -signal.SIGKILL
    assert 1 <= done < SCENES // SHARD, f"kill did not land mid-way ({done} shards committed)"
    # What a kill leaves is consistent: every listed file is whole and matches its checksum.
    report = verify_dataset(out)
    assert report.files_ok and not report.ok and "missing" in report.incomplete, report.problems
    assert len(SceneDataset(out, allow_incomplete=True)) == done * SHARD
    with pytest.raises(DatasetError, match="incomplete"):
        SceneDataset(out)

    result = subprocess.run(_cmd(out), env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"{SCENES}/{SCENES} scenes (complete)" in result.stdout
    assert verify_dataset(out).warnings == []  # leftovers of the killed run were removed
    assert_same_dataset(out, reference)  # 2 workers + kill + resume == 1 worker, uninterrupted


def test_resume_refuses_other_arguments(tmp_path, reference):
    with pytest.raises(DatasetError, match=r"refusing to resume.*seed: 7 then, 8 now"):
        collect(
            CollectConfig("shepard-metzler", SCENES, str(reference), workers=1, progress=False, **{**ARGS, "seed": 8})
        )
    assert (
        data_cli(
            [
                "collect",
                "--source",
                "shepard-metzler",
                "--scenes",
                str(SCENES),
                "--out",
                str(reference),
                "--views",
                str(VIEWS),
                "--size",
                str(SIZE),
                "--seed",
                "7",
                "--shard-size",
                str(SHARD),
                "--parts",
                "5",
                "--quiet",
            ]
        )
        == 2
    )


def test_shards_and_merge_equal_unsharded(tmp_path, reference):
    parts = []
    for i in range(3):
        part = tmp_path / f"part{i}"
        s = collect(
            CollectConfig("shepard-metzler", SCENES, str(part), shard=f"{i}/3", workers=1, progress=False, **ARGS)
        )
        assert s["complete"] and s["shard"] == f"{i}/3"
        parts.append(part)
    units = [{sh["unit"] for sh in json.loads((p / "manifest.json").read_text())["shards"]} for p in parts]
    assert not (units[0] & units[1]) and not (units[1] & units[2]) and not (units[0] & units[2])
    with pytest.raises(DatasetError, match="incomplete"):
        SceneDataset(parts[0])  # a part alone is not the dataset
    with pytest.raises(DatasetError, match="uncovered"):
        merge_datasets(parts[:2], tmp_path / "bad", progress=False)
    with pytest.raises(DatasetError, match="overlap"):
        merge_datasets([parts[0], parts[0], parts[1], parts[2]], tmp_path / "bad2", progress=False)
    other = tmp_path / "other"
    collect(
        CollectConfig(
            "shepard-metzler", SCENES, str(other), shard="1/3", workers=1, progress=False, **{**ARGS, "seed": 8}
        )
    )
    with pytest.raises(DatasetError, match="collected with other arguments"):
        merge_datasets([parts[0], other, parts[2]], tmp_path / "bad3", progress=False)
    assert data_cli(["merge", *map(str, parts), "--out", str(tmp_path / "merged"), "--quiet"]) == 0
    assert_same_dataset(tmp_path / "merged", reference)


def test_cli_show_info_sources(tmp_path, reference, capsys):
    png = tmp_path / "grid.png"
    assert data_cli(["show", str(reference), "--out", str(png), "--scenes", "2", "--views", "3"]) == 0
    from PIL import Image

    with Image.open(png) as img:
        assert img.size[0] > 100 and np.asarray(img.convert("L")).std() > 5
    assert data_cli(["info", str(reference)]) == 0
    out = capsys.readouterr().out
    assert "shepard-metzler" in out and f"scenes: {SCENES}" in out
    assert data_cli(["sources"]) == 0
    assert "parts=" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"does not accept option\(s\) \['domain'\]; valid options: .*parts"):
        collect(CollectConfig("shepard-metzler", 2, str(tmp_path / "x"), options={"domain": "real"}, progress=False))
