"""Layer-wise attribution of the Lie derivative (Gruver et al. 2023, section "layer-wise").

For a network ``f = f_L o ... o f_1`` the Lie derivative obeys a chain rule: the end-to-end
derivative is a sum over layers of the downstream Jacobian times each layer's *own* Lie
derivative,

    L f(x) = sum_i C_i,   C_i = J_{out <- h_i} L f_i(h_{i-1}),   L f_i(h) = d/dt T_{-t} f_i(T_t h),

(derivation: insert ``T_t T_{-t}`` between consecutive layers; to first order in ``t`` it is the
identity). ``T`` acts on every feature map ``[B, C, h, w]`` (``h, w > 1``) in the physical frame of
the input image, and trivially on vectors and 1x1 maps; a layer that is exactly equivariant
(a pointwise linear map, an addition) has ``L f_i = 0``. Layer ``i``'s share of the per-image
``LEE = ||L f||^2`` is ``C_i . L f``, and these shares sum to the LEE.

Two estimators of ``C_i . L f``:

* ``"hutchinson"`` (the paper's): with random probes ``z`` (Rademacher, ``E[z z^T] = I``),
  ``E[(z^T C_i)(z^T L f)] = C_i . L f``. One backward pass per probe gives ``z^T J_{out <- h_i}``
  for every layer at once, so the cost does not grow with depth. The sum over layers of a probe's
  estimates is ``(z^T sum_i C_i)(z^T L f)``, an unbiased estimate of the LEE itself.
* ``"exact"``: ``C_i`` by one forward-mode pass per layer (the layer's ``L f_i`` injected as the
  tangent of its output); no estimator error, cost grows with depth.

Layers are the leaf modules the forward pass calls (or the named modules given). Work done by
functions between modules (``F.relu`` in a ``forward``) is not a layer: its share is reported as
``unattributed`` (end-to-end LEE minus the layers' sum), which is zero up to estimator error when
everything that breaks equivariance lives in modules. Geometric transforms only: a colour
transform acts on the input image alone, so all of its LEE belongs to the first layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from worldmodel.diagnostics.lie_derivative import (
    _unwrap,
    check_inputs,
    primal_and_derivative,
    probe_output_kind,
    resolve_head,
)
from worldmodel.diagnostics.transforms import ImageTransform, Padding, acts_on, image_tangent, resolve_transforms

ESTIMATORS: tuple[str, ...] = ("hutchinson", "exact")


@dataclass
class LayerShare:
    """One layer's (one call's) share of the LEE."""

    name: str
    """Qualified module name (``name#k`` for the k-th call of a module called more than once)."""
    module: str
    """Module class name."""
    output_shape: tuple[int, ...]
    """Output shape of one image."""
    share: float
    """Mean over images of ``C_i . L f`` (estimated)."""
    sem: float
    """Standard error of :attr:`share` (over images and probes; 0 for the exact estimator)."""
    local: float
    """Mean over images of ``||L f_i||^2``: how much the layer alone breaks equivariance."""


@dataclass
class LayerwiseResult:
    """Layer-wise attribution of one transform's LEE."""

    transform: str
    estimator: str
    probes: int
    images: int
    layers: list[LayerShare]
    end_to_end: float
    """Mean exact ``||L f(x)||^2`` (forward mode, end to end)."""
    end_to_end_sem: float
    """Its standard error over images."""
    total: float
    """Sum of the layers' shares (mean over images)."""
    total_sem: float
    """Standard error of :attr:`total` (its estimator error over images and probes)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def unattributed(self) -> float:
        """End-to-end LEE minus the layers' sum: the share of operations outside the layers."""
        return self.end_to_end - self.total

    def summary(self) -> dict[str, Any]:
        """Plain numbers for JSON."""
        return {
            "transform": self.transform,
            "estimator": self.estimator,
            "probes": self.probes,
            "images": self.images,
            "end_to_end": self.end_to_end,
            "end_to_end_sem": self.end_to_end_sem,
            "total": self.total,
            "total_sem": self.total_sem,
            "unattributed": self.unattributed,
            "layers": [vars(layer) | {"output_shape": list(layer.output_shape)} for layer in self.layers],
            **self.extra,
        }


@dataclass
class _Call:
    name: str
    module: nn.Module
    args: tuple
    kwargs: dict
    output: torch.Tensor
    index: int
    """Position among all hooked calls of the pass (what injection counts)."""


def _leaf_modules(root: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in root.named_modules() if n and not list(m.children())]


def _select_modules(root: nn.Module, modules: Sequence[str] | None) -> list[tuple[str, nn.Module]]:
    if modules is None:
        found = _leaf_modules(root)
        if not found:  # a single-module model is its own layer
            found = [(type(root).__name__, root)]
        return found
    named = dict(root.named_modules())
    missing = [m for m in modules if m not in named]
    if missing:
        valid = ", ".join(n for n in named if n) or "(none)"
        raise ValueError(f"unknown module name(s) {', '.join(map(repr, missing))}; valid values: {valid}")
    for a in modules:
        for b in modules:
            if a != b and b.startswith(a + "."):
                raise ValueError(f"modules {a!r} and {b!r} are nested; name layers that do not contain each other")
    return [(m, named[m]) for m in modules]


class _Recorder:
    """Forward hooks that record each selected module's call (inputs and output) during a pass."""

    def __init__(self, modules: list[tuple[str, nn.Module]]) -> None:
        self.modules = modules
        self.calls: list[_Call] = []
        self.active = False
        self.inject: tuple[int, torch.Tensor, torch.Tensor] | None = None  # (call index, tangent, eps)
        self._count = 0
        self._pending: dict[int, list] = {}
        self._handles: list = []
        for name, mod in modules:
            self._handles.append(mod.register_forward_pre_hook(self._pre(name), with_kwargs=True))
            self._handles.append(mod.register_forward_hook(self._post(name), with_kwargs=True))

    def _pre(self, name: str):
        def hook(mod, args, kwargs):
            if self.active:
                # Clones: a later in-place op (ReLU(inplace=True)) must not change what we re-run.
                snap = tuple(a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args)
                self._pending.setdefault(id(mod), []).append((snap, dict(kwargs)))
            return None

        return hook

    def _post(self, name: str):
        def hook(mod, args, kwargs, output):
            k = self._count
            self._count += 1
            if self.inject is not None:
                idx, tangent, eps = self.inject
                return output + eps * tangent if k == idx else None
            if not self.active:
                return None
            snap, kw = self._pending[id(mod)].pop()
            if not isinstance(output, torch.Tensor):
                return None  # tuple outputs are not layers; their share ends up unattributed
            seen = sum(1 for c in self.calls if c.module is mod)
            label = name if seen == 0 else f"{name}#{seen}"
            self.calls.append(_Call(label, mod, snap, kw, output, k))
            # Downstream layers get a copy, so in-place ops never modify the recorded output.
            return output.clone()

        return hook

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def _local_lie_derivative(
    call: _Call, transform: ImageTransform, reference: tuple[int, int], padding: Padding
) -> torch.Tensor:
    """``L f_i(h) = d/dt T_{-t} f_i(T_t h)`` at 0 for one recorded call.

    Forward mode with closed-form tangents: ``J_{f_i}(h) (d/dt T_t h) - d/dt T_t f_i(h)``.
    """
    from torch.func import jvp

    args = call.args
    slots = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a.is_floating_point()]

    def fn(*tensors: torch.Tensor) -> torch.Tensor:
        full = list(args)
        for i, t in zip(slots, tensors, strict=True):
            full[i] = t
        return call.module(*full, **call.kwargs)

    primals = tuple(args[i].contiguous() for i in slots)
    tangents = tuple(
        (image_tangent(a, transform, reference, padding) if acts_on(a, transform) else torch.zeros_like(a)).contiguous()
        for a in primals
    )
    with torch.no_grad():
        if primals:
            y, d = jvp(fn, primals, tangents)
        else:
            y = fn()
            d = torch.zeros_like(y)
        if acts_on(y, transform):
            d = d - image_tangent(y, transform, reference, padding)
    return d


