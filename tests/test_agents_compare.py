"""`wm agent compare` end to end (real subprocess runs on Jaco with a tiny GQN, resume), and the
statistics behind its report (agents.stats against rliable/scipy, headline metric)."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import agents_fake_env as fake
import numpy as np
import pytest
from PIL import Image

from agents.compare import _check_grid
from agents.config import CompareConfig
from agents.stats import RunRecord, compare_runs, iqm, probability_of_improvement

MODES = ("pixels", "repr", "state")


def _compare(out: Path, ckpt: Path) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "agents.cli", "agent", "compare", "--env", "wm/JacoReach-v0", "--camera", "moving",
        "--obs", *MODES, "--seeds", "2", "--steps", "256", "--encoder", str(ckpt), "--out", str(out),
        "--eval-freq", "128", "--eval-episodes", "2", "--n-envs", "2", "--jobs", "2", "--reps", "200",
        "--env-kwarg", "episode_length=16", "--hp", "n_steps=32", "--hp", "batch_size=32", "--hp", "n_epochs=1",
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

    with open(out / "evaluations.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 * 3  # every run: step 0, 128, 256
    assert {r["obs"] for r in rows} == set(MODES) and {int(r["timesteps"]) for r in rows} == {0, 128, 256}
    for name in ("curves", "aggregates", "steps_to_threshold", "improvement"):
        with Image.open(out / "plots" / f"{name}.png") as im:
            assert im.format == "PNG" and im.size[0] > 200
    md = (out / "report.md").read_text()
    assert "90% of the reference return" in md and "plots/curves.png" in md
    for label in ("representation (frozen encoder)", "pixels", "state"):
        assert label in md
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and 'src="http' not in page
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["steps_to_threshold"]) == set(MODES)
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
    code = wm(["agent", "compare", "--obs", "repr", "state", "--encoder", str(ckpt), "--size", "32", "--out", str(tmp_path / "c")])
    assert code == 2
    assert "takes 16x16 images but --size is 32; use --size 16" in capsys.readouterr().err
    assert not (tmp_path / "c" / "runs").exists()


def test_compare_refuses_other_settings_in_same_directory(tmp_path):
    cfg = CompareConfig(env_id="wm/JacoReach-v0", obs_modes=("state",), seeds=2, steps=100, out=str(tmp_path))
    _check_grid(cfg)
    _check_grid(cfg)  # same settings: fine
    cfg.steps = 200
    with pytest.raises(ValueError, match=r"other settings \(steps: 100 -> 200\)"):
        _check_grid(cfg)
    with pytest.raises(ValueError, match="unknown obs mode 'rgb'"):
        CompareConfig(obs_modes=("rgb",)).validate()
    with pytest.raises(ValueError, match="needs an encoder"):
        CompareConfig(obs_modes=("repr", "state")).validate()


def test_fast_statistics_match_rliable_and_scipy():
    from rliable import metrics
    from scipy.stats import trim_mean

    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 5, 8):
        x, y = rng.normal(size=(n, 1)), rng.normal(size=(n + 2, 1))
        y[0] = x[0]  # a tie
        assert iqm(x) == pytest.approx(metrics.aggregate_iqm(x))
        assert probability_of_improvement(x, y) == pytest.approx(metrics.probability_of_improvement(x, y))
        z = rng.normal(size=(n, 7))
        np.testing.assert_allclose(iqm(z, axis=0), trim_mean(z, 0.25, axis=0))


def test_headline_steps_and_normalisation():
    t = np.arange(0, 1001, 100)
    runs = []
    for s in range(3):
        # state reaches its final 10 at step 300; repr ramps linearly to 9 at 900; pixels stays at 0
        runs.append(RunRecord(f"state_s{s}", "state", s, t, np.minimum(t / 30, 10.0), None, {}))
        runs.append(RunRecord(f"repr_s{s}", "repr", s, t, np.minimum(t / 100, 9.5), None, {}))
        runs.append(RunRecord(f"pixels_s{s}", "pixels", s, t, np.zeros(t.size), None, {}))
    cmp = compare_runs(runs, threshold=0.9, reps=100)
    assert cmp.modes == ["repr", "pixels", "state"]
    assert cmp.baseline == 0 and cmp.reference == 10 and cmp.threshold_return == pytest.approx(9.0)
    assert cmp.steps_to_threshold["state"][0] == 300
    assert cmp.steps_to_threshold["repr"][0] == 900
    assert math.isinf(cmp.steps_to_threshold["pixels"][0])
    assert cmp.aggregates["repr"]["IQM"][0] == pytest.approx(0.95)
    assert cmp.aggregates["pixels"]["Optimality gap"][0] == pytest.approx(1.0)
    assert cmp.improvement["repr,pixels"][0] == 1.0
    assert any("5 seeds" in n for n in cmp.notes)
