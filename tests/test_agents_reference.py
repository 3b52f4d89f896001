"""The external references of normalised scores: expert and zero-action returns on the evaluation episodes."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from agents.reference import ReferenceScores, evaluation_seeds, measure_reference
from envs.experts import make_expert


def test_evaluation_seeds_are_fixed_and_validated():
    assert evaluation_seeds(1_000_000, 3) == [1_000_000, 1_000_001, 1_000_002]
    assert evaluation_seeds() == evaluation_seeds()
    assert len(evaluation_seeds()) == 30
    with pytest.raises(ValueError, match="episodes"):
        evaluation_seeds(0, 0)


def test_measure_reference_replays_the_same_episodes_in_any_obs_mode():
    seeds = evaluation_seeds(5_000, 4)
    ref = measure_reference("wm/JacoReach-v1", {"camera": "moving", "size": 32, "obs": "pixels"}, seeds)
    assert ref.seeds == tuple(seeds) and len(ref.expert_returns) == 4
    assert ref.expert_return > ref.zero_return + 40
    assert ref.normalise(ref.expert_return) == pytest.approx(1.0)
    assert ref.normalise(ref.zero_return) == pytest.approx(0.0)
    # The same episode played by hand in pixels mode gives the reference's expert return.
    env = gym.make("wm/JacoReach-v1", obs="pixels", camera="moving", size=32)
    expert = make_expert(env)
    env.reset(seed=seeds[2])
    total, done = 0.0, False
    while not done:
        _, r, term, trunc, _ = env.step(expert.act())
        total, done = total + r, term or trunc
    assert total == pytest.approx(ref.expert_returns[2], rel=1e-9)
    assert "expert" in ref.source and "30" not in ref.source


def test_reference_scores_round_trip_and_validation():
    ref = ReferenceScores(10.0, 2.0, (9.0, 11.0), (2.0, 2.0), (1, 2), "wm/JacoReach-v1", "test")
    assert ReferenceScores.from_dict(ref.to_dict()) == ref
    np.testing.assert_allclose(ref.normalise([2.0, 6.0, 10.0]), [0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="must exceed"):
        ReferenceScores(1.0, 1.0)
    with pytest.raises(ValueError, match="unknown ReferenceScores field"):
        ReferenceScores.from_dict({**ref.to_dict(), "bogus": 1})


def test_env_without_expert_is_a_clear_error():
    with pytest.raises(ValueError, match="no scripted expert"):
        measure_reference("wm/Maze-v0", {}, [0])
