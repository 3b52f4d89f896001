"""Distribution-alignment losses between a source and a target feature cloud (POT, GeomLoss, skada).

Every function takes two batches of features ``[n, d]`` and ``[m, d]`` (torch, any device) and
returns a differentiable scalar. The optimal-transport ones use uniform weights and the squared
Euclidean cost; none is written by hand:

* ``"emd"``: exact OT (POT ``ot.emd2``, network simplex). Its gradient with respect to the
  features is that of the cost under the optimal plan (the plan itself is constant: envelope
  theorem), as in DeepJDOT.
* ``"sinkhorn"``: entropic OT solved in the log domain (POT ``ot.solve(..., method="sinkhorn_log")``),
  stable in float32 at small ``reg``; its value (transport cost + ``reg`` x KL) is differentiated
  by the envelope theorem (POT ``grad="envelope"``), not through the iterations.
* ``"sinkhorn-divergence"``: the debiased Sinkhorn divergence (GeomLoss ``SamplesLoss``), zero
  for identical clouds, ``blur = sqrt(reg)``.
* ``"unbalanced"``: entropic unbalanced OT with KL marginal relaxation of strength ``reg_m``
  (GeomLoss ``SamplesLoss(..., reach=sqrt(reg_m))``, debiased, log domain): mass may be created
  or destroyed, so points of one domain with no counterpart in the other (distractors) are not
  forced onto it. (POT's unbalanced Sinkhorn scalings underflow in float32 below reg ~0.01;
  GeomLoss stays finite there.)
* ``"coral"``: CORAL, the distance between feature covariances (skada ``deepcoral_loss``; above
  :data:`CORAL_GRAM_DIM` features the same value from n x n Gram matrices, :func:`coral_gram`).
* ``"mmd"``: multi-kernel MMD of DAN (skada ``dan_loss``).

:func:`joint_ot_loss` is DeepJDOT's joint cost on (feature, model output) pairs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from worldmodel.align.names import LOSSES, OT_METHODS


def check_clouds(source: torch.Tensor, target: torch.Tensor) -> None:
    """Raise ``ValueError`` unless both are non-empty 2-d batches of the same feature size."""
    for name, x in (("source", source), ("target", target)):
        if x.ndim != 2:
            raise ValueError(f"{name} features must be a 2-d batch [n, d], got shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError(f"{name} feature set is empty: alignment needs at least one {name} sample")
    if source.shape[1] != target.shape[1]:
        raise ValueError(
            f"source and target feature sizes differ: {source.shape[1]} vs {target.shape[1]} "
            "(both must come from the same encoder)"
        )


def check_loss_name(name: str) -> str:
    """``name`` if it is one of :data:`LOSSES`, else ``ValueError`` naming the valid ones."""
    if name not in LOSSES:
        raise ValueError(f"unknown alignment loss {name!r}; valid values: {', '.join(map(repr, LOSSES))}")
    return name


CORAL_GRAM_DIM = 2048
"""Feature size above which :func:`alignment_loss` computes CORAL with :func:`coral_gram`."""


def coral_gram(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CORAL ``|C_s - C_t|_F^2 / (4 d^2)`` (skada's ``deepcoral_loss`` value) from Gram matrices.

    ``|C_s - C_t|^2 = |C_s|^2 + |C_t|^2 - 2 tr(C_s C_t)`` and each term is a squared Frobenius
    norm of an n x m product of centred features (``tr(C_s C_t) = |X_s X_t^T|^2 / ((n-1)(m-1))``),
    so the d x d covariances are never formed: skada forms them, 85M entries for the 9216-d
    features of the lifted GQN, seconds per step. Written by hand for that reason only.
    """
    d = source.shape[1]
    xs = source - source.mean(0, keepdim=True)
    xt = target - target.mean(0, keepdim=True)
    ns, nt = source.shape[0] - 1, target.shape[0] - 1
    ss = (xs @ xs.T).pow(2).sum() / ns**2
    tt = (xt @ xt.T).pow(2).sum() / nt**2
    st = (xs @ xt.T).pow(2).sum() / (ns * nt)
    return (ss + tt - 2.0 * st) / (4.0 * d * d)


