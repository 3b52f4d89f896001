"""``wm envs stats``: per-family view fractions (real subprocess, real segmentation renders)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from envs import view_stats

WM = [sys.executable, "-m", "agents.cli"]


def run(*args):
    return subprocess.run([*WM, "envs", "stats", *args], capture_output=True, text=True, timeout=300)


def test_maze_stats_print_and_write_json(tmp_path):
    out = tmp_path / "stats.json"
    res = run("maze", "--frames", "12", "--size", "16", "--seed", "3", "--json", str(out))
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    assert data["config"] == {"frames": 12, "seed": 3, "size": 16}
    maze = data["families"]["maze"]
    assert list(data["families"]) == ["maze"] and maze["frames"] == 12
    for s in ("reset", "random_policy", "scene", "trajectory"):
        for k in ("wall_filled", "band", "wall", "floor", "sky", "background"):
            assert 0.0 <= maze[f"{s}_{k}"] <= 1.0, (s, k)
        total = sum(maze[f"{s}_{k}"] for k in ("wall", "floor", "sky", "background"))
        assert 0.9 < total <= 1.0 + 1e-9  # the goal (and nothing else) makes up the rest
    assert "reset_wall_filled" in res.stdout and "maze (12 frames" in res.stdout


def test_unknown_family_names_the_allowed_ones():
    res = run("mazes", "--frames", "2")
    assert res.returncode == 2
    assert "unknown view-stats family 'mazes'" in res.stderr
    assert "allowed: " + ", ".join(view_stats.STATS) in res.stderr
    assert {"maze", "rooms", "shepard_metzler", "jaco-randomised"} <= set(view_stats.STATS)


def test_missing_registered_function_is_a_clear_error(monkeypatch, capsys):
    from agents.cli import main

    monkeypatch.setitem(view_stats.STATS, "ghost", "envs.view_stats.maze:no_such_function")
    monkeypatch.setitem(view_stats.STATS, "gone", "envs.view_stats.no_such_module:fn")
    assert main(["envs", "stats", "ghost", "--frames", "2"]) == 1
    assert "no function 'no_such_function'" in capsys.readouterr().err
    assert main(["envs", "stats", "gone", "--frames", "2"]) == 1
    assert "'gone' (envs.view_stats.no_such_module:fn) cannot be imported" in capsys.readouterr().err
    with pytest.raises(view_stats.StatsUnavailableError):
        view_stats.view_stats("ghost", 2)


def test_bad_arguments_and_mixed_modes_are_rejected(capsys):
    from agents.cli import main

    assert main(["envs", "stats", "maze", "--frames", "0"]) == 2
    assert "--frames >= 1" in capsys.readouterr().err
    assert main(["envs", "stats", "maze", "--episodes", "2"]) == 2  # Jaco table flags with a family
    assert "cannot be combined" in capsys.readouterr().err


def test_registry_import_is_lazy_and_torch_free():
    code = (
        "import sys; import envs.view_stats as v; from agents.cli import build_parser; build_parser(); "
        "print('envs.view_stats.maze' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
