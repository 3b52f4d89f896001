"""Aggregate a grid of agent runs with rliable: IQM, mean, median, optimality gap, probability of
improvement, sample-efficiency curves (stratified bootstrap 95% CIs), and the headline metric:
env steps each observation mode needs to reach a fraction of the state agent's final return.

Scores are normalised per run as ``(R - R_untrained) / (R_state - R_untrained)``: 0 is the
untrained policy (mean of every run's step-0 evaluation), 1 the state agent's final IQM
return (or the best mode's when ``state`` was not run, or a given reference). The optimality gap
is measured against 1 (the state agent's level); the headline threshold 0.9 means "90% of the
way from an untrained policy to the state agent's final return", which equals 90% of the state
agent's return when untrained policies score 0.
"""

from __future__ import annotations

import contextlib
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from agents.artifacts import DONE_FILE, EVALUATIONS_FILE, is_finished, read_json

#: Order in which modes are shown and paired (the representation first: it is under study).
MODE_ORDER: tuple[str, ...] = ("repr", "pixels", "state")
#: Aggregate metrics of normalised final scores, in report order.
METRICS: tuple[str, ...] = ("IQM", "Mean", "Median", "Optimality gap")


@dataclass
class RunRecord:
    """The evaluations of one finished run."""

    name: str
    """Run directory name (``<obs>_s<seed>``)."""
    obs: str
    """Observation mode."""
    seed: int
    """Seed."""
    timesteps: np.ndarray
    """Env steps of each evaluation (starts at 0)."""
    returns: np.ndarray
    """Mean evaluation return at each of ``timesteps``."""
    success: "np.ndarray | None"
    """Success rate at each evaluation, when the env reports ``is_success``."""
    done: dict
    """Contents of the run's done.json (timing, final numbers)."""
    path: "Path | None" = None
    """Run directory."""


def read_evaluations(path: "str | Path") -> tuple[np.ndarray, np.ndarray, "np.ndarray | None"]:
    """``(timesteps, mean_return, success_rate or None)`` from a run's evaluations.csv."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: no evaluations")
    t = np.array([int(r["timesteps"]) for r in rows], dtype=np.int64)
    ret = np.array([float(r["mean_return"]) for r in rows], dtype=np.float64)
    succ = None
    if all(r.get("success_rate", "") not in ("", None) for r in rows):
        succ = np.array([float(r["success_rate"]) for r in rows])
    return t, ret, succ


def load_runs(runs_dir: "str | Path") -> list[RunRecord]:
    """Every finished run (``done.json`` present) under ``runs_dir``, sorted by mode and seed."""
    out = []
    for d in sorted(Path(runs_dir).iterdir()) if Path(runs_dir).is_dir() else []:
        if not (d.is_dir() and is_finished(d) and (d / EVALUATIONS_FILE).is_file()):
            continue
        done = read_json(d / DONE_FILE)
        t, r, s = read_evaluations(d / EVALUATIONS_FILE)
        out.append(RunRecord(d.name, str(done["obs"]), int(done["seed"]), t, r, s, done, d))
    return sorted(out, key=lambda r: (_mode_rank(r.obs), r.seed))


def _mode_rank(mode: str) -> int:
    return MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER)


@contextlib.contextmanager
def _seeded_numpy(seed: int) -> Iterator[None]:
    """rliable's bootstrap draws from numpy's global RNG: seed it, then restore the old state."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def iqm(x: np.ndarray, axis: "int | None" = None) -> np.ndarray:
    """Interquartile mean: ``scipy.stats.trim_mean(x, 0.25, axis)`` (rliable's ``aggregate_iqm``).

    Written out because the bootstrap calls it thousands of times and scipy's wrapper costs ~1 ms
    per call; the result is identical (tested against scipy).
    """
    a = np.asarray(x, dtype=np.float64)
    if axis is None:
        a, axis = a.reshape(-1), 0
    n = a.shape[axis]
    cut = int(0.25 * n)
    a = np.sort(a, axis=axis)
    return np.take(a, np.arange(cut, n - cut), axis=axis).mean(axis=axis)


def probability_of_improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """P(X > Y) of a random run of X over one of Y (ties count 1/2), averaged over tasks.

    Equals rliable's ``metrics.probability_of_improvement`` (Mann-Whitney U / (n m)) without
    scipy's per-call overhead (tested against rliable).
    """
    x, y = np.asarray(scores_x, dtype=np.float64), np.asarray(scores_y, dtype=np.float64)
    gt = (x[:, None, :] > y[None, :, :]).mean(axis=(0, 1))
    eq = (x[:, None, :] == y[None, :, :]).mean(axis=(0, 1))
    return float(np.mean(gt + 0.5 * eq))


