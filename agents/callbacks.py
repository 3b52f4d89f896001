"""SB3 callbacks of a training run: progress (tqdm + progress.json) and the evaluation record.

SB3's own progress bar needs ``rich``; this one uses tqdm, and also writes the step count to
``progress.json`` so that ``wm agent compare`` can show the progress of a whole grid of runs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
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


def episode_success(info: dict) -> "bool | None":
    """Success flag of a finished episode from its last info (``None`` if the env has none)."""
    for key in SUCCESS_KEYS:
        if info.get(key) is not None:
            return bool(info[key])
    return None


class SuccessEvalCallback(EvalCallback):
    """SB3's EvalCallback with two additions.

    * ``info["success"]`` (the toolkit's Jaco env) counts as success, like ``info["is_success"]``;
    * with ``eval_seed``, the evaluation env is reseeded before every evaluation, so every
      evaluation of every run plays the same episodes (common random numbers: differences between
      evaluations come from the policies, not from which targets were drawn).
    """

    def __init__(self, *args: Any, eval_seed: "int | None" = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.eval_seed = eval_seed

    def _on_step(self) -> bool:
        if self.eval_seed is not None and self.eval_freq > 0 and self.n_calls % self.eval_freq == 0:
            self.eval_env.seed(self.eval_seed)  # applied at evaluate_policy's reset
        return super()._on_step()

    def _log_success_callback(self, locals_: dict[str, Any], globals_: dict[str, Any]) -> None:
        if locals_["done"]:
            flag = episode_success(locals_["info"])
            if flag is not None:
                self._is_success_buffer.append(flag)


class ProgressCallback(BaseCallback):
    """Progress bar over env steps, and ``progress.json`` rewritten every ``every_s`` seconds."""

    def __init__(self, total: int, run_dir: "str | Path", show: bool = True, every_s: float = 1.0, desc: str = "train") -> None:
        super().__init__()
        self.total = int(total)
        self.path = Path(run_dir) / PROGRESS_FILE
        self.show = show
        self.every_s = every_s
        self.desc = desc
        self._bar: "tqdm | None" = None
        self._last = 0.0

    def _on_training_start(self) -> None:
        # Redraw at most every 30 s when the output is a log file rather than a terminal.
        interval = 0.5 if sys.stderr.isatty() else 30.0
        self._bar = tqdm(total=self.total, desc=self.desc, unit="step", disable=not self.show, dynamic_ncols=True, mininterval=interval)
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
    """Keeps every evaluation of a run and rewrites ``evaluations.csv`` atomically after each."""

    def __init__(self, run_dir: "str | Path") -> None:
        self.path = Path(run_dir) / EVALUATIONS_FILE
        self.rows: list[dict[str, Any]] = []
        self._t0 = time.monotonic()

    def add(self, timesteps: int, returns: "list[float] | np.ndarray", lengths: "list[int] | np.ndarray", successes: "list[bool] | None" = None) -> dict[str, Any]:
        """Record one evaluation (per-episode returns and lengths) and rewrite the CSV."""
        r = np.asarray(returns, dtype=np.float64)
        row = {
            "timesteps": int(timesteps),
            "mean_return": float(r.mean()),
            "std_return": float(r.std()),
            "mean_length": float(np.mean(lengths)),
            "success_rate": float(np.mean(successes)) if successes else "",
            "episodes": int(r.size),
            "wall_s": round(time.monotonic() - self._t0, 3),
            "returns": " ".join(f"{x:.6g}" for x in r),
        }
        self.rows.append(row)
        write_csv_atomic(self.path, EVAL_COLUMNS, self.rows)
        return row

    @property
    def last_timesteps(self) -> "int | None":
        """Env steps of the latest evaluation."""
        return self.rows[-1]["timesteps"] if self.rows else None


class RecordAfterEval(BaseCallback):
    """``callback_after_eval`` of SB3's EvalCallback: copies its latest evaluation to the recorder."""

    def __init__(self, recorder: EvaluationRecorder) -> None:
        super().__init__()
        self.recorder = recorder

    def _on_step(self) -> bool:
        parent = self.parent  # the EvalCallback
        assert parent is not None
        successes = list(parent._is_success_buffer) if parent._is_success_buffer else None
        self.recorder.add(parent.num_timesteps, parent.evaluations_results[-1], parent.evaluations_length[-1], successes)
        return True
