"""`wm train bench` draws the context size K per batch like training does (uniform in
1..max_context), unless --context fixes it."""

from __future__ import annotations

from worldmodel.train.bench import BENCH_MAX_CONTEXT, _gqn_batches


def test_context_sizes_follow_the_training_distribution_unless_fixed():
    batches, label = _gqn_batches(2, 16, None, 5)
    ks = [b["context_frames"].shape[1] for b in batches]
    assert label == "1..5" and set(ks) <= set(range(1, 6)) and len(set(ks)) >= 3
    _, label = _gqn_batches(2, 16, None, None)
    assert label == f"1..{BENCH_MAX_CONTEXT}"
    batches, label = _gqn_batches(2, 16, 3, 5)
    assert label == 3 and {b["context_frames"].shape[1] for b in batches} == {3}
