"""Run a grid of independent agent runs (arms x seeds) in parallel processes, then report.

Each run is one ``wm agent train`` subprocess writing to ``OUT/runs/<arm>_s<seed>/`` with its
output appended to ``train.log`` there, so a cluster scheduler could run the same commands
(printed by ``--dry-run``). Progress over the grid (env steps of all runs) is read from the
runs' ``progress.json`` files.

Plan, shards and restarts
    :func:`plan_grid` orders the runs deterministically: seeds outermost, arms in the given order
    inside (an interrupted grid has every arm at the first seeds). ``--shard i/n`` runs the runs
    whose index in that plan satisfies ``index % n == i`` (round-robin rather than contiguous
    blocks, so every shard gets a mix of slow pixel arms and fast state arms and the shards of a
    job array finish at about the same time). All shards write into the same ``OUT`` layout; a
    run whose ``done.json`` exists is skipped, and an unfinished run directory is never deleted:
    its ``wm agent train`` is launched again with the same command and resumes from the run's
    newest checkpoint. A ``SIGTERM`` (cluster pre-emption) stops the grid's own subprocesses
    and leaves their directories for the restart.

Aggregation
    :func:`make_report` (after a non-sharded grid, or ``wm agent aggregate OUT`` after all
    shards) measures the reference once (:func:`agents.reference.measure_reference` over the
    evaluation seeds, cached in ``OUT/reference.json``), loads every finished run of the plan,
    notes planned runs that are missing, and writes the report (:mod:`agents.stats`,
    :mod:`agents.report`).

Reuse of finished runs is guarded by ``compare_config.json``: settings shared by all runs must
match, and an arm that is already recorded must keep its spec and encoder weights (sha256);
arms may be added and seeds extended.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.artifacts import (
    LOG_FILE,
    PROGRESS_FILE,
    encoder_checksum,
    is_finished,
    read_json,
    write_json_atomic,
)
from agents.config import CPUS_PER_RUN_ENV, ArmSpec, CompareConfig

if TYPE_CHECKING:  # pragma: no cover
    from agents.reference import ReferenceScores

GRID_FILE = "compare_config.json"
REFERENCE_FILE = "reference.json"
#: Settings shared by every run; they must match for finished runs to be reused.
_GRID_KEYS = (
    "env_id",
    "camera",
    "steps",
    "algo",
    "size",
    "eval_freq",
    "eval_episodes",
    "eval_seed",
    "n_envs",
    "train_args",
    "env_kwargs",
    "checkpoint_freq",
)


@dataclass
class GridRun:
    """One run of the grid."""

    arm: ArmSpec
    """The arm this run belongs to."""
    seed: int
    """Seed."""
    index: int
    """Position in the deterministic plan (what ``--shard`` selects on)."""
    out: Path
    """Run directory."""
    command: list[str]
    """The ``wm agent train`` command line."""

    @property
    def name(self) -> str:
        """Directory name, ``<arm>_s<seed>``."""
        return self.out.name

    @property
    def obs(self) -> str:
        """Observation mode of the run's arm."""
        return self.arm.obs


@dataclass
class GridResult:
    """What happened to the grid (or to one shard of it)."""

    finished: list[str] = field(default_factory=list)
    """Runs that finished in this invocation."""
    skipped: list[str] = field(default_factory=list)
    """Runs already finished before (``done.json`` present)."""
    failed: list[str] = field(default_factory=list)
    """Runs whose process failed (see their train.log); their directories are kept for a restart."""


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: the runs whose plan index satisfies ``index % count == self.index``."""

    index: int
    """Which shard, ``0 <= index < count``."""
    count: int
    """Number of shards (the size of the job array)."""

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"i/n"`` (``--shard``), e.g. ``"0/4"``; ``$SLURM_ARRAY_TASK_ID/4`` in a job array."""
        i, sep, n = text.partition("/")
        try:
            shard = cls(int(i), int(n)) if sep else None
        except ValueError:
            shard = None
        if shard is None:
            raise ValueError(f"--shard expects i/n with integers 0 <= i < n (e.g. 0/4), got {text!r}")
        return shard.validate()

    def validate(self) -> Shard:
        """Check ``0 <= index < count``."""
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count} is not valid: need n >= 1 and 0 <= i < n")
        return self

    def selects(self, run: GridRun) -> bool:
        """Whether ``run`` belongs to this shard."""
        return run.index % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def run_name(arm: str, seed: int) -> str:
    """Directory name of a run."""
    return f"{arm}_s{seed}"


