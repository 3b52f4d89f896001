#!/usr/bin/env python3
"""Learnability check (not part of CI): is each env learnable from its state vector?

Before comparing pixels, representations and state, the state agent must actually learn:

* ``wm/JacoReach-v0``: the final evaluation return reaches >= 80% of the maximum return
  (the reward is at most 1 per step, so the maximum is the episode length);
* ``wm/Maze-v0``: the goal is reached in most evaluation episodes (success rate > 50%).

Each check is one ``wm agent train --obs state`` run (1 torch thread, one process at a time so
the machine stays usable), its evaluation curve is plotted, and a verdict is written to
``OUT/learnability.md`` and ``OUT/learnability.json``. Budgets are chosen to finish on a 2-core
CPU in under an hour in total; ``--quick`` shrinks them ~10x to smoke-test the script.

    python scripts/learnability.py --out wm_out/learnability            # ~1 hour on 2 cores
    python scripts/learnability.py --out /tmp/learn --quick --only jaco # minutes
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Check:
    """One learnability check."""

    name: str
    """Short name (``jaco``, ``maze``)."""
    env_id: str
    """Gymnasium id."""
    algo: str
    """SB3 algorithm."""
    steps: int
    """Env steps of the run."""
    eval_freq: int
    """Env steps between evaluations."""
    eval_episodes: int
    """Episodes per evaluation."""
    env_kwargs: dict = field(default_factory=dict)
    """Env options."""
    train_args: list = field(default_factory=list)
    """Extra ``wm agent train`` arguments (hyperparameters)."""
    criterion: str = "return"
    """``return``: final return >= target x max_return; ``success``: success rate > target."""
    target: float = 0.8
    """Threshold of the criterion."""
    max_return: "float | None" = None
    """Largest achievable return (for the ``return`` criterion)."""


def default_checks(quick: bool) -> list[Check]:
    """The two checks with their budgets (``quick``: ~10x smaller)."""
    f = 10 if quick else 1
    jaco_len = 100
    return [
        # PPO defaults of agents.config (8 envs x 256 steps, 10 epochs, MLP 128x128).
        Check(
            "jaco", "wm/JacoReach-v0", "ppo", 800_000 // f, 50_000 // f, 10,
            env_kwargs={"episode_length": jaco_len}, criterion="return", target=0.8, max_return=float(jaco_len),
        ),
        Check(
            "maze", "wm/Maze-v0", "ppo", 2_000_000 // f, 100_000 // f, 20,
            env_kwargs={"max_steps": 300}, train_args=["--hp", "ent_coef=0.01"],
            criterion="success", target=0.5,
        ),
    ]


def _read_curve(run: Path) -> tuple[list[int], list[float], list[float]]:
    with open(run / "evaluations.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    succ = [float(r["success_rate"]) if r["success_rate"] != "" else float("nan") for r in rows]
    return [int(r["timesteps"]) for r in rows], [float(r["mean_return"]) for r in rows], succ


def run_check(check: Check, out: Path) -> dict:
    """Train (or reuse a finished run), then judge the final evaluation."""
    run = out / check.name
    cmd = [sys.executable, "-m", "agents.cli", "agent", "train", "--env", check.env_id, "--obs", "state",
           "--algo", check.algo, "--steps", str(check.steps), "--eval-freq", str(check.eval_freq),
           "--eval-episodes", str(check.eval_episodes), "--out", str(run), "--threads", "1", *check.train_args]
    for k, v in check.env_kwargs.items():
        cmd += ["--env-kwarg", f"{k}={json.dumps(v)}"]
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.monotonic()
    code = subprocess.call(cmd)
    seconds = time.monotonic() - t0
    if code != 0:
        return {"check": asdict(check), "passed": False, "error": f"training failed with exit code {code}"}
    steps, returns, success = _read_curve(run)
    final_return, final_success = returns[-1], success[-1]
    if check.criterion == "return":
        value = final_return / float(check.max_return)
        passed = value >= check.target
        verdict = f"final return {final_return:.1f} = {value:.0%} of the maximum {check.max_return:.0f} (target {check.target:.0%})"
    else:
        value = final_success
        passed = value > check.target
        verdict = f"final success rate {value:.0%} (target > {check.target:.0%})"
    return {
        "check": asdict(check), "passed": bool(passed), "value": value, "verdict": verdict, "seconds": round(seconds, 1),
        "curve": {"timesteps": steps, "mean_return": returns, "success_rate": success}, "run": str(run), "command": cmd,
    }


def plot(results: list[dict], path: Path) -> None:
    """Evaluation return (and success rate) vs env steps of each check."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    from agents.report import steps_label

    ok = [r for r in results if "curve" in r]
    if not ok:
        return
    fig, axes = plt.subplots(1, len(ok), figsize=(5.5 * len(ok), 3.8), squeeze=False)
    for ax, r in zip(axes[0], ok, strict=True):
        c, chk = r["curve"], r["check"]
        ax.plot(c["timesteps"], c["mean_return"], marker=".", label="mean return")
        if chk["max_return"]:
            ax.axhline(chk["target"] * chk["max_return"], color="grey", linestyle="--", label=f"{chk['target']:.0%} of max")
        ax.set_title(f"{chk['env_id']} ({chk['algo']}, state): {'PASS' if r['passed'] else 'FAIL'}")
        ax.set_xlabel("env steps")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: steps_label(x)))
        ax.set_ylabel("evaluation return")
        if any(s == s for s in c["success_rate"]):  # not all NaN
            twin = ax.twinx()
            twin.plot(c["timesteps"], c["success_rate"], color="tab:green", marker="x", label="success rate")
            twin.set_ylim(-0.05, 1.05)
            twin.set_ylabel("success rate")
        ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: "list[str] | None" = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="wm_out/learnability")
    p.add_argument("--only", nargs="+", choices=("jaco", "maze"), default=None, help="run only these checks")
    p.add_argument("--quick", action="store_true", help="~10x smaller budgets (smoke test)")
    args = p.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checks = [c for c in default_checks(args.quick) if args.only is None or c.name in args.only]
    results = [run_check(c, out) for c in checks]
    plot(results, out / "learnability.png")
    (out / "learnability.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["# Learnability from state", "", "| env | algo | env steps | result | verdict | minutes |", "|---|---|---|---|---|---|"]
    for r in results:
        c = r["check"]
        lines.append(f"| {c['env_id']} | {c['algo']} | {c['steps']} | {'PASS' if r['passed'] else 'FAIL'} | "
                     f"{r.get('verdict', r.get('error'))} | {r.get('seconds', 0) / 60:.1f} |")
    lines += ["", "![curves](learnability.png)", ""]
    (out / "learnability.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
