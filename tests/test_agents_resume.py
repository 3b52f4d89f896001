"""Kill-and-resume of `wm agent train` with real processes: SIGKILL after the first checkpoint,
rerun the same command, and check it continued from the checkpoint instead of starting again."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import agents_fake_env as fake

STEPS = 9_600  # 150 PPO rollouts of 2 envs x 32 steps, 15 evaluation intervals
CHECKPOINT_FREQ = 1_000
EVAL_FREQ = 640


def _command(out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "agents.cli",
        "agent",
        "train",
        "--env",
        fake.ENV_ID,
        "--obs",
        "state",
        "--normalize",
        "--steps",
        str(STEPS),
        "--n-envs",
        "2",
        "--checkpoint-freq",
        str(CHECKPOINT_FREQ),
        "--eval-freq",
        str(EVAL_FREQ),
        "--eval-episodes",
        "2",
        "--hp",
        "n_steps=32",
        "--hp",
        "batch_size=64",
        "--hp",
        "n_epochs=1",
        "--hp",
        'policy_kwargs={"net_arch": [16]}',
        "--env-kwarg",
        "max_steps=5",
        "--threads",
        "1",
        "--no-progress",
        "--out",
        str(out),
    ]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    tests = str(Path(__file__).resolve().parent)  # agents_fake_env must import in the child too
    env["PYTHONPATH"] = tests + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    out = tmp_path / "state_s0"
    manifest = out / "checkpoints" / "latest.json"
    cmd = _command(out)
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        while not manifest.exists():  # wait for the first complete checkpoint (polling, not a timed assertion)
            if proc.poll() is not None:
                raise AssertionError(f"the run ended before its first checkpoint:\n{proc.stdout.read()}")
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "done.json").exists(), "the run finished before it could be killed; raise STEPS"
    killed_at = json.loads(manifest.read_text())["step"]
    assert CHECKPOINT_FREQ <= killed_at < STEPS
    rows_before = [r for r in _rows(out / "evaluations.csv") if int(r["timesteps"]) <= killed_at]

    rerun = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"resuming from checkpoint at step {killed_at}" in rerun.stdout
    assert "eval at step 0" not in rerun.stdout  # not started from scratch

    done = json.loads((out / "done.json").read_text())
    assert done["timesteps"] == STEPS and done["resumed_from"] == [killed_at] and done["arm"] == "state"
    rows = _rows(out / "evaluations.csv")
    steps = [int(r["timesteps"]) for r in rows]
    assert steps == sorted(set(steps)) and steps[0] == 0 and steps[-1] == STEPS  # monotone, no duplicates
    assert steps == list(range(0, STEPS + 1, EVAL_FREQ))
    assert rows[: len(rows_before)] == rows_before  # the evaluations up to the checkpoint are kept as they were

    # VecNormalize statistics continued from the checkpoint: they have seen every training step, not only the resumed
    # part
    stats = json.loads((out / "vecnormalize.json").read_text())
    assert stats["obs_rms"]["count"] >= STEPS

    # one TensorBoard run, continued; the killed session's steps after the checkpoint are purged
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = list((out / "tb").iterdir())
    assert [r.name for r in runs] == ["ppo_state_1"] and len(list(runs[0].glob("events.out.tfevents.*"))) >= 3
    acc = EventAccumulator(str(runs[0]))
    acc.Reload()
    logged = [e.step for e in acc.Scalars("eval/mean_reward")]
    assert logged == sorted(set(logged)) and logged[-1] == STEPS