def _kwarg_text(value: Any) -> str:
    import json

    return json.dumps(value) if not isinstance(value, str) else value


def train_command(cfg: CompareConfig, arm: ArmSpec, seed: int, out: Path) -> list[str]:
    """The ``wm agent train`` command of one run (through this Python interpreter).

    The grid's ``train_args`` come before the arm's own, so an arm's setting wins (argparse keeps
    the last value of an option).
    """
    cmd = [
        sys.executable,
        "-m",
        "agents.cli",
        "agent",
        "train",
        "--env",
        cfg.env_id,
        "--arm",
        arm.name,
        "--obs",
        arm.obs,
    ]
    cmd += ["--algo", cfg.algo, "--steps", str(cfg.steps), "--seed", str(seed), "--out", str(out)]
    cmd += [
        "--eval-freq",
        str(cfg.eval_freq),
        "--eval-episodes",
        str(cfg.eval_episodes),
        "--eval-seed",
        str(cfg.eval_seed),
    ]
    cmd += ["--threads", str(cfg.threads_per_run), "--no-progress"]
    if cfg.camera:
        cmd += ["--camera", cfg.camera]
    if cfg.size and arm.obs != "state":
        cmd += ["--size", str(cfg.size)]
    if cfg.n_envs:
        cmd += ["--n-envs", str(cfg.n_envs)]
    if cfg.checkpoint_freq is not None:
        cmd += ["--checkpoint-freq", str(cfg.checkpoint_freq)]
    if arm.encoder:
        cmd += ["--encoder", str(arm.encoder)]
    for key, value in cfg.env_kwargs.items():
        cmd += ["--env-kwarg", f"{key}={_kwarg_text(value)}"]
    return cmd + list(cfg.train_args) + list(arm.train_args)


def plan_grid(cfg: CompareConfig) -> list[GridRun]:
    """All runs in the deterministic plan order: seeds outermost, arms in ``cfg.arms`` order inside."""
    runs_dir = Path(cfg.out) / "runs"
    out = []
    for seed in range(cfg.seed0, cfg.seed0 + cfg.seeds):
        for arm in cfg.arms:
            d = runs_dir / run_name(arm.name, seed)
            out.append(GridRun(arm, seed, len(out), d, train_command(cfg, arm, seed, d)))
    return out


def shard_runs(runs: list[GridRun], shard: Shard | None) -> list[GridRun]:
    """The runs of ``shard`` (all of them for ``None``)."""
    return list(runs) if shard is None else [r for r in runs if shard.selects(r)]


def _arm_signature(arm: ArmSpec) -> dict[str, Any]:
    # The encoder is identified by its weights' digest (a moved directory is the same encoder).
    enc = encoder_checksum(arm.encoder) if arm.encoder else None
    if arm.encoder and enc is None:
        raise FileNotFoundError(f"arm {arm.name!r}: no encoder checkpoint (model.safetensors) found in {arm.encoder}")
    return {"obs": arm.obs, "train_args": list(arm.train_args), "encoder_sha256": enc["sha256"] if enc else None}


def grid_signature(cfg: CompareConfig) -> dict[str, Any]:
    """What finished runs depend on: the shared settings and every arm's spec and encoder sha256."""
    d = asdict(cfg)
    sig: dict[str, Any] = {k: d[k] for k in _GRID_KEYS}
    sig["train_args"] = list(sig["train_args"])
    sig["arms"] = {a.name: _arm_signature(a) for a in cfg.arms}
    return sig


