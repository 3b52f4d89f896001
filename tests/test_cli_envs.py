"""`wm envs list|show|bench` end to end (real subprocesses, real rendering, real PNG files)."""

import json
import subprocess
import sys

import numpy as np
from PIL import Image

WM = [sys.executable, "-m", "agents.cli"]


def run(*args, check=True):
    return subprocess.run([*WM, *args], capture_output=True, text=True, check=check, timeout=300)


def test_envs_list_names_both_envs_and_does_not_import_torch():
    code = "import sys; from agents.cli import main; main(['envs', 'list']); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "wm/JacoReach-v0" in out.stdout and "wm/Maze-v0" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_envs_show_writes_viewable_grids(tmp_path):
    run("envs", "show", "--out", str(tmp_path), "--size", "32", "--steps", "3", "--every", "2")
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["jacoreach_fixed.png", "jacoreach_moving.png", "maze_fixed.png", "maze_map.png", "maze_moving.png"]
    for name in names:
        img = np.asarray(Image.open(tmp_path / name))
        assert img.ndim == 3 and img.std() > 10, name
    grid = np.asarray(Image.open(tmp_path / "jacoreach_moving.png"))
    assert grid.shape[1] > 3 * 32  # three frames side by side


def test_envs_bench_reports_rates(tmp_path):
    out_json = tmp_path / "bench.json"
    run(
        "envs",
        "bench",
        "--envs",
        "wm/Maze-v0",
        "--cameras",
        "moving",
        "--sizes",
        "32",
        "--steps",
        "20",
        "--repeats",
        "2",
        "--json",
        str(out_json),
    )
    (row,) = json.loads(out_json.read_text())
    assert row["env_steps_per_s"] > 0 and row["raw_steps_per_s"] > 0
    assert row["overhead"] == round(row["raw_steps_per_s"] / row["env_steps_per_s"], 3)


def test_envs_bench_rejects_unknown_camera():
    out = run("envs", "bench", "--cameras", "orbit", check=False)
    assert out.returncode == 2
    assert "orbit" in out.stderr and "'moving'" in out.stderr