def _aggregate_metrics(x: np.ndarray) -> np.ndarray:
    """IQM, mean, median and optimality gap (gamma = 1) of normalised scores ``[runs, tasks]``."""
    return np.array([iqm(x), np.mean(x), np.median(np.mean(x, axis=-2)), np.mean(np.maximum(1.0 - x, 0.0))])


def first_crossing(grid: np.ndarray, curve: np.ndarray, level: float) -> float:
    """First grid value where ``curve >= level`` (``inf`` if never)."""
    hit = np.flatnonzero(curve >= level)
    return float(grid[hit[0]]) if hit.size else math.inf


@dataclass
class Comparison:
    """Everything the report shows, computed from the runs."""

    modes: list[str]
    """Observation modes present, in report order."""
    runs: dict[str, list[RunRecord]]
    """Finished runs per mode."""
    grid: np.ndarray
    """Common env-step grid of the curves."""
    curves: dict[str, np.ndarray]
    """Per mode: returns ``[runs, T]`` on the grid (linear interpolation between evaluations)."""
    baseline: float
    """Untrained return: mean of all runs' step-0 evaluations."""
    reference: float
    """Return that normalises to 1 (state agent's final IQM unless given)."""
    reference_source: str
    """What ``reference`` is (for the report)."""
    scale: float
    """Normalisation scale: ``reference - baseline`` (1 when they coincide)."""
    threshold: float
    """Fraction of the way from baseline to reference for the headline metric."""
    threshold_return: float
    """``baseline + threshold * (reference - baseline)``."""
    final: dict[str, np.ndarray]
    """Per mode: final mean evaluation return of each run."""
    normalised_final: dict[str, np.ndarray]
    """Per mode: normalised final scores."""
    aggregates: dict[str, dict[str, tuple[float, float, float]]]
    """Per mode, per metric in ``METRICS``: (point, CI low, CI high) of normalised final scores."""
    final_iqm: dict[str, tuple[float, float, float]]
    """Per mode: IQM of raw final returns with its CI."""
    curve_iqm: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    """Per mode: IQM return curve on the grid with CI band (point, low, high)."""
    improvement: dict[str, tuple[float, float, float]]
    """``"X,Y"`` -> probability that a run of X beats a run of Y (final scores), with CI."""
    steps_to_threshold: dict[str, tuple[float, float, float]]
    """Per mode: env steps at which the IQM curve first reaches ``threshold_return`` (inf: never), CI."""
    run_steps_to_threshold: dict[str, list[float]]
    """Per mode: the same per run."""
    budget: float
    """Last grid point (the env-step budget all runs reached)."""
    reps: int
    """Bootstrap replications."""
    notes: list[str] = field(default_factory=list)
    """Caveats found while computing (few seeds, degenerate normalisation, ...)."""


def _interp_curves(runs: list[RunRecord], grid: np.ndarray) -> np.ndarray:
    return np.stack([np.interp(grid, r.timesteps, r.returns) for r in runs])


def _ci(score_dict: dict, func: Callable, reps: int, seed: int) -> tuple[dict, dict]:
    """Point estimates and stratified-bootstrap 95% CIs (rliable's ``get_interval_estimates``)."""
    from rliable import library as rly

    with _seeded_numpy(seed):
        return rly.get_interval_estimates(score_dict, func, reps=reps)