def _check_grid(cfg: CompareConfig) -> dict[str, Any]:
    """Record the grid's settings; refuse to mix with finished runs made with other settings.

    The recorded arms are the union over invocations, so dropping an arm and adding it back with
    another spec is refused too.
    """
    path = Path(cfg.out) / GRID_FILE
    sig = grid_signature(cfg)
    arms = dict(sig["arms"])
    if path.is_file():
        old = read_json(path).get("signature", {})
        diff = [f"{k}: {old.get(k)!r} -> {sig[k]!r}" for k in _GRID_KEYS if old.get(k) != sig[k]]
        old_arms = old.get("arms", {})
        if isinstance(old_arms, dict):
            diff += [
                f"arm {n}: {old_arms[n]!r} -> {arms[n]!r}" for n in arms if n in old_arms and old_arms[n] != arms[n]
            ]
            arms = {**old_arms, **arms}
        if diff:
            raise ValueError(
                f"{cfg.out} holds a comparison made with other settings ({'; '.join(diff)}); use another --out "
                "or delete the old runs"
            )
    sig["arms"] = arms
    write_json_atomic(path, {"config": cfg.to_dict(), "signature": sig})
    return sig


def _check_encoders(cfg: CompareConfig) -> None:
    """Load each arm's encoder once before launching runs, so a bad checkpoint or an image size
    that does not match ``--size`` is reported here rather than in every run's log."""
    arms = [a for a in cfg.arms if a.encoder]
    if not arms:
        return
    from worldmodel import load_encoder

    for arm in arms:
        enc = load_encoder(str(arm.encoder), device="cpu")
        if cfg.size is not None and cfg.size != enc.image_size:
            raise ValueError(
                f"arm {arm.name!r}: the {enc.name} encoder {arm.encoder} takes {enc.image_size}x{enc.image_size} "
                f"images but --size is {cfg.size}; use --size {enc.image_size} (or leave it out)"
            )


def _progress(run: GridRun, steps: int) -> int:
    if is_finished(run.out):
        return steps
    try:
        return min(int(read_json(run.out / PROGRESS_FILE)["timesteps"]), steps)
    except (OSError, ValueError, KeyError):
        return 0


