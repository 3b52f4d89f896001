"""`wm agent compare` end to end (real subprocess runs on Jaco with a tiny GQN, resume). The
statistics and the report's rules are tested in test_agents_stats.py and test_agents_report.py."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import agents_fake_env as fake
import pytest
from PIL import Image

from agents.compare import _check_grid
from agents.config import ArmSpec, CompareConfig, arms_for_obs_modes

MODES = ("pixels", "repr", "state")


def _compare(out: Path, ckpt: Path) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "agents.cli",
        "agent",
        "compare",
        "--env",
        "wm/JacoReach-v0",
        "--camera",
        "moving",
        "--obs",
        *MODES,
        "--seeds",
        "2",
        "--steps",
        "256",
        "--encoder",
        str(ckpt),
        "--out",
        str(out),
        "--eval-freq",
        "128",
        "--eval-episodes",
        "2",
        "--n-envs",
        "2",
        "--jobs",
        "2",
        "--reps",
        "200",
        "--env-kwarg",
        "episode_length=16",
        "--hp",
        "n_steps=32",
        "--hp",
        "batch_size=32",
        "--hp",
        "n_epochs=1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def test_compare_writes_report_and_resumes(tmp_path):
    ckpt = fake.save_tiny_gqn(tmp_path / "gqn", size=16)
    out = tmp_path / "cmp"
    proc = _compare(out, ckpt)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "6 to run, 2 at a time" in proc.stdout
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == sorted(f"{m}_s{s}" for m in MODES for s in (0, 1))
    assert all((out / "runs" / r / "done.json").is_file() for r in runs)
    reference = json.loads((out / "reference.json").read_text())  # measured on the evaluation episodes
    assert reference["env_id"] == "wm/JacoReach-v0" and reference["seeds"] == [1_000_000, 1_000_001]
    assert reference["expert_return"] > reference["zero_return"]

    with open(out / "evaluations.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 * 3  # every run: step 0, 128, 256
    assert {r["obs"] for r in rows} == set(MODES) and {int(r["timesteps"]) for r in rows} == {0, 128, 256}
    # 2 seeds per arm: curves, steps and profiles only; no aggregate plots for arms with < 5 runs
    for name in ("curves", "steps_to_threshold", "performance_profiles"):
        with Image.open(out / "plots" / f"{name}.png") as im:
            assert im.format == "PNG" and im.size[0] > 200
    assert not (out / "plots" / "aggregates.png").exists()
    md = (out / "report.md").read_text()
    assert "Env steps to normalised score 0.8" in md and "plots/curves.png" in md
    assert "n < 5 runs: no aggregate claim" in md
    for label in ("frozen encoder features", "pixels", "state"):
        assert label in md
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and 'src="http' not in page
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["steps_to_threshold"]) == set(MODES)
    assert summary["underpowered"] == {m: True for m in MODES}
    assert summary["normalisation"]["expert_return"] == pytest.approx(reference["expert_return"])
    last = next(r for r in rows if r["run"] == "repr_s0" and r["timesteps"] == "256")
    assert summary["runs"]["repr"][0]["final_return"] == pytest.approx(float(last["mean_return"]))

    # restart after a "kill" of one run: only that run is trained again, the others are skipped
    (out / "runs" / "state_s1" / "done.json").unlink()
    kept = {r: (out / "runs" / r / "done.json").stat().st_mtime_ns for r in runs if r != "state_s1"}
    proc = _compare(out, ckpt)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "5 already finished (skipped), 1 to run" in proc.stdout
    assert {r: (out / "runs" / r / "done.json").stat().st_mtime_ns for r in kept} == kept
    assert (out / "runs" / "state_s1" / "done.json").is_file()


def test_compare_checks_encoder_size_before_running(tmp_path, capsys):
    from agents.cli import main as wm

    ckpt = fake.save_tiny_gqn(tmp_path / "gqn", size=16)
    out = str(tmp_path / "c")
    code = wm(["agent", "compare", "--obs", "repr", "state", "--encoder", str(ckpt), "--size", "32", "--out", out])
    assert code == 2
    assert "takes 16x16 images but --size is 32; use --size 16" in capsys.readouterr().err
    assert not (tmp_path / "c" / "runs").exists()


def test_compare_refuses_other_settings_in_same_directory(tmp_path):
    cfg = CompareConfig(
        env_id="wm/JacoReach-v0", arms=arms_for_obs_modes(("state",)), seeds=2, steps=100, out=str(tmp_path)
    )
    _check_grid(cfg)
    _check_grid(cfg)  # same settings: fine
    cfg.steps = 200
    with pytest.raises(ValueError, match=r"other settings \(steps: 100 -> 200\)"):
        _check_grid(cfg)
    with pytest.raises(ValueError, match="unknown obs mode 'rgb'"):
        CompareConfig(arms=(ArmSpec("rgb", "rgb"),)).validate()
    with pytest.raises(ValueError, match="needs an encoder"):
        CompareConfig(arms=arms_for_obs_modes(("repr", "state"))).validate()
