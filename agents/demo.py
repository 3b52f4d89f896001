"""``wm demo``: the whole study in one command (the README's first command).

Stages, each a ``wm`` subprocess whose own progress bars stay visible (low coupling: the demo
uses the CLIs exactly as a person would):

1. ``wm data collect --source jaco``: a Jaco dataset of scenes seen along moving-camera
   trajectories;
2. ``wm train gqn``: a GQN trained on it (its representation network is the frozen encoder);
3. ``wm agent compare``: PPO on pixels, on the frozen GQN representation and on the state, on
   ``wm/JacoReach-v0`` with a moving camera; rliable statistics and the report.

Rerunning the same command resumes: finished stages are skipped (``demo.json``), the dataset
collection and the agent grid resume themselves, and an interrupted GQN run continues from its
newest checkpoint. ``--preset small`` is sized for a 2-core CPU (~20 minutes; see docs/agents.md
for measured times); ``--preset full`` is the GPU-scale version of the same study.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from agents.artifacts import read_json, write_json_atomic

STATE_FILE = "demo.json"
ENV_ID = "wm/JacoReach-v0"


@dataclass(frozen=True)
class DemoPreset:
    """Sizes of every stage of the demo."""

    scenes: int
    """Jaco scenes in the dataset."""
    views: int
    """Views per scene (along a moving-camera trajectory)."""
    size: int
    """Image size of the dataset, the GQN and the agents' observations."""
    gqn_preset: str
    """``wm train gqn --preset``."""
    gqn_steps: int
    """GQN optimiser steps."""
    gqn_batch: int
    """GQN batch size (scenes per step)."""
    gqn_device: str
    """Device of GQN training."""
    agent_steps: int
    """Env steps per agent run."""
    seeds: int
    """Seeds per observation mode."""
    eval_freq: int
    """Env steps between evaluations."""
    eval_episodes: int
    """Episodes per evaluation."""
    episode_length: int
    """Jaco episode length (steps) for the agents."""
    reps: int
    """Bootstrap resamples of the report."""


PRESETS: dict[str, DemoPreset] = {
    # 2-core CPU, <= 20 minutes (measured ~14 min on an idle machine, see docs/agents.md): 2000 scenes,
    # a 1200-step GQN, 2 seeds x 100k PPO steps at 32 px. Far below what a conclusive Jaco answer needs
    # (the state agent needs ~500k steps to reach 80% of the maximum return); the report says so.
    "small": DemoPreset(
        scenes=2_000, views=11, size=32, gqn_preset="small", gqn_steps=1_200, gqn_batch=16, gqn_device="cpu",
        agent_steps=100_000, seeds=2, eval_freq=10_000, eval_episodes=10, episode_length=100, reps=2_000,
    ),
    # GPU-scale: the paper's GQN architecture on a large 64 px dataset, 5 seeds x 1M env steps.
    "full": DemoPreset(
        scenes=50_000, views=11, size=64, gqn_preset="paper", gqn_steps=200_000, gqn_batch=36, gqn_device="auto",
        agent_steps=1_000_000, seeds=5, eval_freq=20_000, eval_episodes=10, episode_length=100, reps=50_000,
    ),
}


def _wm(*args: str) -> list[str]:
    return [sys.executable, "-m", "agents.cli", *args]