class _TerminateAsInterrupt:
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` (so the grid's ``finally`` stops its
    subprocesses) when used from the main thread; elsewhere it does nothing."""

    def __enter__(self) -> _TerminateAsInterrupt:
        self._old = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def run_grid(cfg: CompareConfig, shard: Shard | None = None, log: Any = print, poll_s: float = 0.5) -> GridResult:
    """Run every unfinished run of the grid (or of ``shard``), ``cfg.jobs`` at a time."""
    from tqdm.auto import tqdm

    cfg.validate()
    _check_encoders(cfg)
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    _check_grid(cfg)
    plan = plan_grid(cfg)
    runs = shard_runs(plan, shard)
    result = GridResult(skipped=[r.name for r in runs if is_finished(r.out)])
    pending = [r for r in runs if not is_finished(r.out)]
    resuming = sum(1 for r in pending if r.out.is_dir())
    jobs = min(cfg.jobs or max(1, available_cores() // cfg.threads_per_run), max(1, len(pending)))
    scope = f"shard {shard}: {len(runs)} of the grid's {len(plan)} runs" if shard else f"grid: {len(runs)} runs"
    log(
        f"{scope} ({len(cfg.arms)} arms x {cfg.seeds} seeds); {len(result.skipped)} already finished (skipped), "
        f"{len(pending)} to run, {jobs} at a time"
        + (f" ({resuming} restarted from their run directories)" if resuming else "")
    )
    if not pending:
        return result
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(cfg.threads_per_run)
    env["PYTHONUNBUFFERED"] = "1"
    env[CPUS_PER_RUN_ENV] = str(max(1, available_cores() // jobs))  # each run's share (vec_env="auto")
    active: dict[subprocess.Popen, tuple[GridRun, Any]] = {}
    queue = list(pending)
    bar = tqdm(total=len(pending) * cfg.steps, unit="step", desc="grid (env steps, all runs)", dynamic_ncols=True)
    try:
        with _TerminateAsInterrupt():
            while queue or active:
                while queue and len(active) < jobs:
                    run = queue.pop(0)
                    run.out.mkdir(parents=True, exist_ok=True)
                    # append: the log of an interrupted attempt stays above the restarted one
                    logf = open(run.out / LOG_FILE, "a", encoding="utf-8")
                    logf.write(
                        f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} grid launch\n$ " + " ".join(run.command) + "\n"
                    )
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
        for proc in active:  # interrupted: stop only the processes started here; their run dirs stay
            proc.terminate()
        for proc, (_, logf) in active.items():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            logf.close()
        bar.close()
    return result


# ---------------------------------------------------------------- reference and report


def reference_env_kwargs(cfg: CompareConfig) -> dict[str, Any]:
    """The runs' env kwargs without the visual ones (``agents.reference.VISUAL_KWARGS``)."""
    from agents.reference import VISUAL_KWARGS

    return {k: v for k, v in cfg.env_kwargs.items() if k not in VISUAL_KWARGS}


def reference_scores(cfg: CompareConfig, log: Any = print) -> ReferenceScores:
    """The expert / zero-action reference of the grid's evaluation episodes.

    Read from ``OUT/reference.json`` when it was measured for the same env and seeds; otherwise
    measured with :func:`agents.reference.measure_reference` and written there atomically.
    """
    from agents.reference import ReferenceScores, evaluation_seeds, measure_reference

    seeds = evaluation_seeds(cfg.eval_seed, cfg.eval_episodes)
    path = Path(cfg.out) / REFERENCE_FILE
    if path.is_file():
        try:
            cached = ReferenceScores.from_dict(read_json(path))
        except (ValueError, KeyError, TypeError) as err:
            log(f"{path} is not a valid reference ({err}); measuring it again")
        else:
            if cached.env_id == cfg.env_id and tuple(cached.seeds) == tuple(seeds):
                return cached
            log(f"{path} was measured for {cached.env_id} / other evaluation seeds; measuring it again")
    log(
        f"measuring the reference (scripted expert, zero-action policy) on {cfg.env_id}, {len(seeds)} evaluation "
        "episodes..."
    )
    ref = measure_reference(cfg.env_id, reference_env_kwargs(cfg), seeds)
    write_json_atomic(path, ref.to_dict())
    return ref


def _seed_range(seeds: tuple[int, ...] | list[int]) -> str:
    s = list(seeds)
    contiguous = s == list(range(s[0], s[0] + len(s))) if s else False
    return f"seeds {s[0]}..{s[-1]}" if contiguous and len(s) > 1 else f"seeds {', '.join(map(str, s))}"


def setup_summary(cfg: CompareConfig, reference: ReferenceScores | None = None) -> dict[str, Any]:
    """The settings table of the report: shared settings, the reference, and every arm."""
    setup: dict[str, Any] = {
        "env_id": cfg.env_id,
        "camera": cfg.camera or "env default",
        "env kwargs": ", ".join(f"{k}={v}" for k, v in cfg.env_kwargs.items()) or "none",
        "algo": cfg.algo,
        "arms": ", ".join(cfg.arm_names),
        "seeds per arm": f"{cfg.seeds} (from {cfg.seed0})",
        "env steps per run": cfg.steps,
        "evaluation": f"every {cfg.eval_freq} env steps, {cfg.eval_episodes} episodes "
        f"({_seed_range(list(range(cfg.eval_seed, cfg.eval_seed + cfg.eval_episodes)))}), deterministic policy, "
        "separate env",
        "image size": cfg.size or "encoder input size / env default",
        "train args (all arms)": " ".join(cfg.train_args) or "none",
    }
    if reference is not None:
        kwargs = ", ".join(f"{k}={v}" for k, v in reference_env_kwargs(cfg).items()) or "none"
        setup["reference measurement"] = (
            f"expert {reference.expert_return:.4g} (score 1), zero-action {reference.zero_return:.4g} (score 0): "
            f"{reference.source}; on {reference.env_id}, obs state, env kwargs {kwargs} (visual options dropped); "
            f"{REFERENCE_FILE}"
        )
    for arm in cfg.arms:
        text = arm.describe()
        if arm.encoder:
            enc = encoder_checksum(arm.encoder)
            untrained = _untrained_note(arm.encoder)
            if enc:
                text += f" (model.safetensors sha256 {enc['sha256'][:16]}...)"
            text += untrained
        setup[f"arm {arm.name}"] = text
    differing = [a for a in cfg.arms if a.train_args]
    setup["per-arm differences"] = (
        "; ".join(f"{a.name}: {' '.join(a.train_args)}" for a in differing)
        if differing
        else "none: the same algorithm settings for every arm (only the observation differs)"
    )
    setup["bootstrap"] = f"{cfg.bootstrap_reps} stratified resamples (rliable)"
    return setup


def _untrained_note(encoder: str) -> str:
    try:
        from worldmodel.untrained import untrained_info

        info = untrained_info(encoder)
    except (OSError, ValueError):
        return ""
    if not info:
        return ""
    return f"; untrained: fresh weights (seed {info.get('seed')}) with the architecture of {info.get('like')}"


def missing_runs(cfg: CompareConfig, finished: set[str]) -> list[str]:
    """Planned runs (all shards) without a finished result."""
    return [r.name for r in plan_grid(cfg) if r.name not in finished]


def make_report(cfg: CompareConfig, log: Any = print) -> dict[str, Path]:
    """Aggregate the finished runs of ``cfg``'s plan under ``OUT/runs`` and write the report."""
    from agents.report import write_report
    from agents.stats import compare_runs, load_runs

    cfg.validate()
    planned = {r.name for r in plan_grid(cfg)}
    runs = [r for r in load_runs(Path(cfg.out) / "runs") if r.name in planned]
    if not runs:
        raise ValueError(f"no finished runs under {Path(cfg.out) / 'runs'} for arms {', '.join(cfg.arm_names)}")
    reference = reference_scores(cfg, log=log)
    log(
        f"aggregating {len(runs)} finished runs of {len(planned)} planned (bootstrap {cfg.bootstrap_reps} resamples)..."
    )
    cmp = compare_runs(runs, reference=reference, threshold=cfg.threshold, reps=cfg.bootstrap_reps, seed=0)
    missing = missing_runs(cfg, {r.name for r in runs})
    if missing:
        shown = ", ".join(missing[:12]) + (f" and {len(missing) - 12} more" if len(missing) > 12 else "")
        cmp.notes.append(
            f"{len(missing)} of the {len(planned)} planned runs are missing (not finished): {shown}; "
            "the statistics use the finished runs only (rerun the grid or its shards to complete it)"
        )
    return write_report(cmp, cfg.out, setup_summary(cfg, reference))


def load_config(out: str | Path) -> CompareConfig:
    """The configuration recorded in ``OUT/compare_config.json`` (with ``out`` set to ``OUT``)."""
    path = Path(out) / GRID_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {out} must be a directory written by `wm agent compare`")
    values = read_json(path)["config"]
    values["out"] = str(out)
    return CompareConfig.from_dict(values)


def aggregate(
    out: str | Path, threshold: float | None = None, reps: int | None = None, log: Any = print
) -> dict[str, Path]:
    """``wm agent aggregate OUT``: the report over every finished run of the recorded plan (all shards)."""
    from dataclasses import replace

    cfg = load_config(out)
    if threshold is not None:
        cfg = replace(cfg, threshold=threshold)
    if reps is not None:
        cfg = replace(cfg, bootstrap_reps=reps)
    return make_report(cfg.validate(), log=log)


def compare(
    cfg: CompareConfig, shard: Shard | None = None, log: Any = print
) -> tuple[GridResult, dict[str, Path] | None]:
    """Run the grid (or one shard), then write the report; a shard writes no report (``None``):
    aggregate after all shards with :func:`aggregate`."""
    result = run_grid(cfg, shard=shard, log=log)
    if shard is not None:
        return result, None
    return result, make_report(cfg, log=log)
