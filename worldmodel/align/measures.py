"""Encoder-level transfer measures, computed on held-out *paired* frames (evaluation only).

* :func:`paired_feature_error`: mean ``|f(x_target) - f(x_sim)|`` over pairs of the same state,
  divided by the mean distance between features of random sim frames (0 = aligned, ~1 = the
  target features are as far from their sim twins as unrelated frames are).
* :func:`probe_transfer`: a ridge probe of the state (hand and target position) fitted on sim
  features of the training episodes, R² on sim and on target features of held-out episodes.
* :func:`cloud_distance`: exact OT (``ot.emd2``, squared Euclidean) between the sim and target
  feature clouds, divided by the sim cloud's mean squared pairwise distance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from worldmodel.align.fit import features_of
from worldmodel.align.frames import FrameSet
from worldmodel.encoders import FrozenEncoder


def _paired_features(
    adapted: FrozenEncoder, reference: FrozenEncoder, pairs: FrameSet
) -> tuple[torch.Tensor, torch.Tensor]:
    if pairs.paired is None:
        raise ValueError("the measure needs a frame set collected with paired_domain (its 'paired' frames)")
    target = features_of(adapted, pairs)
    sim = features_of(reference, FrameSet(pairs.paired, pairs.viewpoints, pairs.states, pairs.episodes))
    return sim, target


def paired_feature_error(adapted: FrozenEncoder, reference: FrozenEncoder, pairs: FrameSet, seed: int = 0) -> float:
    """Normalised paired error (module doc). ``pairs.frames`` are target frames, ``pairs.paired``
    their sim twins; target frames go through ``adapted``, sim frames through ``reference``."""
    sim, target = _paired_features(adapted, reference, pairs)
    err = (target - sim).norm(dim=1).mean()
    g = torch.Generator().manual_seed(seed)
    i, j = torch.randint(len(sim), (4096,), generator=g), torch.randint(len(sim), (4096,), generator=g)
    keep = i != j
    unrelated = (sim[i[keep]] - sim[j[keep]]).norm(dim=1).mean()
    return float(err / unrelated.clamp_min(1e-12))


def cloud_distance(adapted: FrozenEncoder, reference: FrozenEncoder, pairs: FrameSet, max_points: int = 1000) -> float:
    """Normalised exact OT distance between the sim and target feature clouds (module doc)."""
    import ot

    sim, target = _paired_features(adapted, reference, pairs)
    sim, target = sim[:max_points].double(), target[:max_points].double()
    scale = ot.dist(sim, sim).mean()
    cost = ot.dist(sim, target) / scale
    return float(ot.emd2(ot.unif(len(sim), type_as=cost), ot.unif(len(target), type_as=cost), cost))


def probe_transfer(
    adapted: FrozenEncoder, reference: FrozenEncoder, train_sim: FrameSet, pairs: FrameSet
) -> dict[str, Any]:
    """Ridge probe of the state on sim features; R² on held-out sim and target frames.

    ``train_sim`` (sim frames of training episodes, through ``reference``) fits the probe (the
    toolkit's :func:`worldmodel.eval.probe.ridge_probe`: standardised features, penalty per output
    by episode-grouped CV); ``pairs`` are held-out episodes: their sim twins give ``r2_sim``,
    their target frames (through ``adapted``) ``r2_target``. R² is the mean over the 6 columns.
    """
    from worldmodel.eval.probe import r2_per_dim, ridge_probe

    x_train = features_of(reference, train_sim).numpy()
    sim, target = _paired_features(adapted, reference, pairs)
    both = np.concatenate([sim.numpy(), target.numpy()])
    pred, _ = ridge_probe(x_train, train_sim.states, train_sim.episodes, both)
    n = len(sim)
    return {
        "r2_sim": float(r2_per_dim(pairs.states, pred[:n]).mean()),
        "r2_target": float(r2_per_dim(pairs.states, pred[n:]).mean()),
    }


def encoder_measures(
    adapted: FrozenEncoder, reference: FrozenEncoder, train_sim: FrameSet, pairs: FrameSet
) -> dict[str, Any]:
    """All three measures of the module doc for one adapted encoder."""
    return {
        "paired_error": paired_feature_error(adapted, reference, pairs),
        "ot_distance": cloud_distance(adapted, reference, pairs),
        **probe_transfer(adapted, reference, train_sim, pairs),
    }


__all__ = ["cloud_distance", "encoder_measures", "paired_feature_error", "probe_transfer"]
