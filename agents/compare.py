"""Run a grid of independent agent runs (obs modes x seeds) in parallel processes, then report.

Each run is one ``wm agent train`` subprocess writing to ``OUT/runs/<obs>_s<seed>/`` with its
output in ``train.log`` there, so a cluster scheduler could run the same commands (printed by
``--dry-run``). The grid is resumable: a run whose ``done.json`` exists is skipped; an unfinished
one is restarted from scratch. Progress over the whole grid (env steps of all runs) is read
from the runs' ``progress.json`` files.

After the grid, the finished runs are aggregated (:mod:`agents.stats`) and reported
(:mod:`agents.report`) into ``OUT``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agents.artifacts import (
    LOG_FILE,
    PROGRESS_FILE,
    encoder_checksum,
    is_finished,
    read_json,
    write_json_atomic,
)
from agents.config import CompareConfig

GRID_FILE = "compare_config.json"
#: Settings that must match for finished runs to be reused by a restarted comparison.
_GRID_KEYS = ("env_id", "camera", "steps", "algo", "size", "eval_freq", "eval_episodes", "n_envs", "train_args")


@dataclass
class GridRun:
    """One run of the grid."""

    obs: str
    """Observation mode."""
    seed: int
    """Seed."""
    out: Path
    """Run directory."""
    command: list[str]
    """The ``wm agent train`` command line."""

    @property
    def name(self) -> str:
        """Directory name, ``<obs>_s<seed>``."""
        return self.out.name


@dataclass
class GridResult:
    """What happened to the grid."""

    finished: list[str] = field(default_factory=list)
    """Runs that finished in this invocation."""
    skipped: list[str] = field(default_factory=list)
    """Runs already finished before (``done.json`` present)."""
    failed: list[str] = field(default_factory=list)
    """Runs whose process failed (see their train.log)."""


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def run_name(obs: str, seed: int) -> str:
    """Directory name of a run."""
    return f"{obs}_s{seed}"


def train_command(cfg: CompareConfig, obs: str, seed: int, out: Path) -> list[str]:
    """The ``wm agent train`` command of one run (through this Python interpreter)."""
    cmd = [sys.executable, "-m", "agents.cli", "agent", "train", "--env", cfg.env_id, "--obs", obs, "--algo", cfg.algo]
    cmd += ["--steps", str(cfg.steps), "--seed", str(seed), "--out", str(out)]
    cmd += ["--eval-freq", str(cfg.eval_freq), "--eval-episodes", str(cfg.eval_episodes)]
    cmd += ["--threads", str(cfg.threads_per_run), "--no-progress"]
    if cfg.camera:
        cmd += ["--camera", cfg.camera]
    if cfg.size and obs != "state":
        cmd += ["--size", str(cfg.size)]
    if cfg.n_envs:
        cmd += ["--n-envs", str(cfg.n_envs)]
    if obs == "repr":
        cmd += ["--encoder", str(cfg.encoder)]
    return cmd + list(cfg.train_args)


def plan_grid(cfg: CompareConfig) -> list[GridRun]:
    """All runs, seeds outermost (so an interrupted grid has every mode at the first seeds)."""
    runs_dir = Path(cfg.out) / "runs"
    out = []
    for seed in range(cfg.seed0, cfg.seed0 + cfg.seeds):
        for obs in cfg.obs_modes:
            d = runs_dir / run_name(obs, seed)
            out.append(GridRun(obs, seed, d, train_command(cfg, obs, seed, d)))
    return out


def _grid_signature(cfg: CompareConfig) -> dict[str, Any]:
    d = asdict(cfg)
    sig = {k: d[k] for k in _GRID_KEYS}
    sig["train_args"] = list(sig["train_args"])
    enc = encoder_checksum(cfg.encoder) if cfg.encoder else None
    sig["encoder_sha256"] = enc["sha256"] if enc else None
    return sig


def _check_grid(cfg: CompareConfig) -> dict[str, Any]:
    """Record the grid's settings; refuse to mix with finished runs made with other settings."""
    path = Path(cfg.out) / GRID_FILE
    sig = _grid_signature(cfg)
    if path.is_file():
        old = read_json(path).get("signature", {})
        diff = [k for k in sig if old.get(k) != sig[k]]
        if diff:
            detail = "; ".join(f"{k}: {old.get(k)!r} -> {sig[k]!r}" for k in diff)
            raise ValueError(
                f"{cfg.out} holds a comparison made with other settings ({detail}); use another --out "
                "or delete the old runs"
            )
    write_json_atomic(path, {"config": asdict(cfg), "signature": sig})
    return sig


def _check_encoder(cfg: CompareConfig) -> None:
    """Load the encoder once before launching runs, so a bad checkpoint or an image size that
    does not match ``--size`` is reported here rather than in every repr run's log."""
    if "repr" not in cfg.obs_modes:
        return
    from worldmodel import load_encoder

    enc = load_encoder(str(cfg.encoder), device="cpu")
    if cfg.size is not None and cfg.size != enc.image_size:
        raise ValueError(
            f"the {enc.name} encoder {cfg.encoder} takes {enc.image_size}x{enc.image_size} images but --size is {cfg.size}; "
            f"use --size {enc.image_size} (or leave it out)"
        )


