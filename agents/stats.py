"""Aggregate a grid of agent runs (arms x seeds) with rliable's stratified bootstrap.

Scores are normalised to an external reference (:class:`agents.reference.ReferenceScores`):
``(R - zero_return) / (expert_return - zero_return)``, so 1 = the scripted expert and 0 = the
zero-action policy, both measured on the same evaluation episodes. A mode is never normalised by
its own (or another mode's) result.

What :func:`compare_runs` computes, per arm, with 95% percentile CIs (stratified bootstrap over
runs, reproducible from ``seed``):

* IQM, mean, median and optimality gap (w.r.t. 1 = expert) of the normalised final scores;
* a performance profile (fraction of runs with normalised final score > tau);
* the IQM sample-efficiency curve of normalised scores;
* env steps to ``threshold`` (0.8): the first evaluation after which the IQM curve stays
  ``>= threshold`` at every later evaluation (:func:`steps_to_stay_above`), plus per-run values;

and, per pair of arms, the probability of improvement; per ``repr*`` arm, the ratio of steps to
threshold ``pixels / repr`` (the study's headline) with a CI from resampling both arms.

Honesty rules the report follows are decided here (:func:`pair_verdict`): arms with fewer than
:data:`MIN_RUNS` runs are ``underpowered`` (no aggregate claim); two arms differ only when their
CIs are disjoint, and "X beats Y" on final score also needs the P(X > Y) CI to exclude 0.5.
"""

from __future__ import annotations

import csv
import math
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from agents.artifacts import DONE_FILE, EVALUATIONS_FILE, is_finished, read_json

#: Families of arm names, in report order (an arm's family is its name up to the first ``-``/``+``).
ARM_FAMILIES: tuple[str, ...] = ("repr", "pixels", "state")
#: Aggregate metrics of normalised final scores, in report order.
METRICS: tuple[str, ...] = ("IQM", "Mean", "Median", "Optimality gap")
#: Fewest runs of an arm for which the report makes aggregate claims (rliable's recommendation).
MIN_RUNS = 5
#: The study's headline: pixels need at least this many times the env steps of the representation.
HEADLINE_RATIO = 4.0
#: Stand-in for "never" inside bootstrap replicates (np.percentile cannot interpolate infinities);
#: any percentile above the budget (or above ``_BIG / 1e10`` for ratios) is mapped back to inf.
_BIG = 1e300


class Reference(Protocol):
    """What :func:`compare_runs` needs of a reference (``agents.reference.ReferenceScores``)."""

    expert_return: float
    zero_return: float
    source: str


# ---------------------------------------------------------------- runs


@dataclass
class RunRecord:
    """The evaluations of one finished run."""

    name: str
    """Run directory name (``<arm>_s<seed>``)."""
    obs: str
    """Agent observation mode (pixels, pixels+viewpoint, repr, state)."""
    seed: int
    """Seed."""
    timesteps: np.ndarray
    """Env steps of each evaluation (starts at 0)."""
    returns: np.ndarray
    """Mean evaluation return at each of ``timesteps``."""
    success: np.ndarray | None
    """Success rate at each evaluation, when the env reports ``is_success``."""
    done: dict
    """Contents of the run's done.json (timing, final numbers)."""
    path: Path | None = None
    """Run directory."""
    arm: str = ""
    """Comparison arm (done.json ``"arm"``); empty means the same as ``obs`` (runs made before arms)."""
    eval_episodes: int | None = None
    """Episodes behind each evaluation point (evaluations.csv ``episodes``), when recorded."""

    def __post_init__(self) -> None:
        if not self.arm:
            self.arm = self.obs


