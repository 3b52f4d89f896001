"""SB3 callbacks of a training run: progress, evaluation on fixed seeds, resumable checkpoints.

SB3's own progress bar needs ``rich``; this one uses tqdm, and also writes the step count to
``progress.json`` so that ``wm agent compare`` can show the progress of a whole grid of runs.

Evaluation protocol (the same for every run and obs mode, see docs/agents.md): the deterministic
policy plays ``episodes`` episodes on a separate 1-env VecEnv; episode k starts with
``reset(seed=eval_seed + k)`` (:func:`agents.reference.evaluation_seeds`), so every evaluation of every run plays
the same, representative set of episodes, disjoint from the training envs' seeds
(``seed * 1000 + i``). SB3's ``EvalCallback`` seeds only the first episode and schedules by call
count (which restarts at 0 when a run resumes); :class:`FixedSeedEvalCallback` seeds each episode
and schedules by env steps.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, sync_envs_normalization
from tqdm.auto import tqdm

from agents.artifacts import (
    EVAL_COLUMNS,
    EVALUATIONS_FILE,
    PROGRESS_FILE,
    write_csv_atomic,
    write_json_atomic,
)

#: Info keys read as the episode's success at its last step (SB3's convention first).
SUCCESS_KEYS: tuple[str, ...] = ("is_success", "success")


def episode_success(info: dict) -> bool | None:
    """Success flag of a finished episode from its last info (``None`` if the env has none)."""
    for key in SUCCESS_KEYS:
        if info.get(key) is not None:
            return bool(info[key])
    return None


@dataclass(frozen=True)
class EvalResult:
    """Per-episode outcome of one evaluation."""

    returns: list[float]
    """Undiscounted return of each episode (Monitor's, i.e. the env's unnormalised reward)."""
    lengths: list[int]
    """Steps of each episode."""
    successes: list[bool] | None
    """Success of each episode (``None`` when the env reports none)."""


def evaluate_on_seeds(model: Any, env: VecEnv, seeds: list[int]) -> EvalResult:
    """Play one deterministic episode per seed on the 1-env VecEnv ``env`` (reset with that seed).

    Works through any wrapper stack (frame stacking, encoder, ``VecNormalize`` with
    ``training=False``): the seed reaches the base env at the reset, and returns are read from
    the Monitor below the wrappers (rewards unnormalised).
    """
    if env.num_envs != 1:
        raise ValueError(f"evaluation needs a VecEnv of 1 env (one seeded episode at a time), got {env.num_envs}")
    returns: list[float] = []
    lengths: list[int] = []
    successes: list[bool] = []
    for s in seeds:
        env.seed(int(s))
        obs = env.reset()
        state, start = None, np.ones((1,), dtype=bool)
        total, steps = 0.0, 0
        while True:
            action, state = model.predict(obs, state=state, episode_start=start, deterministic=True)
            obs, reward, done, infos = env.step(action)
            total += float(reward[0])
            steps += 1
            start = done
            if done[0]:
                info = infos[0]
                episode = info.get("episode")
                if episode is not None:  # Monitor's record: the raw reward, whatever wraps the env
                    total, steps = float(episode["r"]), int(episode["l"])
                returns.append(total)
                lengths.append(steps)
                flag = episode_success(info)
                if flag is not None:
                    successes.append(flag)
                break
    return EvalResult(returns, lengths, successes if len(successes) == len(returns) else None)


class FixedSeedEvalCallback(BaseCallback):
    """Evaluate every ``eval_freq`` env steps on the fixed seeds; record and log to TensorBoard.

    Args:
        eval_env: 1-env VecEnv built like the training env (``VecNormalize`` with ``training=False``
            and ``norm_reward=False`` when the training env normalises; statistics are copied from
            the training env before each evaluation).
        seeds: seeds of the evaluation episodes (:func:`agents.reference.evaluation_seeds`).
        eval_freq: env steps between evaluations (a multiple of the training env count).
        recorder: receives every evaluation (``evaluations.csv``).
        log: prints one line per evaluation (``None``: silent).
    """

    def __init__(
        self,
        eval_env: VecEnv,
        seeds: list[int],
        eval_freq: int,
        recorder: EvaluationRecorder,
        log: Callable[[str], Any] | None = None,
    ) -> None:
        super().__init__()
        self.eval_env = eval_env
        self.seeds = list(seeds)
        self.eval_freq = int(eval_freq)
        self.recorder = recorder
        self.log = log
        self._next = 0

    def _on_training_start(self) -> None:
        last = self.recorder.last_timesteps or 0
        self._next = (max(last, self.num_timesteps) // self.eval_freq + 1) * self.eval_freq

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next = (self.num_timesteps // self.eval_freq + 1) * self.eval_freq
            self.evaluate()
        return True

    def evaluate(self) -> dict[str, Any]:
        """Run one evaluation now, record it and log ``eval/*`` scalars; returns the CSV row."""
        sync_envs_normalization(self.training_env, self.eval_env)
        result = evaluate_on_seeds(self.model, self.eval_env, self.seeds)
        row = self.recorder.add(self.num_timesteps, result.returns, result.lengths, result.successes)
        self.logger.record("eval/mean_reward", row["mean_return"])
        self.logger.record("eval/mean_ep_length", row["mean_length"])
        if result.successes is not None:
            self.logger.record("eval/success_rate", row["success_rate"])
        self.logger.dump(self.num_timesteps)
        if self.log is not None:
            self.log(f"eval at step {self.num_timesteps}: mean return {row['mean_return']:.3f}")
        return row


class CheckpointEveryCallback(BaseCallback):
    """Call ``save()`` at the first rollout start at or after every ``every`` env steps.

    A rollout start is the point where a checkpoint is consistent for both families: on-policy,
    the policy has just been updated and no rollout is half-collected; off-policy, every
    transition collected so far is in the replay buffer and the gradient steps are done.
    """

    def __init__(self, every: int, save: Callable[[], Any], last_step: int = 0) -> None:
        super().__init__()
        if every < 1:
            raise ValueError(f"checkpoint frequency must be >= 1 env step, got {every}")
        self.every = int(every)
        self.save = save
        self._next = (int(last_step) // self.every + 1) * self.every

    def _on_rollout_start(self) -> None:
        if self.model.num_timesteps >= self._next:
            self._next = (self.model.num_timesteps // self.every + 1) * self.every
            self.save()

    def _on_step(self) -> bool:
        return True


class ProgressCallback(BaseCallback):
    """Progress bar over env steps, and ``progress.json`` rewritten every ``every_s`` seconds."""

    def __init__(
        self, total: int, run_dir: str | Path, show: bool = True, every_s: float = 1.0, desc: str = "train"
    ) -> None:
        super().__init__()
        self.total = int(total)
        self.path = Path(run_dir) / PROGRESS_FILE
        self.show = show
        self.every_s = every_s
        self.desc = desc
        self._bar: tqdm | None = None
        self._last = 0.0

    def _on_training_start(self) -> None:
        # Redraw at most every 30 s when the output is a log file rather than a terminal.
        interval = 0.5 if sys.stderr.isatty() else 30.0
        self._bar = tqdm(
            total=self.total,
            initial=self.num_timesteps,
            desc=self.desc,
            unit="step",
            disable=not self.show,
            dynamic_ncols=True,
            mininterval=interval,
        )
        self._write()

    def _write(self) -> None:
        write_json_atomic(self.path, {"timesteps": int(self.num_timesteps), "total": self.total, "time": time.time()})
        self._last = time.monotonic()

    def _on_step(self) -> bool:
        if self._bar is not None:
            self._bar.update(self.num_timesteps - self._bar.n)
        if time.monotonic() - self._last >= self.every_s:
            self._write()
        return True

    def _on_training_end(self) -> None:
        self._write()
        if self._bar is not None:
            self._bar.update(self.num_timesteps - self._bar.n)
            self._bar.close()


class EvaluationRecorder:
    """Keeps every evaluation of a run and rewrites ``evaluations.csv`` atomically after each.

    Args:
        run_dir: the run directory.
        rows: evaluations already made (a resumed run's rows up to its checkpoint).
        wall_offset_s: seconds the run had already run (``wall_s`` continues from there).
    """

    def __init__(
        self, run_dir: str | Path, rows: list[dict[str, Any]] | None = None, wall_offset_s: float = 0.0
    ) -> None:
        self.path = Path(run_dir) / EVALUATIONS_FILE
        self.rows: list[dict[str, Any]] = list(rows or [])
        self._t0 = time.monotonic() - float(wall_offset_s)
        if self.rows:
            write_csv_atomic(self.path, EVAL_COLUMNS, self.rows)

    def add(
        self,
        timesteps: int,
        returns: list[float] | np.ndarray,
        lengths: list[int] | np.ndarray,
        successes: list[bool] | None = None,
    ) -> dict[str, Any]:
        """Record one evaluation (per-episode returns and lengths) and rewrite the CSV."""
        r = np.asarray(returns, dtype=np.float64)
        row = {
            "timesteps": int(timesteps),
            "mean_return": float(r.mean()),
            "std_return": float(r.std()),
            "mean_length": float(np.mean(lengths)),
            "success_rate": float(np.mean(successes)) if successes else "",
            "episodes": int(r.size),
            "wall_s": round(self.elapsed_s, 3),
            "returns": " ".join(f"{x:.6g}" for x in r),
        }
        self.rows.append(row)
        write_csv_atomic(self.path, EVAL_COLUMNS, self.rows)
        return row

    @property
    def elapsed_s(self) -> float:
        """Seconds since the run started (including earlier sessions of a resumed run)."""
        return time.monotonic() - self._t0

    @property
    def last_timesteps(self) -> int | None:
        """Env steps of the latest evaluation."""
        return self.rows[-1]["timesteps"] if self.rows else None


def read_evaluations(path: str | Path, up_to_step: int | None = None) -> list[dict[str, Any]]:
    """Rows of an ``evaluations.csv`` (typed as :class:`EvaluationRecorder` writes them), optionally
    only those with ``timesteps <= up_to_step``; ``[]`` when the file does not exist."""
    import csv

    path = Path(path)
    if not path.is_file():
        return []
    rows: list[dict[str, Any]] = []
    with open(path, newline="", encoding="utf-8") as f:
        for raw in csv.DictReader(f):
            row: dict[str, Any] = dict(raw)
            row["timesteps"] = int(raw["timesteps"])
            row["episodes"] = int(raw["episodes"])
            for key in ("mean_return", "std_return", "mean_length", "wall_s"):
                row[key] = float(raw[key])
            row["success_rate"] = float(raw["success_rate"]) if raw.get("success_rate") not in (None, "") else ""
            if up_to_step is None or row["timesteps"] <= up_to_step:
                rows.append(row)
    return rows