def _uniform(n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.full((n,), 1.0 / n, dtype=like.dtype, device=like.device)


def sq_cost(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean cost matrix ``[n, m]`` (``ot.dist``, POT's default metric)."""
    import ot

    return ot.dist(source, target, metric="sqeuclidean")


def ot_loss(
    source: torch.Tensor,
    target: torch.Tensor,
    method: str = "sinkhorn",
    reg: float = 0.05,
    reg_m: float = 1.0,
    max_iter: int = 500,
) -> torch.Tensor:
    """OT cost between two feature clouds (see the module doc for ``method``).

    Args:
        source, target: features ``[n, d]`` and ``[m, d]``.
        method: one of :data:`OT_METHODS`.
        reg: entropic regularisation (``sinkhorn``, ``unbalanced``; ``sinkhorn-divergence``
            uses ``blur = sqrt(reg)``), in the units of the cost (squared feature distance).
        reg_m: marginal relaxation of ``unbalanced`` (larger = closer to balanced).
        max_iter: iteration cap of the iterative solvers.
    """
    import ot

    check_clouds(source, target)
    if method not in OT_METHODS:
        raise ValueError(f"unknown OT method {method!r}; valid values: {', '.join(map(repr, OT_METHODS))}")
    if method != "emd" and not reg > 0:
        raise ValueError(f"reg must be > 0 for {method!r}, got {reg}")
    a, b = _uniform(source.shape[0], source), _uniform(target.shape[0], target)
    if method in ("sinkhorn-divergence", "unbalanced"):
        from geomloss import SamplesLoss

        # GeomLoss's p=2 cost is |x-y|^2 / 2: the blur and reach are set for the doubled cost
        # (the other methods' units) and the value is doubled back.
        reach = (2.0 * float(reg_m)) ** 0.5 if method == "unbalanced" else None
        blur = (2.0 * float(reg)) ** 0.5 if method == "unbalanced" else float(reg) ** 0.5
        loss = SamplesLoss("sinkhorn", p=2, blur=blur, reach=reach, debias=True, backend="tensorized")
        return 2.0 * loss(source, target)
    cost = sq_cost(source, target)
    if method == "emd":
        return ot.emd2(a, b, cost, numItermax=max(100_000, 50 * max_iter))
    # Envelope gradient (the plan at the solution, constant): no backward through the iterations.
    return ot.solve(cost, a, b, reg=reg, method="sinkhorn_log", max_iter=max_iter, grad="envelope").value


def alignment_loss(source: torch.Tensor, target: torch.Tensor, name: str, **ot_kwargs: float) -> torch.Tensor:
    """Any loss of :data:`LOSSES` between two feature clouds (OT options as :func:`ot_loss`)."""
    check_loss_name(name)
    check_clouds(source, target)
    if name in OT_METHODS:
        return ot_loss(source, target, method=name, **ot_kwargs)
    from skada.deep.losses import dan_loss, deepcoral_loss

    if name == "coral":
        return coral_gram(source, target) if source.shape[1] > CORAL_GRAM_DIM else deepcoral_loss(source, target)
    return dan_loss(source, target)


def joint_ot_loss(
    source: torch.Tensor,
    target: torch.Tensor,
    head: Callable[[torch.Tensor], torch.Tensor],
    feature_weight: float = 1.0,
    output_weight: float = 1.0,
) -> torch.Tensor:
    """DeepJDOT's joint OT loss with a source model's outputs in place of labels.

    The cost between source sample i and target sample j is
    ``feature_weight * |f_i - g_j|^2 + output_weight * |h(f_i) - h(g_j)|^2`` where ``h`` is the
    source model (here: the policy's action mean, frozen) and the source outputs are detached
    (they play the labels' part). The plan is exact OT (``ot.emd2``) on that cost and enters as a
    constant, as in DeepJDOT. Written with POT rather than skada's ``deepjdot_loss``, which assumes
    class labels and a cross-entropy between them.
    """
    import ot

    check_clouds(source, target)
    with torch.no_grad():
        out_s = head(source)
    out_t = head(target)
    cost = feature_weight * sq_cost(source, target) + output_weight * sq_cost(out_s, out_t)
    a, b = _uniform(source.shape[0], source), _uniform(target.shape[0], target)
    return ot.emd2(a, b, cost)


__all__ = [
    "LOSSES",
    "OT_METHODS",
    "CORAL_GRAM_DIM",
    "alignment_loss",
    "coral_gram",
    "check_clouds",
    "check_loss_name",
    "joint_ot_loss",
    "ot_loss",
    "sq_cost",
]