def _progress(run: GridRun, steps: int) -> int:
    if is_finished(run.out):
        return steps
    try:
        return min(int(read_json(run.out / PROGRESS_FILE)["timesteps"]), steps)
    except (OSError, ValueError, KeyError):
        return 0


def run_grid(cfg: CompareConfig, log: Any = print, poll_s: float = 0.5) -> GridResult:
    """Run every unfinished run of the grid, ``cfg.jobs`` at a time; returns what happened."""
    from tqdm.auto import tqdm

    cfg.validate()
    _check_encoder(cfg)
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    _check_grid(cfg)
    runs = plan_grid(cfg)
    result = GridResult(skipped=[r.name for r in runs if is_finished(r.out)])
    pending = [r for r in runs if not is_finished(r.out)]
    jobs = min(cfg.jobs or max(1, available_cores() // cfg.threads_per_run), max(1, len(pending)))
    log(f"grid: {len(runs)} runs ({len(cfg.obs_modes)} obs modes x {cfg.seeds} seeds); {len(result.skipped)} already finished (skipped), {len(pending)} to run, {jobs} at a time")
    if not pending:
        return result
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(cfg.threads_per_run)
    env["PYTHONUNBUFFERED"] = "1"
    active: dict[subprocess.Popen, tuple[GridRun, Any]] = {}
    queue = list(pending)
    bar = tqdm(total=len(pending) * cfg.steps, unit="step", desc="grid (env steps, all runs)", dynamic_ncols=True)
    try:
        while queue or active:
            while queue and len(active) < jobs:
                run = queue.pop(0)
                run.out.mkdir(parents=True, exist_ok=True)
                logf = open(run.out / LOG_FILE, "w", encoding="utf-8")
                logf.write("$ " + " ".join(run.command) + "\n")
                logf.flush()
                proc = subprocess.Popen(run.command, stdout=logf, stderr=subprocess.STDOUT, env=env)
                active[proc] = (run, logf)
                bar.set_postfix_str(f"started {run.name}")
            time.sleep(poll_s)
            for proc in [p for p in active if p.poll() is not None]:
                run, logf = active.pop(proc)
                logf.close()
                if proc.returncode == 0 and is_finished(run.out):
                    result.finished.append(run.name)
                    bar.set_postfix_str(f"finished {run.name}")
                else:
                    result.failed.append(run.name)
                    tqdm.write(f"run {run.name} failed (exit code {proc.returncode}); see {run.out / LOG_FILE}")
            done_steps = sum(_progress(r, cfg.steps) for r in pending)
            bar.update(done_steps - bar.n)
    finally:
        for proc in active:  # interrupted: stop only the processes started here
            proc.terminate()
        for proc, (_, logf) in active.items():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            logf.close()
        bar.close()
    return result


def setup_summary(cfg: CompareConfig) -> dict[str, Any]:
    """The settings table of the report."""

    enc = encoder_checksum(cfg.encoder) if cfg.encoder else None
    return {
        "env_id": cfg.env_id,
        "camera": cfg.camera or "env default",
        "algo": cfg.algo,
        "obs modes": ", ".join(cfg.obs_modes),
        "seeds per mode": f"{cfg.seeds} (from {cfg.seed0})",
        "env steps per run": cfg.steps,
        "evaluation": f"every {cfg.eval_freq} env steps, {cfg.eval_episodes} episodes, deterministic, separate envs",
        "image size": cfg.size or "encoder input size / env default",
        "encoder": f"{enc['checkpoint']} (model.safetensors sha256 {enc['sha256'][:16]}...)" if enc else (cfg.encoder or "none"),
        "extra train args": " ".join(cfg.train_args) or "none",
        "bootstrap": f"{cfg.bootstrap_reps} stratified resamples (rliable)",
    }


def make_report(cfg: CompareConfig, reference: "float | None" = None, log: Any = print) -> dict[str, Path]:
    """Aggregate the finished runs of ``cfg``'s modes under ``OUT/runs`` and write the report."""
    from agents.report import write_report
    from agents.stats import compare_runs, load_runs

    planned = {r.name for r in plan_grid(cfg)}
    runs = [r for r in load_runs(Path(cfg.out) / "runs") if r.name in planned]
    if not runs:
        raise ValueError(f"no finished runs under {Path(cfg.out) / 'runs'} for obs modes {', '.join(cfg.obs_modes)}")
    log(f"aggregating {len(runs)} finished runs (bootstrap {cfg.bootstrap_reps} resamples)...")
    cmp = compare_runs(runs, threshold=cfg.threshold, reference=reference, reps=cfg.bootstrap_reps, seed=0)
    missing = [m for m in cfg.obs_modes if m not in cmp.modes]
    if missing:
        cmp.notes.append(f"no finished runs for obs mode(s) {', '.join(missing)}")
    return write_report(cmp, cfg.out, setup_summary(cfg))


def compare(cfg: CompareConfig, reference: "float | None" = None, log: Any = print) -> tuple[GridResult, dict[str, Path]]:
    """Run the grid, then write the report; returns both outcomes."""
    result = run_grid(cfg, log=log)
    files = make_report(cfg, reference=reference, log=log)
    return result, files