def stage_commands(preset: DemoPreset, out: Path, jobs: "int | None" = None, device: "str | None" = None) -> dict[str, list[str]]:
    """The ``wm`` command of each stage (the GQN one for a fresh run)."""
    data, gqn, cmp = out / "data", out / "gqn", out / "compare"
    return {
        "data": _wm(
            "data", "collect", "--source", "jaco", "--scenes", str(preset.scenes), "--views", str(preset.views),
            "--size", str(preset.size), "--seed", "0", "--out", str(data),
        ),
        "gqn": _wm(
            "train", "gqn", "--preset", preset.gqn_preset, "--data", str(data), "--out", str(gqn),
            "--steps", str(preset.gqn_steps), "--batch-size", str(preset.gqn_batch), "--device", device or preset.gqn_device,
            "--ckpt-every", str(max(1, preset.gqn_steps // 4)), "--seed", "0",
        ),
        "compare": _wm(
            "agent", "compare", "--env", ENV_ID, "--camera", "moving", "--obs", "pixels", "repr", "state",
            "--seeds", str(preset.seeds), "--steps", str(preset.agent_steps), "--size", str(preset.size),
            "--encoder", str(gqn), "--out", str(cmp), "--eval-freq", str(preset.eval_freq),
            "--eval-episodes", str(preset.eval_episodes), "--env-kwarg", f"episode_length={preset.episode_length}",
            "--reps", str(preset.reps), *(["--jobs", str(jobs)] if jobs else []),
        ),
    }


def _gqn_has_checkpoint(run_dir: Path) -> bool:
    ckpts = run_dir / "checkpoints"
    return ckpts.is_dir() and any(p.name.startswith("step_") for p in ckpts.iterdir())


def run_demo(preset: str = "small", out: str = "wm_out/demo", jobs: "int | None" = None, device: "str | None" = None) -> int:
    """Run (or resume) the demo; returns the exit code of the first failing stage, else 0."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid values: {', '.join(map(repr, PRESETS))}")
    p = PRESETS[preset]
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    state_path = root / STATE_FILE
    state = read_json(state_path) if state_path.is_file() else {"preset": preset, "settings": asdict(p), "stages": {}}
    if state.get("preset") != preset:
        raise ValueError(f"{root} holds a demo with --preset {state.get('preset')}; use another --out for --preset {preset}")
    commands = stage_commands(p, root, jobs, device)
    if "gqn" not in state["stages"] and _gqn_has_checkpoint(root / "gqn"):
        commands["gqn"] = _wm("train", "gqn", "--resume", "--out", str(root / "gqn"))  # interrupted: continue it
    titles = {
        "data": f"collecting {p.scenes} Jaco scenes x {p.views} moving-camera views at {p.size}px",
        "gqn": f"training a GQN ({p.gqn_preset} preset, {p.gqn_steps} steps, batch {p.gqn_batch})",
        "compare": f"PPO on pixels, GQN representation and state: {p.seeds} seeds x {p.agent_steps} env steps each",
    }
    t_start = time.monotonic()
    print(f"wm demo --preset {preset}: output in {root.resolve()}", flush=True)
    for i, name in enumerate(("data", "gqn", "compare"), 1):
        header = f"[{i}/3] {titles[name]}"
        if state["stages"].get(name, {}).get("done") and name != "compare":
            print(f"{header}: already done, skipped", flush=True)
            continue
        print(f"\n{header}\n$ {shlex.join(commands[name])}", flush=True)
        t0 = time.monotonic()
        code = subprocess.call(commands[name])
        if code != 0:
            print(f"wm demo: stage '{name}' failed with exit code {code}; rerun the same command to resume", file=sys.stderr)
            return code
        state["stages"][name] = {"done": True, "seconds": round(time.monotonic() - t0, 1), "command": commands[name]}
        write_json_atomic(state_path, state)
        print(f"{header}: done in {time.monotonic() - t0:.0f} s", flush=True)
    cmp = root / "compare"
    print(f"\nwm demo finished in {time.monotonic() - t_start:.0f} s")
    print(f"report:      {cmp / 'report.html'}  (Markdown: {cmp / 'report.md'})")
    print(f"numbers:     {cmp / 'summary.json'}; every evaluation: {cmp / 'evaluations.csv'}")
    print(f"TensorBoard: tensorboard --logdir {root}   (GQN: {root / 'gqn' / 'tb'}, agents: {cmp / 'runs'})")
    summary = cmp / "summary.json"
    if summary.is_file():
        print("\n" + read_json(summary).get("answer", ""))
    return 0
