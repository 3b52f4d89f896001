#!/usr/bin/env python3
"""Learnability benchmark (not part of CI): is each env learnable from its state vector?

Before comparing pixels, representations and state, the state agent must actually learn:

* ``wm/JacoReach-v1`` (issue 9's target): PPO on state reaches a normalised score >= 0.8 within
  200k env steps, IQM over 5 seeds (score 1 = the scripted expert's mean return, 0 = the
  zero-action policy's, both over the 30 fixed evaluation episodes). Run as a ``wm agent compare``
  grid of one ``state`` arm, so the verdict uses the comparison's statistics: the final IQM with
  its stratified-bootstrap CI and the env steps after which the IQM curve stays >= 0.8.
* ``wm/Maze-v0``: one PPO run reaches the goal in most evaluation episodes (success rate > 50%).

Results go to ``OUT/learnability.md`` and ``OUT/learnability.json`` (the Jaco grid's full report
in ``OUT/jaco/report.md``). Reruns resume. ``--quick`` shrinks the budgets ~10x to smoke-test.

    python scripts/learnability.py --out wm_out/learnability --only jaco   # ~12 min on 2 cores
    python scripts/learnability.py --out /tmp/learn --quick --only jaco    # ~2 min
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
    criterion: str = "normalised"
    """``normalised``: IQM normalised score over ``seeds`` >= target (a compare grid);
    ``success``: success rate of one run > target."""
    target: float = 0.8
    """Threshold of the criterion."""
    seeds: int = 1
    """Seeds (runs) of the check."""


def default_checks(quick: bool) -> list[Check]:
    """The two checks with their budgets (``quick``: ~10x smaller)."""
    f = 10 if quick else 1
    return [
        # PPO defaults of agents.config (8 envs x 256 steps, 10 epochs, MLP 128x128), no tuning.
        Check(
            "jaco", "wm/JacoReach-v1", "ppo", 200_000 // f, 10_000 // f, 30, criterion="normalised", target=0.8, seeds=5
        ),
        Check(
            "maze",
            "wm/Maze-v0",
            "ppo",
            2_000_000 // f,
            100_000 // f,
            20,
            env_kwargs={"max_steps": 300},
            train_args=["--hp", "ent_coef=0.01"],
            criterion="success",
            target=0.5,
        ),
    ]


def _run_command(cmd: list[str], check: Check) -> tuple[int, float]:
    """Run ``cmd`` with the check's env options appended; returns (exit code, seconds)."""
    for k, v in check.env_kwargs.items():
        cmd += ["--env-kwarg", f"{k}={json.dumps(v)}"]
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.monotonic()
    code = subprocess.call(cmd)
    return code, time.monotonic() - t0


def run_grid_check(check: Check, out: Path) -> dict:
    """A ``wm agent compare`` grid of one state arm; judged on its IQM normalised final score."""
    grid = out / check.name
    cmd = [
        sys.executable,
        "-m",
        "agents.cli",
        "agent",
        "compare",
        "--env",
        check.env_id,
        "--obs",
        "state",
        "--algo",
        check.algo,
        "--seeds",
        str(check.seeds),
        "--steps",
        str(check.steps),
        "--eval-freq",
        str(check.eval_freq),
        "--eval-episodes",
        str(check.eval_episodes),
        "--out",
        str(grid),
        *check.train_args,
    ]
    code, seconds = _run_command(cmd, check)
    if code != 0:
        return {"check": asdict(check), "passed": False, "error": f"the grid failed with exit code {code}"}
    summary = json.loads((grid / "summary.json").read_text())
    point, low, high = summary["aggregates_normalised"]["state"]["IQM"]
    steps = summary["steps_to_threshold"]["state"]
    runs = summary["runs"]["state"]
    passed = len(runs) >= 5 and point >= check.target
    reach = (
        "never"
        if steps[0] is None
        else f"{steps[0]:,.0f} env steps (95% CI {steps[1] or 0:,.0f}-"
        + ("> budget" if steps[2] is None else f"{steps[2]:,.0f}")
        + ")"
    )
    verdict = (
        f"IQM normalised final score {point:.2f} (95% CI {low:.2f}-{high:.2f}) over {len(runs)} seeds "
        f"(target >= {check.target}); stays >= {check.target} after {reach}"
    )
    curves = {r["name"]: _read_curve(grid / "runs" / r["name"]) for r in runs}
    return {
        "check": asdict(check),
        "passed": bool(passed),
        "value": point,
        "ci": [low, high],
        "verdict": verdict,
        "steps_to_target": steps,
        "seconds": round(seconds, 1),
        "expert_return": summary["normalisation"]["expert_return"],
        "zero_return": summary["normalisation"]["zero_return"],
        "runs": runs,
        "report": str(grid / "report.md"),
        "curves": {k: {"timesteps": v[0], "mean_return": v[1]} for k, v in curves.items()},
        "command": cmd,
    }