def compare_runs(
    runs: list[RunRecord],
    threshold: float = 0.9,
    reference: "float | None" = None,
    reps: int = 2_000,
    seed: int = 0,
) -> Comparison:
    """Aggregate finished runs of several observation modes (see module doc for the normalisation)."""
    if not runs:
        raise ValueError("no finished runs to compare")
    by_mode: dict[str, list[RunRecord]] = {}
    for r in runs:
        by_mode.setdefault(r.obs, []).append(r)
    modes = sorted(by_mode, key=_mode_rank)
    notes: list[str] = []
    if min(len(v) for v in by_mode.values()) < 5:
        notes.append(
            f"only {min(len(v) for v in by_mode.values())} run(s) in the smallest group: confidence intervals are wide and "
            "rliable recommends at least 5 seeds for conclusions"
        )

    budget = float(min(r.timesteps[-1] for r in runs))
    grid = np.unique(np.concatenate([r.timesteps for r in runs]))
    grid = grid[grid <= budget].astype(np.float64)
    if grid.size == 0 or grid[0] != 0:
        grid = np.concatenate([[0.0], grid])
    curves = {m: _interp_curves(by_mode[m], grid) for m in modes}
    final = {m: np.array([r.returns[-1] for r in by_mode[m]]) for m in modes}
    baseline = float(np.mean([r.returns[0] for r in runs]))

    if reference is not None:
        ref, source = float(reference), "given reference return"
    elif "state" in final:
        ref, source = float(iqm(final["state"])), "IQM final return of the state agent"
    else:
        best = max(modes, key=lambda m: float(iqm(final[m])))
        ref, source = float(iqm(final[best])), f"IQM final return of the best mode ({best}; no state runs)"
    scale = ref - baseline
    noise = float(np.std([r.returns[0] for r in runs]))
    if reference is None and "state" in final and scale < 2.0 * noise:
        notes.append(
            f"the state agent barely improved on an untrained policy ({ref:.4g} vs {baseline:.4g}, step-0 spread "
            f"{noise:.3g}): the budget is too small for this task and the comparison is inconclusive"
        )
    if abs(scale) < 1e-8:
        notes.append("the reference return equals the untrained return: normalised scores use a unit scale instead")
        scale = 1.0
    elif scale < 0:
        notes.append("the reference agent ended below the untrained policy: normalised scores are not meaningful")

    def norm(x: np.ndarray) -> np.ndarray:
        return (x - baseline) / scale

    normalised_final = {m: norm(final[m]) for m in modes}
    threshold_return = baseline + threshold * scale

    pts, cis = _ci({m: normalised_final[m][:, None] for m in modes}, _aggregate_metrics, reps, seed)
    aggregates = {m: {name: (float(pts[m][i]), float(cis[m][0, i]), float(cis[m][1, i])) for i, name in enumerate(METRICS)} for m in modes}
    pts, cis = _ci({m: final[m][:, None] for m in modes}, lambda x: np.array([iqm(x)]), reps, seed)
    final_iqm = {m: (float(pts[m][0]), float(cis[m][0, 0]), float(cis[m][1, 0])) for m in modes}

    pts, cis = _ci({m: curves[m][:, None, :] for m in modes}, lambda s: iqm(s[:, 0, :], axis=0), reps, seed)
    curve_iqm = {m: (np.asarray(pts[m]), np.asarray(cis[m][0]), np.asarray(cis[m][1])) for m in modes}

    # Steps to threshold of the IQM curve; "never" is encoded as twice the budget inside the
    # bootstrap (percentiles of inf are undefined) and mapped back to inf.
    never = 2.0 * max(budget, 1.0)

    def steps(s: np.ndarray) -> np.ndarray:
        hit = first_crossing(grid, iqm(s[:, 0, :], axis=0), threshold_return)
        return np.array([hit if math.isfinite(hit) else never])

    pts, cis = _ci({m: curves[m][:, None, :] for m in modes}, steps, reps, seed)

    def back(v: float) -> float:
        return math.inf if v > budget else float(v)

    steps_to_threshold = {m: (back(pts[m][0]), back(cis[m][0, 0]), back(cis[m][1, 0])) for m in modes}
    run_steps = {m: [first_crossing(grid, c, threshold_return) for c in curves[m]] for m in modes}

    pairs = [f"{a},{b}" for a in modes for b in modes if _mode_rank(a) < _mode_rank(b)]
    improvement = {}
    if pairs:
        pts, cis = _ci(
            {p: [normalised_final[p.split(",")[0]][:, None], normalised_final[p.split(",")[1]][:, None]] for p in pairs},
            probability_of_improvement,
            reps,
            seed,
        )
        # rliable returns the point as shape () or (1,) and the interval as [2] or [2, 1].
        improvement = {
            p: (float(np.ravel(pts[p])[0]), float(np.ravel(cis[p][0])[0]), float(np.ravel(cis[p][1])[0])) for p in pairs
        }

    return Comparison(
        modes=modes,
        runs={m: by_mode[m] for m in modes},
        grid=grid,
        curves=curves,
        baseline=baseline,
        reference=ref,
        reference_source=source,
        scale=scale,
        threshold=threshold,
        threshold_return=threshold_return,
        final=final,
        normalised_final=normalised_final,
        aggregates=aggregates,
        final_iqm=final_iqm,
        curve_iqm=curve_iqm,
        improvement=improvement,
        steps_to_threshold=steps_to_threshold,
        run_steps_to_threshold=run_steps,
        budget=budget,
        reps=reps,
        notes=notes,
    )
