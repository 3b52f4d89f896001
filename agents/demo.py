"""``wm demo``: the whole study in one command (the README's first command).

Stages, each a ``wm`` subprocess whose own progress bars stay visible (low coupling: the demo
uses the CLIs exactly as a person would):

1. ``wm data collect --source jaco``: scenes of the ``wm/JacoReach-v1`` world seen along
   moving-camera trajectories;
2. ``wm train gqn``: a GQN trained on them (its representation network is the frozen encoder);
3. ``wm train untrained --like gqn``: the same network with fresh weights, the control that
   separates learned features from architecture;
4. ``wm agent compare``: PPO on pixels, on the frozen GQN representation, on the untrained
   encoder's features and on the state, on ``wm/JacoReach-v1`` with a moving camera; scores
   normalised to the scripted expert (1) and the zero-action policy (0), rliable statistics and
   the report, whose one-paragraph answer the demo prints at the end.

Rerunning the same command resumes: finished stages are skipped (``demo.json``), the dataset
collection and the agent grid resume themselves (runs continue from their last checkpoint), and
an interrupted GQN run continues from its newest checkpoint. ``--preset small`` is sized for a
2-core CPU (<= 20 minutes; measured times in docs/agents.md); ``--preset full`` is the GPU-scale
version of the same study.
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
ENV_ID = "wm/JacoReach-v1"
STAGES: tuple[str, ...] = ("data", "gqn", "untrained", "compare")


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
    gqn_sigma: float
    """Fixed pixel std of the GQN likelihood (a small one makes the thin arm and the target matter)."""
    gqn_device: str
    """Device of GQN training."""
    agent_steps: int
    """Env steps per agent run."""
    seeds: int
    """Seeds per arm."""
    eval_freq: int
    """Env steps between evaluations."""
    eval_episodes: int
    """Evaluation episodes per point (the fixed evaluation seed set)."""
    reps: int
    """Bootstrap resamples of the report."""


PRESETS: dict[str, DemoPreset] = {
    # 2-core CPU, <= 20 minutes from a fresh clone: a 32 px study, 3 seeds per arm, 20k env steps
    # per run. Pixel PPO runs at ~135 env steps/s and repr at ~210 on one core here, so this is
    # far too small a budget for a conclusion about pixels vs representations (the state agent
    # needs ~50k steps to reach 0.8; the report says so); it runs the whole pipeline end to end.
    "small": DemoPreset(
        scenes=600, views=11, size=32, gqn_preset="small", gqn_steps=300, gqn_batch=16, gqn_sigma=0.2,
        gqn_device="cpu", agent_steps=20_000, seeds=3, eval_freq=10_000, eval_episodes=30, reps=2_000,
    ),
    # GPU-scale: the paper's GQN architecture on a large 64 px dataset, 5 seeds x 500k env steps.
    "full": DemoPreset(
        scenes=50_000, views=11, size=64, gqn_preset="paper", gqn_steps=200_000, gqn_batch=36, gqn_sigma=0.7,
        gqn_device="auto", agent_steps=500_000, seeds=5, eval_freq=20_000, eval_episodes=30, reps=50_000,
    ),
}


def _wm(*args: str) -> list[str]:
    return [sys.executable, "-m", "agents.cli", *args]


def stage_commands(preset: DemoPreset, out: Path, jobs: int | None = None, device: str | None = None) -> dict[str, list[str]]:
    """The ``wm`` command of each stage (the GQN one for a fresh run)."""
    data, gqn, untrained, cmp = out / "data", out / "gqn", out / "untrained", out / "compare"
    return {
        "data": _wm(
            "data", "collect", "--source", "jaco", "--scenes", str(preset.scenes), "--views", str(preset.views),
            "--size", str(preset.size), "--seed", "0", "--out", str(data),
        ),
        "gqn": _wm(
            "train", "gqn", "--preset", preset.gqn_preset, "--data", str(data), "--out", str(gqn),
            "--image-size", str(preset.size), "--steps", str(preset.gqn_steps), "--batch-size", str(preset.gqn_batch),
            "--sigma-start", str(preset.gqn_sigma), "--sigma-end", str(preset.gqn_sigma),
            "--device", device or preset.gqn_device, "--ckpt-every", str(max(1, preset.gqn_steps // 4)), "--seed", "0",
        ),
        "untrained": _wm("train", "untrained", "--like", str(gqn), "--out", str(untrained), "--seed", "0"),
        "compare": _wm(
            "agent", "compare", "--env", ENV_ID, "--camera", "moving", "--obs", "pixels", "repr", "state",
            "--encoder", str(gqn), "--arm", f"repr-untrained=repr@{untrained}",
            "--seeds", str(preset.seeds), "--steps", str(preset.agent_steps), "--size", str(preset.size),
            "--out", str(cmp), "--eval-freq", str(preset.eval_freq), "--eval-episodes", str(preset.eval_episodes),
            "--reps", str(preset.reps), *(["--jobs", str(jobs)] if jobs else []),
        ),
    }


def _gqn_has_checkpoint(run_dir: Path) -> bool:
    ckpts = run_dir / "checkpoints"
    return ckpts.is_dir() and any(p.name.startswith("step_") for p in ckpts.iterdir())


def run_demo(preset: str = "small", out: str = "wm_out/demo", jobs: int | None = None, device: str | None = None) -> int:
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
        "data": f"collecting {p.scenes} JacoReach-v1 scenes x {p.views} moving-camera views at {p.size}px",
        "gqn": f"training a GQN ({p.gqn_preset} preset, {p.gqn_steps} steps, batch {p.gqn_batch}, sigma {p.gqn_sigma})",
        "untrained": "the untrained control: the GQN's architecture with fresh weights",
        "compare": f"PPO on pixels, GQN features, untrained features and state: {p.seeds} seeds x {p.agent_steps} env steps",
    }
    t_start = time.monotonic()
    print(f"wm demo --preset {preset}: output in {root.resolve()}", flush=True)
    for i, name in enumerate(STAGES, 1):
        header = f"[{i}/{len(STAGES)}] {titles[name]}"
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