def layerwise_lee(
    model: Callable[..., torch.Tensor],
    images: torch.Tensor,
    transform: str | ImageTransform,
    *,
    modules: Sequence[str] | None = None,
    root: nn.Module | None = None,
    estimator: str = "hutchinson",
    probes: int = 32,
    output: str = "auto",
    head: Any = None,
    padding: Padding = "reflection",
    batch_size: int = 32,
    extra_args: Sequence[Any] = (),
    seed: int = 0,
    progress: bool = True,
) -> LayerwiseResult:
    """Each layer's share of the LEE of ``model`` for ``transform`` (see the module docstring).

    Args:
        model: callable ``images -> tensor`` (an ``nn.Module`` in eval mode, a FrozenEncoder, ...).
        images: float ``[B, C, H, W]``.
        transform: a geometric transform name.
        modules: qualified names (in ``root``) of the layers; default: every leaf module called.
        root: the module whose sub-modules are the layers (default: ``model``; for a frozen
            encoder its image network).
        estimator: ``"hutchinson"`` (random probes) or ``"exact"`` (one forward pass per layer).
        probes: random probes per image for ``"hutchinson"``.
        output, head, padding, extra_args: as in :func:`~worldmodel.diagnostics.lie_derivative.lie_derivative`.
        batch_size: images per pass.
        seed: seed of the probes.
        progress: show a progress bar.
    """
    from tqdm.auto import tqdm

    model = _unwrap(model)
    check_inputs(model, images)
    tr = resolve_transforms(transform)[0]
    if not tr.geometric:
        raise ValueError(
            f"layer-wise attribution needs a geometric transform (a colour transform acts only on the input image, "
            f"so all of its LEE belongs to the first layer); valid values: {', '.join(n for n in _geometric())}"
        )
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; valid values: {', '.join(ESTIMATORS)}")
    if probes < 1:
        raise ValueError(f"probes must be >= 1, got {probes}")
    if root is None:
        root = getattr(model, "network", None) if not isinstance(model, nn.Sequential) else model
        root = root if isinstance(root, nn.Module) else model
    if not isinstance(root, nn.Module):
        raise TypeError("layer-wise attribution needs an nn.Module (or root=the module holding the layers)")
    h = resolve_head(head)
    kind = probe_output_kind(model, images, output, h, extra_args)
    reference = (int(images.shape[-2]), int(images.shape[-1]))
    selected = _select_modules(root, modules)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    n = images.shape[0]
    shares: dict[str, list[torch.Tensor]] = {}
    locals_: dict[str, list[torch.Tensor]] = {}
    meta: dict[str, tuple[str, tuple[int, ...]]] = {}
    totals, e2e = [], []
    batches = [(s, min(n, s + batch_size)) for s in range(0, n, batch_size)]
    recorder = _Recorder(selected)
    bar = tqdm(total=len(batches), desc=f"layer-wise LEE ({tr.name})", unit="batch", disable=not progress, leave=False)
    try:
        for s, e in batches:
            x = images[s:e]
            extra = [a[s:e] if isinstance(a, torch.Tensor) and a.ndim and a.shape[0] == n else a for a in extra_args]
            # End to end (exact, forward mode).
            _, lf = primal_and_derivative(model, x, tr, kind, h, padding, "jvp", extra_args=extra)
            lf = lf.detach()
            e2e.append(lf.double().flatten(1).square().sum(1).cpu())
            # Recording pass with a graph to every layer output.
            recorder.calls, recorder.active, recorder._count = [], True, 0
            with torch.enable_grad():
                xg = x.detach().clone().requires_grad_(True)
                y = h(model(xg, *extra))
            recorder.active = False
            calls = recorder.calls
            if not calls:
                raise ValueError("none of the selected modules ran in the forward pass; pass modules= or root=")
            local = [_local_lie_derivative(c, tr, reference, padding) for c in calls]
            for c, lt in zip(calls, local, strict=True):
                meta.setdefault(c.name, (type(c.module).__name__, tuple(c.output.shape[1:])))
                locals_.setdefault(c.name, []).append(lt.double().flatten(1).square().sum(1).cpu())
            if estimator == "exact":
                per_layer = _exact_shares(model, x, extra, h, recorder, calls, local, lf)
                total = torch.stack(per_layer).sum(0)
            else:
                per_layer, total = _hutchinson_shares(y, calls, local, lf, probes, gen)
            for c, v in zip(calls, per_layer, strict=True):
                shares.setdefault(c.name, []).append(v)
            totals.append(total)
            del y, calls
            bar.update(1)
    finally:
        bar.close()
        recorder.close()
    layers = []
    for name, parts in shares.items():
        v = torch.cat(parts)  # [images] (exact) or [images, probes] (hutchinson)
        local = float(torch.cat(locals_[name]).mean())
        layers.append(LayerShare(name, meta[name][0], meta[name][1], float(v.mean()), _sem(v), local))
    tot, ee = torch.cat(totals), torch.cat(e2e)
    return LayerwiseResult(
        tr.name,
        estimator,
        probes if estimator == "hutchinson" else 0,
        n,
        layers,
        float(ee.mean()),
        _sem(ee),
        float(tot.mean()),
        _sem(tot),
        {"output": kind},
    )