def read_evaluations(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(timesteps, mean_return, success_rate or None)`` from a run's evaluations.csv."""
    t, ret, succ, _ = _read_evaluation_rows(path)
    return t, ret, succ


def _read_evaluation_rows(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int | None]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: no evaluations")
    t = np.array([int(r["timesteps"]) for r in rows], dtype=np.int64)
    ret = np.array([float(r["mean_return"]) for r in rows], dtype=np.float64)
    succ = None
    if all(r.get("success_rate", "") not in ("", None) for r in rows):
        succ = np.array([float(r["success_rate"]) for r in rows])
    episodes = rows[-1].get("episodes")
    return t, ret, succ, (int(float(episodes)) if episodes not in ("", None) else None)


def arm_rank(arm: str) -> int:
    """Sort key of an arm: ``repr`` < ``repr-*`` < ``pixels`` < ``pixels*`` < ``state`` < ``state*`` < others."""
    family = re.split(r"[-+]", arm, maxsplit=1)[0]
    if family not in ARM_FAMILIES:
        return 2 * len(ARM_FAMILIES)
    return 2 * ARM_FAMILIES.index(family) + (arm != family)


def order_arms(arms: Sequence[str]) -> list[str]:
    """Unique arm names in report order (:func:`arm_rank`; ties keep their first-seen order)."""
    return sorted(dict.fromkeys(arms), key=arm_rank)


def load_runs(runs_dir: str | Path) -> list[RunRecord]:
    """Every finished run (``done.json`` present) under ``runs_dir``, sorted by arm and seed."""
    out = []
    for d in sorted(Path(runs_dir).iterdir()) if Path(runs_dir).is_dir() else []:
        if not (d.is_dir() and is_finished(d) and (d / EVALUATIONS_FILE).is_file()):
            continue
        done = read_json(d / DONE_FILE)
        t, r, s, episodes = _read_evaluation_rows(d / EVALUATIONS_FILE)
        arm = str(done.get("arm") or done["obs"])
        out.append(RunRecord(d.name, str(done["obs"]), int(done["seed"]), t, r, s, done, d, arm, episodes))
    arms = order_arms([r.arm for r in out])
    return sorted(out, key=lambda r: (arms.index(r.arm), r.seed))


# ---------------------------------------------------------------- point statistics


def iqm(x: np.ndarray, axis: int | None = None) -> np.ndarray:
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
    # P(x > y) + P(x == y) / 2 = (1 + E[sign(x - y)]) / 2, per task, in one reduction.
    return float(np.mean(0.5 + 0.5 * np.sign(x[:, None, :] - y[None, :, :]).mean(axis=(0, 1))))


def aggregate_metrics(x: np.ndarray) -> np.ndarray:
    """IQM, mean, median and optimality gap (gamma = 1 = expert) of normalised scores ``[runs, tasks]``.

    The median is over runs: with the study's single task, rliable's ``aggregate_median`` (median
    over tasks of the mean over runs) would just repeat the mean.
    """
    return np.array([iqm(x), np.mean(x), np.median(x), np.mean(np.maximum(1.0 - x, 0.0))])


def score_distribution(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """Fraction of run scores ``> tau`` for each tau (rliable's performance profile, vectorised)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    return (s[:, None] > np.asarray(taus, dtype=np.float64)[None, :]).mean(axis=0)


def steps_to_stay_above(grid: np.ndarray, curve: np.ndarray, level: float) -> float:
    """First grid step after which ``curve >= level`` holds at every later grid point (inf if never).

    A curve that crosses ``level`` and dips back below does not count until its last crossing; a
    curve above ``level`` only at the last evaluation counts there (no later evaluation
    contradicts it).
    """
    above = np.asarray(curve) >= level
    if not above.size or not above[-1]:
        return math.inf
    below = np.flatnonzero(~above)
    return float(np.asarray(grid)[below[-1] + 1 if below.size else 0])


def ratio_bounds(pixels_steps: float, repr_steps: float, budget: float) -> tuple[float, float]:
    """``(low, high)`` bounds of ``pixels_steps / repr_steps``, where inf steps mean "beyond ``budget``".

    Exact ratios give ``low == high``; pixels never reaching gives ``(budget / repr, inf)`` (more
    than that); repr never reaching gives ``(0, pixels / budget)``; both never, or both at step 0,
    give ``(0, inf)`` (undetermined); repr at step 0 and pixels later gives ``(inf, inf)``.
    """
    p, r = pixels_steps, repr_steps
    if math.isfinite(p) and math.isfinite(r):
        if r > 0:
            return p / r, p / r
        return (math.inf, math.inf) if p > 0 else (0.0, math.inf)
    if math.isfinite(r):  # pixels never reached: p > budget
        return (budget / r, math.inf) if r > 0 else (math.inf, math.inf)
    if math.isfinite(p):  # repr never reached: r > budget
        return 0.0, p / budget
    return 0.0, math.inf


# ---------------------------------------------------------------- bootstrap


def _rliable():
    from rliable import library as rly

    return rly


def _bootstrap_classes():
    """rliable's stratified bootstraps, drawing from their own generator.

    rliable 1.2.0 (and upstream master as of 2024) accepts ``random_state`` but draws resample
    indices from numpy's *global* RNG (``np.random.choice`` in ``update_indices``), so its CIs are
    not reproducible from ``random_state``. These subclasses change only that draw, to the
    generator arch keeps from the ``seed`` argument; everything else (strata, percentile CIs) is
    rliable's and arch's. With the same seed they reproduce rliable exactly (tested).
    """
    rly = _rliable()

    # ``randint(0, n, shape)`` is the very stream ``choice(n, shape, replace=True)`` draws, at half the cost.
    class SeededStratifiedBootstrap(rly.StratifiedBootstrap):
        def update_indices(self):
            indices = self.generator.randint(0, self._num_items, size=self._args_shape)
            return (indices, *self._strata_indices)

    class SeededStratifiedIndependentBootstrap(rly.StratifiedIndependentBootstrap):
        def _get_indices(self, num_runs, array_shape, strata_indices):
            return (self.generator.randint(0, num_runs, size=array_shape), *strata_indices)

    return SeededStratifiedBootstrap, SeededStratifiedIndependentBootstrap


def interval_estimates(
    score_dict: Mapping[str, np.ndarray | Sequence[np.ndarray]],
    func: Callable[..., np.ndarray],
    reps: int,
    random_state: np.random.RandomState,
    size: float = 0.95,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """rliable's ``get_interval_estimates`` (percentile CIs, stratified over runs) with a working ``random_state``.

    ``score_dict`` maps a key to scores ``[runs, tasks, ...]`` or to a list of such arrays (each
    resampled independently, e.g. for probability of improvement). Returns ``(points, intervals)``
    with ``intervals[key]`` of shape ``[2, ...]`` (low, high). Keys draw from ``random_state`` in
    dict order, as in rliable.
    """
    if not isinstance(random_state, np.random.RandomState):
        raise TypeError(f"random_state must be a numpy RandomState, not {type(random_state).__name__}")
    seeded, seeded_independent = _bootstrap_classes()
    points, intervals = {}, {}
    for key, scores in score_dict.items():
        if isinstance(scores, np.ndarray):
            bs = seeded(scores, seed=random_state)
            points[key] = func(scores)
        else:
            bs = seeded_independent(*scores, seed=random_state)
            points[key] = func(*scores)
        intervals[key] = bs.conf_int(func, reps=reps, size=size, method="percentile")
    return points, intervals


def random_state_for(seed: int, *labels: str) -> np.random.RandomState:
    """A RandomState derived from ``seed`` and labels (e.g. statistic and arm), so each statistic
    of each arm has its own reproducible stream, unchanged when other arms are added."""
    return np.random.RandomState([int(seed) & 0xFFFFFFFF] + [zlib.crc32(s.encode("utf-8")) for s in labels])


def _run_indices(n: int) -> np.ndarray:
    """``[n, 1]`` run indices: bootstrapping these resamples whole runs (whole curves), which
    statistics of a curve need; rliable resamples each time step of ``[runs, tasks, T]`` separately."""
    return np.arange(n, dtype=np.float64)[:, None]


def _rows(ix: np.ndarray) -> np.ndarray:
    return np.asarray(ix[:, 0], dtype=np.int64)


def _decode(v: float, limit: float) -> float:
    return math.inf if v > limit else float(v)


# ---------------------------------------------------------------- comparison


@dataclass(frozen=True)
class Ratio:
    """Ratio of env steps to threshold ``pixels / repr`` with a bootstrap CI; ends may be bounds."""

    point: tuple[float, float]
    """(low, high) bounds of the estimate from all runs (equal when exact; see :func:`ratio_bounds`)."""
    ci: tuple[float, float]
    """95% CI: 2.5th percentile of the replicates' low bounds, 97.5th of their high bounds (inf: unbounded)."""


@dataclass(frozen=True)
class PairVerdict:
    """What the report may say about arm ``x`` against arm ``y`` (see :func:`pair_verdict`)."""

    x: str
    """First arm."""
    y: str
    """Second arm."""
    final: str
    """Final normalised score: ``"x"`` / ``"y"`` (that arm beats the other), ``"none"`` (no
    significant difference at this budget) or ``"underpowered"`` (an arm has < MIN_RUNS runs)."""
    steps: str
    """Env steps to threshold: ``"x"`` / ``"y"`` (that arm got there in fewer steps), ``"none"``,
    ``"underpowered"``."""
    final_disjoint: bool
    """Whether the final-IQM CIs are disjoint."""


@dataclass
class Comparison:
    """Everything the report shows, computed from the runs."""

    arms: list[str]
    """Arms present, in report order."""
    runs: dict[str, list[RunRecord]]
    """Finished runs per arm."""
    grid: np.ndarray
    """Common env-step grid of the curves (union of evaluation steps up to the budget)."""
    curves: dict[str, np.ndarray]
    """Per arm: normalised scores ``[runs, T]`` on the grid (linear interpolation between evaluations)."""
    reference: Any
    """The reference object (``ReferenceScores``)."""
    expert_return: float
    """Raw return that normalises to 1."""
    zero_return: float
    """Raw return that normalises to 0."""
    reference_source: str
    """What the reference is (for the report)."""
    reference_episodes: int | None
    """Evaluation episodes behind the reference returns, when the reference says."""
    threshold: float
    """Normalised score of the headline metric (0.8)."""
    final: dict[str, np.ndarray]
    """Per arm: raw return of each run at the budget."""
    normalised_final: dict[str, np.ndarray]
    """Per arm: normalised final score of each run."""
    underpowered: dict[str, bool]
    """Per arm: fewer than MIN_RUNS runs (no aggregate claim)."""
    aggregates: dict[str, dict[str, tuple[float, float, float]]]
    """Per arm, per metric in ``METRICS``: (point, CI low, CI high) of normalised final scores."""
    final_iqm: dict[str, tuple[float, float, float]]
    """Per arm: IQM of raw final returns with its CI (the normalised IQM mapped back)."""
    profile_taus: np.ndarray
    """Normalised-score thresholds of the performance profiles."""
    profiles: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    """Per arm: fraction of runs with normalised final score > tau (point, CI low, CI high)."""
    curve_iqm: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    """Per arm: IQM normalised-score curve on the grid with a 95% CI band (point, low, high)."""
    steps_to_threshold: dict[str, tuple[float, float, float]]
    """Per arm: env steps after which the IQM curve stays >= threshold (inf: not within the budget), CI."""
    run_steps_to_threshold: dict[str, list[float]]
    """Per arm: the same rule on each run's own curve."""
    pairs: list[tuple[str, str]]
    """Ordered arm pairs (x, y) compared, headline pairs first."""
    improvement: dict[str, tuple[float, float, float]]
    """``"X,Y"`` -> probability that a run of X beats a run of Y (final normalised scores), with CI."""
    steps_ratio: dict[str, Ratio]
    """Per ``repr*`` arm (when ``pixels`` was run): env steps to threshold, pixels / that arm."""
    verdicts: dict[str, PairVerdict]
    """``"X,Y"`` -> what may be claimed about the pair."""
    budget: float
    """Last grid point (the env-step budget all runs reached)."""
    reps: int
    """Bootstrap replications."""
    seed: int
    """Bootstrap seed."""
    notes: list[str] = field(default_factory=list)
    """Caveats found while computing (few runs, differing budgets, ...)."""


def comparison_pairs(arms: Sequence[str]) -> list[tuple[str, str]]:
    """Ordered pairs ``(x, y)`` to compare: every ``repr*``/``pixels*`` arm vs ``pixels``, every
    ``repr`` arm vs ``repr-untrained``, then every other pair (in report order)."""
    arms = order_arms(arms)
    pairs: list[tuple[str, str]] = []
    if "pixels" in arms:
        pairs += [(a, "pixels") for a in arms if a != "pixels" and arm_rank(a) < arm_rank("state")]
    if "repr-untrained" in arms:
        pairs += [(a, "repr-untrained") for a in arms if arm_rank(a) <= arm_rank("repr-x") and a != "repr-untrained"]
    seen = set(pairs) | {(y, x) for x, y in pairs}
    pairs += [(a, b) for i, a in enumerate(arms) for b in arms[i + 1 :] if (a, b) not in seen]
    return pairs


def intervals_overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether closed intervals ``(.., low, high)`` (the last two entries) overlap; inf ends allowed."""
    (alo, ahi), (blo, bhi) = a[-2:], b[-2:]
    return not (ahi < blo or bhi < alo)


def pair_verdict(
    x: str,
    y: str,
    iqm_x: Sequence[float],
    iqm_y: Sequence[float],
    improvement_xy: Sequence[float],
    steps_x: Sequence[float],
    steps_y: Sequence[float],
    underpowered: bool,
) -> PairVerdict:
    """The claims allowed about arms x and y (each statistic given as (point, CI low, CI high)).

    Final score: "x beats y" only when the final-IQM CIs are disjoint with x above AND the CI of
    P(x > y) lies above 0.5 (and the mirror for y); otherwise no significant difference. Steps to
    threshold: an arm is faster only when the steps CIs are disjoint (inf = beyond the budget).
    Underpowered pairs get no claim.
    """
    disjoint = not intervals_overlap(iqm_x, iqm_y)
    if underpowered:
        return PairVerdict(x, y, "underpowered", "underpowered", disjoint)
    final = "none"
    if disjoint and iqm_x[1] > iqm_y[2] and improvement_xy[1] > 0.5:
        final = "x"
    elif disjoint and iqm_y[1] > iqm_x[2] and improvement_xy[2] < 0.5:
        final = "y"
    steps = "none"
    if not intervals_overlap(steps_x, steps_y):
        steps = "x" if steps_x[2] < steps_y[1] else "y"
    return PairVerdict(x, y, final, steps, disjoint)


def _check_reference(reference: Any) -> tuple[float, float, str, int | None]:
    if reference is None:
        raise ValueError(
            "compare_runs needs a reference (agents.reference.ReferenceScores: expert and zero-action returns "
            "on the evaluation episodes); scores are never normalised by an arm's own result"
        )
    try:
        expert, zero = float(reference.expert_return), float(reference.zero_return)
    except AttributeError as e:
        raise TypeError(
            f"reference must have expert_return, zero_return and source (a ReferenceScores), got {reference!r}"
        ) from e
    if not (math.isfinite(expert) and math.isfinite(zero)) or expert <= zero:
        raise ValueError(
            f"reference expert_return ({expert:.6g}) must be finite and above zero_return ({zero:.6g}): "
            "the expert must do better than the zero-action policy for a normalised score to mean anything"
        )
    seeds = getattr(reference, "seeds", None) or getattr(reference, "expert_returns", None)
    return expert, zero, str(getattr(reference, "source", "reference")), (len(seeds) if seeds else None)


def _final_statistics(
    normalised_final: dict[str, np.ndarray], zero: float, scale: float, reps: int, seed: int
) -> tuple[dict, dict, np.ndarray, dict]:
    """Per arm: aggregate metrics with CIs, the IQM in return units, and the performance profile
    (all from the same bootstrap resamples); returns ``(aggregates, final_iqm, taus, profiles)``."""
    all_final = np.concatenate(list(normalised_final.values()))
    taus = np.linspace(min(0.0, float(all_final.min())), max(1.0, float(all_final.max())) + 0.05, 101)
    k = len(METRICS)

    def final_stats(s: np.ndarray) -> np.ndarray:  # metrics and profile from the same resamples
        return np.concatenate([aggregate_metrics(s), score_distribution(s, taus)])

    aggregates, final_iqm, profiles = {}, {}, {}
    for a, scores in normalised_final.items():
        pt, ci = interval_estimates({a: scores[:, None]}, final_stats, reps, random_state_for(seed, "final", a))
        aggregates[a] = {m: (float(pt[a][i]), float(ci[a][0, i]), float(ci[a][1, i])) for i, m in enumerate(METRICS)}
        p, lo, hi = aggregates[a]["IQM"]
        final_iqm[a] = (zero + scale * p, zero + scale * lo, zero + scale * hi)  # IQM is affine-equivariant
        profiles[a] = (pt[a][k:], ci[a][0, k:], ci[a][1, k:])
    return aggregates, final_iqm, taus, profiles


def _curve_statistics(
    curves: dict[str, np.ndarray], grid: np.ndarray, threshold: float, budget: float, reps: int, seed: int
) -> tuple[dict, dict]:
    """Per arm: the IQM curve with its band and the steps to stay above ``threshold`` with its CI,
    from the same resamples of whole runs; returns ``(curve_iqm, steps_to_threshold)``."""

    def curve_stats(c: np.ndarray) -> np.ndarray:
        m = iqm(c, axis=0)
        s = steps_to_stay_above(grid, m, threshold)
        return np.concatenate([m, [s if math.isfinite(s) else _BIG]])

    curve_iqm, steps_to_threshold = {}, {}
    for a, c in curves.items():
        pt, ci = interval_estimates(
            {a: _run_indices(len(c))},
            lambda ix, c=c: curve_stats(c[_rows(ix)]),
            reps,
            random_state_for(seed, "curve", a),
        )
        curve_iqm[a] = (pt[a][:-1], ci[a][0, :-1], ci[a][1, :-1])
        steps_to_threshold[a] = (
            _decode(pt[a][-1], budget),
            _decode(ci[a][0, -1], budget),
            _decode(ci[a][1, -1], budget),
        )
    return curve_iqm, steps_to_threshold


def _improvements(
    normalised_final: dict[str, np.ndarray], pairs: list[tuple[str, str]], reps: int, seed: int
) -> dict[str, tuple[float, float, float]]:
    """``"X,Y"`` -> P(a run of X beats a run of Y) on final normalised scores, with its CI."""
    improvement = {}
    for x, y in pairs:
        key = f"{x},{y}"
        pt, ci = interval_estimates(
            {key: [normalised_final[x][:, None], normalised_final[y][:, None]]},
            lambda a, b: np.array([probability_of_improvement(a, b)]),
            reps,
            random_state_for(seed, "improvement", key),
        )
        improvement[key] = (float(np.ravel(pt[key])[0]), float(np.ravel(ci[key][0])[0]), float(np.ravel(ci[key][1])[0]))
    return improvement


def _steps_ratios(
    curves: dict[str, np.ndarray], grid: np.ndarray, threshold: float, budget: float, reps: int, seed: int
) -> dict[str, Ratio]:
    """Per repr arm: pixels' steps to ``threshold`` over the arm's, with a CI (both arms resampled)."""
    if "pixels" not in curves:
        return {}
    cp = curves["pixels"]
    steps_ratio = {}
    for a in (a for a in curves if arm_rank(a) <= arm_rank("repr-x")):
        cr = curves[a]

        def ratio(ip: np.ndarray, ir: np.ndarray, cr: np.ndarray = cr) -> np.ndarray:
            p = steps_to_stay_above(grid, iqm(cp[_rows(ip)], axis=0), threshold)
            r = steps_to_stay_above(grid, iqm(cr[_rows(ir)], axis=0), threshold)
            return np.minimum(np.array(ratio_bounds(p, r, budget)), _BIG)

        pt, ci = interval_estimates(
            {a: [_run_indices(len(cp)), _run_indices(len(cr))]}, ratio, reps, random_state_for(seed, "ratio", a)
        )
        lim = _BIG / 1e10
        point = (_decode(pt[a][0], lim), _decode(pt[a][1], lim))
        steps_ratio[a] = Ratio(point, (_decode(ci[a][0, 0], lim), _decode(ci[a][1, 1], lim)))
    return steps_ratio


def compare_runs(
    runs: list[RunRecord],
    reference: Reference | Any,
    threshold: float = 0.8,
    reps: int = 2_000,
    seed: int = 0,
) -> Comparison:
    """Aggregate finished runs of several arms against ``reference`` (see the module doc).

    ``reference`` is an ``agents.reference.ReferenceScores`` (or any object with
    ``expert_return``, ``zero_return`` and ``source``); ``threshold`` is the normalised score of
    the steps-to-threshold metric; ``reps`` bootstrap replications drawn reproducibly from ``seed``.
    """
    expert, zero, source, ref_episodes = _check_reference(reference)
    if not runs:
        raise ValueError("no finished runs to compare")
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    arms = order_arms([r.arm for r in runs])
    by_arm = {a: [r for r in runs if r.arm == a] for a in arms}
    notes: list[str] = []
    small = [a for a in arms if len(by_arm[a]) < MIN_RUNS]
    if small:
        notes.append(
            f"fewer than {MIN_RUNS} runs in {', '.join(f'{a} ({len(by_arm[a])})' for a in small)}: "
            "no aggregate claim is made for these arms (rliable recommends at least 5 seeds)"
        )
    underpowered = {a: len(by_arm[a]) < MIN_RUNS for a in arms}

    ends = sorted({float(r.timesteps[-1]) for r in runs})
    budget = ends[0]
    if len(ends) > 1:
        notes.append(
            f"runs ended at different env steps ({', '.join(f'{e:g}' for e in ends)}): all are compared at {budget:g}"
        )
    grid = np.unique(np.concatenate([r.timesteps for r in runs])).astype(np.float64)
    grid = grid[grid <= budget]
    if grid.size == 0 or grid[0] != 0:
        grid = np.concatenate([[0.0], grid])
    scale = expert - zero
    curves = {a: (np.stack([np.interp(grid, r.timesteps, r.returns) for r in by_arm[a]]) - zero) / scale for a in arms}
    normalised_final = {a: curves[a][:, -1].copy() for a in arms}
    final = {a: zero + scale * normalised_final[a] for a in arms}
    episodes = {r.eval_episodes for r in runs if r.eval_episodes is not None}
    if ref_episodes is not None and episodes and episodes != {ref_episodes}:
        notes.append(
            f"runs were evaluated on {', '.join(map(str, sorted(episodes)))} episodes per point but the reference on "
            f"{ref_episodes}: the normalisation compares different episode sets"
        )

    aggregates, final_iqm, taus, profiles = _final_statistics(normalised_final, zero, scale, reps, seed)
    curve_iqm, steps_to_threshold = _curve_statistics(curves, grid, threshold, budget, reps, seed)
    run_steps = {a: [steps_to_stay_above(grid, c, threshold) for c in curves[a]] for a in arms}
    pairs = comparison_pairs(arms)
    improvement = _improvements(normalised_final, pairs, reps, seed)
    steps_ratio = _steps_ratios(curves, grid, threshold, budget, reps, seed)

    verdicts = {
        f"{x},{y}": pair_verdict(
            x,
            y,
            aggregates[x]["IQM"],
            aggregates[y]["IQM"],
            improvement[f"{x},{y}"],
            steps_to_threshold[x],
            steps_to_threshold[y],
            underpowered[x] or underpowered[y],
        )
        for x, y in pairs
    }
    if "state" in arms and not underpowered["state"] and not math.isfinite(steps_to_threshold["state"][0]):
        notes.append(
            f"the state agent's IQM did not stay >= {threshold:g} within {budget:g} env steps: the budget may be too "
            "small for any arm to reach the threshold"
        )

    return Comparison(
        arms=arms,
        runs=by_arm,
        grid=grid,
        curves=curves,
        reference=reference,
        expert_return=expert,
        zero_return=zero,
        reference_source=source,
        reference_episodes=ref_episodes,
        threshold=threshold,
        final=final,
        normalised_final=normalised_final,
        underpowered=underpowered,
        aggregates=aggregates,
        final_iqm=final_iqm,
        profile_taus=taus,
        profiles=profiles,
        curve_iqm=curve_iqm,
        steps_to_threshold=steps_to_threshold,
        run_steps_to_threshold=run_steps,
        pairs=pairs,
        improvement=improvement,
        steps_ratio=steps_ratio,
        verdicts=verdicts,
        budget=budget,
        reps=reps,
        seed=seed,
        notes=notes,
    )
