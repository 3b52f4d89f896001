"""Kill-and-resume: a `wm train gqn` subprocess killed with SIGKILL mid-run and resumed with
--resume reproduces, bit for bit, the per-step losses of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from worldmodel.train.logger import read_metrics
from worldmodel.train.synthetic import write_synthetic_dataset

STEPS = 60


def _args(data, out):
    return [
        "train",
        "gqn",
        "--data",
        str(data),
        "--out",
        str(out),
        "--steps",
        str(STEPS),
        "--batch-size",
        "4",
        "--image-size",
        "16",
        "--r-channels",
        "16",
        "--hidden-channels",
        "8",
        "--z-channels",
        "2",
        "--generation-steps",
        "2",
        "--kernel-size",
        "3",
        "--no-shared-core",
        "--max-context",
        "3",
        "--sigma-anneal-steps",
        "40",
        "--lr-anneal-steps",
        "50",
        "--ckpt-every",
        "10",
        "--eval-every",
        "20",
        "--eval-batches",
        "1",
        "--image-every",
        "0",
        "--log-every",
        "5",
        "--val-fraction",
        "0.2",
        "--no-progress",
        "--device",
        "cpu",
        "--seed",
        "7",
        "--lr",
        "0.001",
    ]


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    # 20 scenes -> 16 for training -> 4 batches per epoch: the kill lands mid-epoch
    data = write_synthetic_dataset(tmp_path / "data", scenes=20, views=4, size=16, seed=1)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-c", "import sys; from agents.cli import main; sys.exit(main(sys.argv[1:]))"]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd + _args(data, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics = killed / "metrics.jsonl"
    deadline = time.monotonic() + 60
    last = 0
    while time.monotonic() < deadline and proc.poll() is None:
        recs = read_metrics(killed, "train") if metrics.exists() else []
        last = recs[-1]["step"] if recs else 0
        if last >= 25:
            break
        time.sleep(0.005)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert 25 <= last < STEPS

    resumed = subprocess.run(
        cmd + _args(data, killed) + ["--resume"], env=env, capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    # the uninterrupted reference, same command in this process
    from agents.cli import main

    assert main(_args(data, tmp_path / "straight")) == 0

    def losses(run, kind):
        return [(r["step"], r["loss"], r.get("kl")) for r in read_metrics(run, kind)]

    straight, again = losses(tmp_path / "straight", "train"), losses(killed, "train")
    assert [s for s, _, _ in again] == list(range(1, STEPS + 1))  # no step lost or repeated
    assert again == straight  # exact float equality, every step
    assert losses(killed, "eval") == losses(tmp_path / "straight", "eval")
    meta = json.loads((killed / "run.json").read_text())
    assert 20 <= meta["extra"]["resumed_from_step"] < last + 1


def test_resume_refuses_changed_model_and_missing_checkpoint(tmp_path, capsys):
    from agents.cli import main

    data = write_synthetic_dataset(tmp_path / "data", scenes=12, views=4, size=16, seed=1)
    out = tmp_path / "run"
    base = _args(data, out)
    base[base.index("--steps") + 1] = "2"
    assert main(base) == 0
    with pytest.raises(ValueError, match="already holds checkpoints"):
        from worldmodel.train.engine import Trainer, resolve_configs

        m, t = resolve_configs(
            "gqn",
            None,
            dict(
                image_size=16,
                r_channels=16,
                hidden_channels=8,
                z_channels=2,
                generation_steps=2,
                kernel_size=3,
                shared_core=False,
                max_context=3,
            ),
            dict(data=str(data), out=str(out), steps=2, progress=False),
        )
        Trainer("gqn", m, t).fit()
    capsys.readouterr()
    assert main(base + ["--resume", "--hidden-channels", "16"]) == 2
    assert "model config differs: hidden_channels (8 in the run, 16 now)" in capsys.readouterr().err
    assert main(base + ["--resume", "--lr", "0.5"]) == 2
    assert "training options differ: lr (0.001 in the run, 0.5 now)" in capsys.readouterr().err
    assert main(base + ["--resume", "--steps", "3"]) == 0  # steps may grow
    assert read_metrics(out, "train")[-1]["step"] == 3
    assert main(_args(data, tmp_path / "fresh") + ["--resume"]) == 2
    assert "not a run directory" in capsys.readouterr().err
