"""A stand-in for ``wm agent train`` in the grid tests: a real subprocess that takes the same
command line, writes the files a run leaves (evaluations.csv, progress.json, a checkpoint,
done.json last) in milliseconds, and can be told to fail or hang after its first checkpoint.

Returns are a deterministic function of (arm, seed, timesteps), so the same runs give the same
statistics whichever process or shard produced them. Every launch appends its argv to
``launches.jsonl`` in the run directory; a run that finds its ``checkpoint.json`` records
``resumed_from`` in done.json (what a real run does when it resumes from its checkpoint).

Behaviour per run comes from ``OUT/fake_control.json`` (``{"<arm>_s<seed>": "fail" | "hang"}``).

``python agents_fake_train.py --grid CONFIG.json`` runs :func:`agents.compare.run_grid` on the
CompareConfig in CONFIG.json with this script as the trainer (a grid process to kill in tests).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib
from pathlib import Path

TRAIN_PREFIX = ["-m", "agents.cli", "agent", "train"]


def fake_command(cmd: list[str]) -> list[str]:
    """``wm agent train`` command -> the same arguments for this script."""
    assert cmd[1 : 1 + len(TRAIN_PREFIX)] == TRAIN_PREFIX, cmd
    return [cmd[0], str(Path(__file__).resolve()), *cmd[1 + len(TRAIN_PREFIX) :]]


def use_fake_trainer(monkeypatch) -> None:
    """Make :mod:`agents.compare` launch this script instead of ``wm agent train``."""
    import agents.compare as compare

    real = compare.train_command
    monkeypatch.setattr(compare, "train_command", lambda *a, **k: fake_command(real(*a, **k)))


def fake_return(arm: str, seed: int, t: int, steps: int) -> float:
    """Deterministic learning curve of a run."""
    rate = 1 + zlib.crc32(arm.encode()) % 5
    return round(
        10.0 * min(1.0, rate * t / (5 * steps)) + 0.1 * seed + 0.01 * (zlib.crc32(f"{arm}{seed}{t}".encode()) % 7), 6
    )


def train(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    for flag in ("--out", "--arm", "--obs", "--env"):
        p.add_argument(flag, required=True)
    for flag in ("--seed", "--steps", "--eval-freq", "--eval-episodes", "--eval-seed"):
        p.add_argument(flag, type=int, required=True)
    args, _ = p.parse_known_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "launches.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"argv": argv, "pid": os.getpid()}) + "\n")
    control_file = out.parent.parent / "fake_control.json"
    control = json.loads(control_file.read_text()).get(out.name) if control_file.is_file() else None

    ckpt = out / "checkpoint.json"
    resumed_from = json.loads(ckpt.read_text())["timesteps"] if ckpt.is_file() else None
    half = (args.steps // args.eval_freq // 2) * args.eval_freq
    if resumed_from is None:
        ckpt.write_text(json.dumps({"timesteps": half}))
        (out / "progress.json").write_text(json.dumps({"timesteps": half}))
        if control == "fail":
            return 1
        if control == "hang":
            (out / "hanging.pid").write_text(str(os.getpid()))
            while True:  # until the grid terminates it
                time.sleep(0.05)

    from agents.artifacts import EVAL_COLUMNS, write_csv_atomic, write_json_atomic

    grid = list(range(0, args.steps + 1, args.eval_freq))
    if grid[-1] != args.steps:
        grid.append(args.steps)
    rows = [
        {
            "timesteps": t,
            "mean_return": fake_return(args.arm, args.seed, t, args.steps),
            "std_return": 0.0,
            "mean_length": 10,
            "success_rate": "",
            "episodes": args.eval_episodes,
            "wall_s": 0.0,
            "returns": "",
        }
        for t in grid
    ]
    write_csv_atomic(out / "evaluations.csv", EVAL_COLUMNS, rows)
    write_json_atomic(out / "progress.json", {"timesteps": args.steps})
    write_json_atomic(
        out / "done.json",
        {
            "arm": args.arm,
            "obs": args.obs,
            "seed": args.seed,
            "timesteps": args.steps,
            "env_id": args.env,
            "eval_seed": args.eval_seed,
            "eval_episodes": args.eval_episodes,
            "resumed_from": resumed_from,
            "final": {"mean_return": rows[-1]["mean_return"]},
        },
    )
    return 0


def run_grid_process(config_path: str) -> int:
    import agents.compare as compare
    from agents.config import CompareConfig

    real = compare.train_command
    compare.train_command = lambda *a, **k: fake_command(real(*a, **k))
    cfg = CompareConfig.from_dict(json.loads(Path(config_path).read_text()))
    result = compare.run_grid(cfg, poll_s=0.05)
    return 1 if result.failed else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--grid"]:
        sys.exit(run_grid_process(sys.argv[2]))
    sys.exit(train(sys.argv[1:]))
