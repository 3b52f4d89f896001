"""agents.stats: aggregation against rliable/scipy, reproducible bootstrap CIs, the stays-above
threshold rule, censored steps ratios, arms and pairs, and the verdict rules the report follows."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
from scipy.stats import trim_mean

from agents.stats import (
    MIN_RUNS,
    RunRecord,
    compare_runs,
    comparison_pairs,
    interval_estimates,
    iqm,
    load_runs,
    order_arms,
    pair_verdict,
    probability_of_improvement,
    ratio_bounds,
    score_distribution,
    steps_to_stay_above,
)


@dataclass(frozen=True)
class Ref:
    """Stand-in with the attributes of agents.reference.ReferenceScores that compare_runs reads."""

    expert_return: float = 10.0
    zero_return: float = 2.0
    source: str = "test expert"
    seeds: tuple[int, ...] = tuple(range(1_000_000, 1_000_030))


T = np.arange(0, 1001, 100)


def run(arm: str, seed: int, normalised: np.ndarray, ref: Ref = Ref(), t: np.ndarray = T) -> RunRecord:
    """A run whose curve has the given normalised scores (returns = zero + score * (expert - zero))."""
    returns = ref.zero_return + np.asarray(normalised, dtype=float) * (ref.expert_return - ref.zero_return)
    return RunRecord(f"{arm}_s{seed}", arm.split("-")[0].split("+")[0], seed, t, returns, None, {}, arm=arm)


def test_fast_statistics_match_rliable_and_scipy():
    from rliable import metrics

    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 5, 8):
        x, y = rng.normal(size=(n, 1)), rng.normal(size=(n + 2, 1))
        y[0] = x[0]  # a tie
        assert iqm(x) == pytest.approx(metrics.aggregate_iqm(x))
        assert probability_of_improvement(x, y) == pytest.approx(metrics.probability_of_improvement(x, y))
        z = rng.normal(size=(n, 7))
        np.testing.assert_allclose(iqm(z, axis=0), trim_mean(z, 0.25, axis=0))
    # by hand: the middle half of 1..8 is 3..6
    assert iqm(np.arange(1, 9)) == pytest.approx(4.5)


def test_interval_estimates_reproduce_rliable_and_are_seeded():
    from rliable import library as rly

    rng = np.random.default_rng(1)
    scores = {"a": rng.normal(size=(7, 1)), "b": rng.normal(1.0, size=(5, 1))}

    def func(s):
        return np.array([iqm(s), np.mean(s)])

    # rliable draws from the global RNG whatever random_state says; seeded the same way it is the same estimator
    np.random.seed(7)
    pts_r, cis_r = rly.get_interval_estimates(scores, func, reps=300)
    pts, cis = interval_estimates(scores, func, 300, np.random.RandomState(7))
    for k in scores:
        np.testing.assert_allclose(pts[k], pts_r[k])
        np.testing.assert_allclose(cis[k], cis_r[k])

    # independent resampling of two arrays (probability of improvement) reproduces rliable too
    pair = {"a,b": [scores["a"], scores["b"]]}

    def poi(x, y):
        return np.array([probability_of_improvement(x, y)])

    np.random.seed(3)
    _, ci_r = rly.get_interval_estimates(pair, poi, reps=300)
    _, ci = interval_estimates(pair, poi, 300, np.random.RandomState(3))
    np.testing.assert_allclose(np.ravel(ci["a,b"]), np.ravel(ci_r["a,b"]))

    # the seed decides the CI, not the global RNG
    np.random.seed(123)
    _, c1 = interval_estimates(scores, func, 300, np.random.RandomState(5))
    np.random.seed(456)
    _, c2 = interval_estimates(scores, func, 300, np.random.RandomState(5))
    _, c3 = interval_estimates(scores, func, 300, np.random.RandomState(6))
    np.testing.assert_array_equal(c1["a"], c2["a"])
    assert not np.array_equal(c1["a"], c3["a"])
    with pytest.raises(TypeError, match="RandomState"):
        interval_estimates(scores, func, 10, 5)


def test_iqm_ci_contains_point_and_shrinks_with_more_runs():
    rng = np.random.default_rng(2)
    widths = []
    for n in (6, 60):
        x = rng.normal(0.5, 0.2, size=(n, 1))
        pt, ci = interval_estimates({"a": x}, lambda s: np.array([iqm(s)]), 1000, np.random.RandomState(0))
        assert pt["a"][0] == pytest.approx(trim_mean(x.ravel(), 0.25))
        assert ci["a"][0, 0] <= pt["a"][0] <= ci["a"][1, 0]
        widths.append(ci["a"][1, 0] - ci["a"][0, 0])
    assert widths[1] < 0.6 * widths[0]


def test_steps_to_stay_above_ignores_crossings_that_dip_back():
    grid = np.array([0, 10, 20, 30, 40, 50])
    assert steps_to_stay_above(grid, np.array([0, 0.9, 0.5, 0.85, 0.8, 0.95]), 0.8) == 30  # crosses at 10, dips at 20
    assert steps_to_stay_above(grid, np.array([0.9, 0.9, 0.9, 0.9, 0.9, 0.9]), 0.8) == 0
    assert steps_to_stay_above(grid, np.array([0, 0.9, 0.9, 0.9, 0.9, 0.7]), 0.8) == math.inf  # dips at the end
    assert steps_to_stay_above(grid, np.array([0, 0, 0, 0, 0, 0.8]), 0.8) == 50  # >= counts; last point only
    assert steps_to_stay_above(grid, np.zeros(6), 0.8) == math.inf


def test_ratio_bounds_are_honest_about_never():
    assert ratio_bounds(400, 100, 1000) == (4.0, 4.0)
    assert ratio_bounds(math.inf, 100, 1000) == (10.0, math.inf)  # pixels > budget: ratio > 1000/100
    assert ratio_bounds(500, math.inf, 1000) == (0.0, 0.5)
    assert ratio_bounds(math.inf, math.inf, 1000) == (0.0, math.inf)
    assert ratio_bounds(300, 0, 1000) == (math.inf, math.inf)


def test_arm_order_pairs_and_load_runs(tmp_path):
    shuffled = ["state", "zeta", "pixels+viewpoint", "repr-untrained", "pixels", "repr-niso", "repr", "alpha"]
    assert order_arms(shuffled) == [
        "repr",
        "repr-untrained",
        "repr-niso",
        "pixels",
        "pixels+viewpoint",
        "state",
        "zeta",
        "alpha",
    ]
    pairs = comparison_pairs(shuffled)
    for need in [
        ("repr", "pixels"),
        ("repr-niso", "pixels"),
        ("repr-untrained", "pixels"),
        ("pixels+viewpoint", "pixels"),
        ("repr", "repr-untrained"),
        ("repr-niso", "repr-untrained"),
    ]:
        assert need in pairs
    unordered = {frozenset(p) for p in pairs}
    assert len(unordered) == len(pairs) == 8 * 7 // 2  # every pair once

    runs_dir = tmp_path / "runs"
    for name, done in [
        ("repr-niso_s0", {"obs": "repr", "arm": "repr-niso", "seed": 0}),
        ("pixels_s1", {"obs": "pixels", "seed": 1}),  # before arms: arm = obs
        ("repr_s0", {"obs": "repr", "arm": "repr", "seed": 0}),
    ]:
        d = runs_dir / name
        d.mkdir(parents=True)
        (d / "evaluations.csv").write_text("timesteps,mean_return,episodes\n0,1.0,30\n100,2.5,30\n")
        (d / "done.json").write_text(json.dumps(done))
    (runs_dir / "repr_s1").mkdir()  # unfinished: no done.json
    runs = load_runs(runs_dir)
    assert [(r.arm, r.obs, r.seed) for r in runs] == [
        ("repr", "repr", 0),
        ("repr-niso", "repr", 0),
        ("pixels", "pixels", 1),
    ]
    assert runs[0].eval_episodes == 30 and runs[0].returns.tolist() == [1.0, 2.5]


def test_compare_runs_normalises_to_the_reference_and_reads_the_headline():
    ref = Ref()
    runs = []
    for s in range(MIN_RUNS):
        runs.append(run("state", s, np.minimum(T / 300, 1.0)))
        # repr crosses 0.8 at 400, dips at 500, stays above from 600 (same for every run)
        runs.append(run("repr", s, np.array([0, 0.2, 0.4, 0.6, 0.85, 0.7, 0.82, 0.9, 0.9, 0.95, 0.95])))
        runs.append(run("pixels", s, np.minimum(T / 2000, 1.0)))  # 0.5 at the budget: never
    cmp = compare_runs(runs, ref, threshold=0.8, reps=200)
    assert cmp.arms == ["repr", "pixels", "state"]
    assert cmp.budget == 1000 and cmp.grid.tolist() == T.tolist()
    # normalised to the reference (expert 10, zero 2), not to the state agent
    np.testing.assert_allclose(cmp.normalised_final["pixels"], 0.5)
    np.testing.assert_allclose(cmp.final["pixels"], 6.0)
    assert cmp.aggregates["pixels"]["IQM"][0] == pytest.approx(0.5)
    assert cmp.aggregates["pixels"]["Optimality gap"][0] == pytest.approx(0.5)
    assert cmp.final_iqm["repr"][0] == pytest.approx(2 + 0.95 * 8)
    assert cmp.steps_to_threshold["repr"] == (600, 600, 600)
    assert cmp.run_steps_to_threshold["repr"] == [600] * MIN_RUNS
    assert cmp.steps_to_threshold["state"][0] == 300
    assert cmp.steps_to_threshold["pixels"] == (math.inf, math.inf, math.inf)
    assert cmp.steps_ratio["repr"].point == (1000 / 600, math.inf)  # pixels never: ratio > budget / 600
    assert cmp.improvement["repr,pixels"] == (1.0, 1.0, 1.0)
    assert cmp.verdicts["repr,pixels"].final == "x" and cmp.verdicts["repr,pixels"].steps == "x"
    assert not any(cmp.underpowered.values())


def test_steps_ci_upper_end_never_when_some_resamples_never_reach():
    ref = Ref()
    good = np.where(T >= 800, 0.9, 0.0)
    runs = [run("pixels", s, good if s < 3 else np.zeros(T.size)) for s in range(5)]
    cmp = compare_runs(runs, ref, reps=500)
    point, low, high = cmp.steps_to_threshold["pixels"]
    # all 5 runs: IQM = mean of the middle three of (0, 0, .9, .9, .9) = 0.6 < 0.8, never; resamples with
    # >= 4 good runs (p ~ 0.34) reach it at 800
    assert math.isinf(point) and low == 800 and math.isinf(high)
    assert cmp.run_steps_to_threshold["pixels"] == [800, 800, 800, math.inf, math.inf]


def test_compare_runs_is_reproducible_from_its_seed():
    rng = np.random.default_rng(4)
    runs = [
        run(a, s, np.clip(T / 1000 * k + rng.normal(0, 0.1, T.size), 0, None))
        for a, k in (("repr", 1.0), ("pixels", 0.8))
        for s in range(6)
    ]
    a, b, c = (compare_runs(runs, Ref(), reps=300, seed=s) for s in (0, 0, 1))
    assert a.aggregates == b.aggregates and a.improvement == b.improvement
    np.testing.assert_array_equal(a.curve_iqm["repr"][1], b.curve_iqm["repr"][1])
    assert a.aggregates["repr"]["IQM"][1:] != c.aggregates["repr"]["IQM"][1:]
    # each arm draws its own stream: adding an arm does not move the others' intervals
    more = compare_runs(runs + [run("state", s, np.ones(T.size)) for s in range(6)], Ref(), reps=300, seed=0)
    assert more.aggregates["repr"] == a.aggregates["repr"]


def test_performance_profile_is_non_increasing_and_matches_rliable():
    from rliable import library as rly

    rng = np.random.default_rng(5)
    runs = [run("repr", s, np.full(T.size, rng.uniform(0, 1.2))) for s in range(8)]
    cmp = compare_runs(runs, Ref(), reps=300)
    taus = cmp.profile_taus
    point, low, high = cmp.profiles["repr"]
    for curve in (point, low, high):
        assert np.all(np.diff(curve) <= 1e-12)
    assert np.all(low <= point + 1e-12) and np.all(point <= high + 1e-12)
    assert point[0] == 1.0 and point[-1] == 0.0
    scores = cmp.normalised_final["repr"][:, None]
    ref_point, _ = rly.create_performance_profile({"repr": scores}, taus, reps=5)
    np.testing.assert_allclose(point, ref_point["repr"])
    np.testing.assert_allclose(score_distribution(scores, taus), ref_point["repr"])


def test_pair_verdict_rules():
    hi, lo = (0.9, 0.85, 0.95), (0.5, 0.4, 0.6)
    steps_fast, steps_slow, never = (200, 100, 300), (700, 600, 800), (math.inf, math.inf, math.inf)
    v = pair_verdict("a", "b", hi, lo, (0.9, 0.7, 1.0), steps_fast, steps_slow, underpowered=False)
    assert (v.final, v.steps) == ("x", "x")
    v = pair_verdict("a", "b", lo, hi, (0.1, 0.0, 0.3), steps_slow, steps_fast, underpowered=False)
    assert (v.final, v.steps) == ("y", "y")
    # disjoint IQM CIs but P(a > b) CI includes 0.5: no claim
    v = pair_verdict("a", "b", hi, lo, (0.7, 0.45, 0.9), steps_fast, never, underpowered=False)
    assert v.final == "none" and v.final_disjoint and v.steps == "x"
    # overlapping CIs
    v = pair_verdict("a", "b", hi, (0.8, 0.7, 0.86), (0.8, 0.6, 1.0), (200, 100, 650), steps_slow, underpowered=False)
    assert (v.final, v.steps) == ("none", "none")
    # upper end "never" overlaps anything above its lower end
    v = pair_verdict("a", "b", hi, lo, (0.9, 0.7, 1.0), (500, 400, math.inf), steps_slow, underpowered=False)
    assert v.steps == "none"
    v = pair_verdict("a", "b", hi, lo, (0.9, 0.7, 1.0), steps_fast, steps_slow, underpowered=True)
    assert (v.final, v.steps) == ("underpowered", "underpowered")


def test_fewer_than_five_runs_is_flagged_underpowered():
    runs = [run("repr", s, T / 1000) for s in range(MIN_RUNS - 1)] + [
        run("pixels", s, T / 2000) for s in range(MIN_RUNS)
    ]
    cmp = compare_runs(runs, Ref(), reps=100)
    assert cmp.underpowered == {"repr": True, "pixels": False}
    assert cmp.verdicts["repr,pixels"].final == "underpowered"
    assert any("no aggregate claim" in n for n in cmp.notes)


def test_reference_is_required_and_checked():
    runs = [run("repr", 0, T / 1000)]
    with pytest.raises(ValueError, match="needs a reference"):
        compare_runs(runs, None)
    with pytest.raises(ValueError, match=r"expert_return \(1\) must be finite and above zero_return \(2\)"):
        compare_runs(runs, Ref(expert_return=1.0, zero_return=2.0))
    with pytest.raises(TypeError, match="expert_return, zero_return and source"):
        compare_runs(runs, object())
    with pytest.raises(ValueError, match="no finished runs"):
        compare_runs([], Ref())


def test_compare_runs_accepts_the_real_reference_scores():
    reference = pytest.importorskip("agents.reference")
    ref = reference.ReferenceScores(
        expert_return=10.0,
        zero_return=2.0,
        expert_returns=(10.0,) * 3,
        zero_returns=(2.0,) * 3,
        seeds=(1_000_000, 1_000_001, 1_000_002),
        env_id="wm/JacoReach-v1",
        source="scripted expert",
    )
    cmp = compare_runs([run("repr", s, T / 1000) for s in range(2)], ref, reps=50)
    assert cmp.reference_episodes == 3 and cmp.normalised_final["repr"].tolist() == pytest.approx([1.0, 1.0])