def _read_curve(run: Path) -> tuple[list[int], list[float], list[float]]:
    with open(run / "evaluations.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    succ = [float(r["success_rate"]) if r["success_rate"] != "" else float("nan") for r in rows]
    return [int(r["timesteps"]) for r in rows], [float(r["mean_return"]) for r in rows], succ


def run_check(check: Check, out: Path) -> dict:
    """Train (or reuse a finished run), then judge the final evaluation."""
    run = out / check.name
    cmd = [
        sys.executable,
        "-m",
        "agents.cli",
        "agent",
        "train",
        "--env",
        check.env_id,
        "--obs",
        "state",
        "--algo",
        check.algo,
        "--steps",
        str(check.steps),
        "--eval-freq",
        str(check.eval_freq),
        "--eval-episodes",
        str(check.eval_episodes),
        "--out",
        str(run),
        "--threads",
        "1",
        *check.train_args,
    ]
    code, seconds = _run_command(cmd, check)
    if code != 0:
        return {"check": asdict(check), "passed": False, "error": f"training failed with exit code {code}"}
    steps, returns, success = _read_curve(run)
    value = success[-1]
    passed = value > check.target
    verdict = f"final success rate {value:.0%} (target > {check.target:.0%})"
    return {
        "check": asdict(check),
        "passed": bool(passed),
        "value": value,
        "verdict": verdict,
        "seconds": round(seconds, 1),
        "curve": {"timesteps": steps, "mean_return": returns, "success_rate": success},
        "run": str(run),
        "command": cmd,
    }


def plot(results: list[dict], path: Path) -> None:
    """Evaluation return (and success rate) vs env steps of each check."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    from agents.report import steps_label

    ok = [r for r in results if "curve" in r or "curves" in r]
    if not ok:
        return
    fig, axes = plt.subplots(1, len(ok), figsize=(5.5 * len(ok), 3.8), squeeze=False)
    for ax, r in zip(axes[0], ok, strict=True):
        chk = r["check"]
        if "curves" in r:  # a grid: every seed, normalised to the expert / zero-action references
            scale = r["expert_return"] - r["zero_return"]
            for name, c in r["curves"].items():
                ax.plot(
                    c["timesteps"], [(x - r["zero_return"]) / scale for x in c["mean_return"]], marker=".", label=name
                )
            ax.axhline(chk["target"], color="grey", linestyle="--", label=f"target {chk['target']}")
            ax.axhline(1.0, color="black", linewidth=0.8, label="expert")
            ax.set_ylabel("normalised score")
        else:
            c = r["curve"]
            ax.plot(c["timesteps"], c["mean_return"], marker=".", label="mean return")
            ax.set_ylabel("evaluation return")
            twin = ax.twinx()
            twin.plot(c["timesteps"], c["success_rate"], color="tab:green", marker="x", label="success rate")
            twin.set_ylim(-0.05, 1.05)
            twin.set_ylabel("success rate")
        ax.set_title(f"{chk['env_id']} ({chk['algo']}, state): {'PASS' if r['passed'] else 'FAIL'}")
        ax.set_xlabel("env steps")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: steps_label(x)))
        ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="wm_out/learnability")
    p.add_argument("--only", nargs="+", choices=("jaco", "maze"), default=None, help="run only these checks")
    p.add_argument("--quick", action="store_true", help="~10x smaller budgets (smoke test)")
    args = p.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checks = [c for c in default_checks(args.quick) if args.only is None or c.name in args.only]
    results = [run_grid_check(c, out) if c.criterion == "normalised" else run_check(c, out) for c in checks]
    plot(results, out / "learnability.png")
    (out / "learnability.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Learnability from state",
        "",
        "| env | algo | env steps | result | verdict | minutes |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        c = r["check"]
        lines.append(
            f"| {c['env_id']} | {c['algo']} | {c['steps']} | {'PASS' if r['passed'] else 'FAIL'} | "
            f"{r.get('verdict', r.get('error'))} | {r.get('seconds', 0) / 60:.1f} |"
        )
    lines += ["", "![curves](learnability.png)", ""]
    (out / "learnability.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