def _geometric() -> tuple[str, ...]:
    from worldmodel.diagnostics.transforms import GEOMETRIC_NAMES

    return GEOMETRIC_NAMES


def _sem(v: torch.Tensor) -> float:
    """Standard error of the mean over images (probes first averaged per image)."""
    per_image = v.reshape(v.shape[0], -1).mean(1)
    return float(per_image.std() / math.sqrt(per_image.numel())) if per_image.numel() > 1 else 0.0


def _hutchinson_shares(
    y: torch.Tensor,
    calls: list[_Call],
    local: list[torch.Tensor],
    lf: torch.Tensor,
    probes: int,
    gen: torch.Generator,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per layer ``[images, probes]`` estimates of ``C_i . L f`` and their per-probe sum."""
    outs = [c.output for c in calls]
    est = [torch.empty(y.shape[0], probes, dtype=torch.float64) for _ in calls]
    lf_flat = lf.flatten(1)
    for p in range(probes):
        z = (torch.randint(0, 2, y.shape, generator=gen, dtype=torch.int64) * 2 - 1).to(y.dtype).to(y.device)
        grads = torch.autograd.grad(y, outs, grad_outputs=z, retain_graph=p < probes - 1, allow_unused=True)
        z_lf = (z.flatten(1) * lf_flat).sum(1).double()
        for i, (g, lt) in enumerate(zip(grads, local, strict=True)):
            if g is None:
                est[i][:, p] = 0.0
                continue
            est[i][:, p] = ((g.flatten(1) * lt.flatten(1)).sum(1).double() * z_lf).cpu()
    total = torch.stack(est).sum(0)
    return est, total


def _exact_shares(
    model: Callable,
    x: torch.Tensor,
    extra: list,
    head: Callable,
    recorder: _Recorder,
    calls: list[_Call],
    local: list[torch.Tensor],
    lf: torch.Tensor,
) -> list[torch.Tensor]:
    """Per layer ``[images]`` exact ``C_i . L f``: the layer's ``L f_i`` pushed forward in forward mode."""
    from torch.func import jvp

    out = []
    lf_flat = lf.flatten(1).double()
    for c, lt in zip(calls, local, strict=True):
        idx = c.index
        eps0 = torch.zeros((), dtype=x.dtype, device=x.device)

        def fn(eps: torch.Tensor, lt=lt, idx=idx) -> torch.Tensor:
            recorder._count = 0
            recorder.inject = (idx, lt, eps)
            try:
                return head(model(x, *extra))
            finally:
                recorder.inject = None

        with torch.no_grad():
            _, ci = jvp(fn, (eps0,), (torch.ones_like(eps0),))
        out.append((ci.flatten(1).double() * lf_flat).sum(1).cpu())
    return out
