"""Lie derivatives and the local equivariance error (LEE) of any torch callable on images.

Gruver, Finzi, Goldblum and Wilson, *The Lie Derivative for Measuring Learned Equivariance*
(ICLR 2023). For a one-parameter image transform ``T_t`` (:mod:`worldmodel.diagnostics.transforms`):

* invariance (vector outputs: features, logits, probabilities): ``L f(x) = d/dt f(T_t x)`` at 0;
* equivariance (image-like outputs ``[B, C, h, w]``): ``L f(x) = d/dt T_{-t} f(T_t x)`` at 0,
  the output map transformed back in the same physical frame as the input (a 1-pixel input shift
  is a ``w / W``-pixel shift of an ``h x w`` map).

The local equivariance error of an image is ``LEE = ||L f(x)||^2`` (summed over the output);
for a classifier the paper's per-image metric is that of the softmax probabilities
(``head="softmax"``). ``relative`` divides by ``||f(x)||^2`` so that encoders of different output
scale can be compared.

Forward mode (default). At ``t = 0`` the chain rule gives ``d/dt f(T_t x) = J_f(x) v`` with the
image tangent ``v = d/dt T_t x`` known in closed form (the generator's velocity field times the
interpolant's gradient, :func:`~worldmodel.diagnostics.transforms.image_tangent`), so only the
model is differentiated, with :func:`torch.func.jvp`: one forward-mode pass per transform for the
whole batch (images do not interact in eval mode). For several transforms of one batch,
:func:`local_equivariance_error` batches the tangents with :func:`torch.func.vmap`, so the primal
pass is shared. Eval-mode batch norms are replaced by the affine maps they compute
(:func:`forward_mode_model`): same function, but torch's generic batch-norm forward-mode formula
costs a third of a jvp. Baselines, to check and to benchmark the default:
``method="double_vjp"`` differentiates ``t -> f(T_t x)`` through the sampler with the double
vector-Jacobian-product trick of the original code (two reverse passes, ``create_graph=True``),
``method="finite_difference"`` with central differences through the sampler;
``method="linearize"`` is forward mode through :func:`torch.func.linearize`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from worldmodel.diagnostics.transforms import (
    ImageTransform,
    Padding,
    _check_images,
    acts_on,
    apply_transform,
    image_tangent,
    resolve_transforms,
)

OUTPUTS: tuple[str, ...] = ("auto", "vector", "map")
HEADS: tuple[str, ...] = ("none", "softmax")
METHODS: tuple[str, ...] = ("jvp", "linearize", "double_vjp", "finite_difference")

Output = Literal["auto", "vector", "map"]
Head = "str | Callable[[torch.Tensor], torch.Tensor] | None"


def resolve_head(head: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """``None``/``"none"`` -> identity, ``"softmax"`` -> softmax over dim 1, or a callable as is."""
    if head is None or head == "none":
        return _identity
    if head == "softmax":
        return _softmax
    if callable(head):
        return head
    raise ValueError(f"unknown head {head!r}; valid values: {', '.join(HEADS)} or a callable")


def _identity(y: torch.Tensor) -> torch.Tensor:
    return y


def _softmax(y: torch.Tensor) -> torch.Tensor:
    return torch.softmax(y, dim=1)


def expected_image_size(model: Any) -> tuple[int, int] | None:
    """The input size a model declares (``image_size`` attribute or ``config.image_size``), if any."""
    for obj in (model, getattr(model, "config", None)):
        size = getattr(obj, "image_size", None) if obj is not None else None
        if isinstance(size, int):
            return (size, size)
        if isinstance(size, (tuple, list)) and len(size) == 2:
            return (int(size[0]), int(size[1]))
    return None


def check_inputs(model: Any, images: torch.Tensor, image_size: int | tuple[int, int] | None = None) -> None:
    """Raise a clear error for images a model cannot take (type, shape, dtype, size, device)."""
    _check_images(images)
    if images.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"images must be float32 or float64, got {images.dtype}")
    if image_size is None:
        size = expected_image_size(model)
    else:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if size is not None and tuple(images.shape[-2:]) != tuple(size):
        raise ValueError(f"the model expects {size[0]}x{size[1]} images, got {images.shape[-2]}x{images.shape[-1]}")
    if isinstance(model, nn.Module):
        p = next(iter(model.parameters()), None)
        if p is not None and p.is_floating_point() and p.dtype != images.dtype:
            raise ValueError(
                f"images are {images.dtype} but the model's parameters are {p.dtype}: "
                f"convert one of them (model.to({images.dtype}) or images.to({p.dtype}))"
            )
        if p is not None and p.device != images.device:
            raise ValueError(f"images are on {images.device} but the model is on {p.device}")


def _check_output(y: Any, batch: int) -> torch.Tensor:
    if not isinstance(y, torch.Tensor):
        raise TypeError(
            f"the model must return a tensor [B, ...] (features, logits or a feature map), got {type(y).__name__}; "
            "wrap it, e.g. lambda x: model(x)[0]"
        )
    if y.ndim == 0 or y.shape[0] != batch:
        raise ValueError(f"the model's output must have the batch of {batch} images first, got shape {tuple(y.shape)}")
    if not y.is_floating_point():
        raise ValueError(f"the model's output must be floating point, got {y.dtype}")
    return y


def output_kind(y: torch.Tensor, output: str) -> str:
    """``"map"`` or ``"vector"`` for an output and the requested ``output`` (``"auto"``: 4-d with h, w > 1 is a map)."""
    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}; valid values: {', '.join(OUTPUTS)}")
    if output == "auto":
        return "map" if (y.ndim == 4 and y.shape[-1] > 1 and y.shape[-2] > 1) else "vector"
    if output == "map" and y.ndim != 4:
        raise ValueError(f"output='map' needs an image-like output [B, C, h, w], got shape {tuple(y.shape)}")
    return output


def _unwrap(model: Any) -> Any:
    from worldmodel.encoders import FrozenEncoder

    if isinstance(model, FrozenEncoder):
        from worldmodel.diagnostics.adapters import image_function

        return image_function(model)
    return model


def transformed_output(
    model: Callable[..., torch.Tensor],
    images: torch.Tensor,
    transform: ImageTransform,
    t: torch.Tensor,
    kind: str,
    head: Callable[[torch.Tensor], torch.Tensor],
    padding: Padding,
    extra_args: Sequence[Any] = (),
) -> torch.Tensor:
    """``head(f(T_t x))`` for vector outputs, ``T_{-t} head(f(T_t x))`` for map outputs."""
    y = head(model(apply_transform(images, transform, t, padding=padding), *extra_args))
    if kind == "map" and acts_on(y, transform):
        y = apply_transform(y, transform, -t, reference_size=tuple(images.shape[-2:]), padding=padding)
    return y


def lie_derivative(
    model: Callable[..., torch.Tensor],
    images: torch.Tensor,
    transform: str | ImageTransform,
    *,
    output: Output = "auto",
    head: Head = None,
    padding: Padding = "reflection",
    method: str = "jvp",
    fd_step: float | None = None,
    extra_args: Sequence[Any] = (),
    image_size: int | tuple[int, int] | None = None,
) -> torch.Tensor:
    """The Lie derivative ``L f(x)`` of each image, shaped like the model's (head's) output.

    Args:
        model: any callable ``images [B, C, H, W] -> tensor [B, ...]`` (an ``nn.Module`` in eval
            mode, a function, a :class:`~worldmodel.encoders.FrozenEncoder`).
        images: float32/float64 ``[B, C, H, W]`` as the model takes them (transforms act on them
            directly; colour transforms assume display values such as [0, 1]).
        transform: a name of :data:`~worldmodel.diagnostics.transforms.TRANSFORMS` or a transform.
        output: ``"vector"`` (invariance), ``"map"`` (equivariance of ``[B, C, h, w]`` outputs) or
            ``"auto"`` (a map when the output is 4-d with ``h, w > 1``).
        head: ``"softmax"`` for classifiers (the paper's metric on probabilities), a callable, or None.
        padding: sampler padding of the warps: ``"zeros"``, ``"border"``, ``"reflection"``.
        method: ``"jvp"`` (forward mode, default), ``"linearize"`` (forward mode via
            :func:`torch.func.linearize`), ``"double_vjp"`` or ``"finite_difference"``.
        fd_step: step ``h`` of the central difference ``(F(h) - F(-h)) / 2h`` (default 1e-6 in
            float64, 1e-3 in float32). Its error is O(h), not O(h^2): the bicubic interpolant is C1
            but its second derivative jumps at the pixel centres where ``t = 0`` samples.
        extra_args: further positional arguments of ``model`` (e.g. GQN viewpoints), not transformed.
        image_size: expected input size (default: the model's ``image_size`` if it declares one).
    """
    model = _unwrap(model)
    check_inputs(model, images, image_size)
    tr = resolve_transforms(transform)[0]
    h = resolve_head(head)
    if isinstance(model, nn.Module) and model.training:
        warnings.warn(
            "the model is in training mode; Lie derivatives are meant for eval mode (model.eval())", stacklevel=2
        )
    kind = probe_output_kind(model, images, output, h, extra_args)
    return primal_and_derivative(model, images, tr, kind, h, padding, method, fd_step, extra_args)[1]


def probe_output_kind(
    model: Callable[..., torch.Tensor],
    images: torch.Tensor,
    output: str,
    head: Callable,
    extra_args: Sequence[Any] = (),
) -> str:
    """Run the model on one image and classify its output (``"vector"`` or ``"map"``), checking it."""
    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}; valid values: {', '.join(OUTPUTS)}")
    with torch.no_grad():
        first = [
            a[:1] if isinstance(a, torch.Tensor) and a.ndim and a.shape[0] == images.shape[0] else a for a in extra_args
        ]
        y = _check_output(head(model(images[:1], *first)), 1)
    return output_kind(y, output)


def primal_and_derivative(
    model: Callable[..., torch.Tensor],
    images: torch.Tensor,
    transform: ImageTransform,
    kind: str,
    head: Callable[[torch.Tensor], torch.Tensor],
    padding: Padding = "reflection",
    method: str = "jvp",
    fd_step: float | None = None,
    extra_args: Sequence[Any] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(head(f(x)), L f(x))`` for a checked batch (see :func:`lie_derivative`)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid values: {', '.join(METHODS)}")
    if method in ("jvp", "linearize"):
        fm = forward_mode_model(model)
        return next(
            iter(forward_mode_derivatives(fm, images, [transform], kind, head, padding, method, extra_args).values())
        )
    t0 = torch.zeros((), dtype=images.dtype, device=images.device)

    def fn(t: torch.Tensor) -> torch.Tensor:
        return transformed_output(model, images, transform, t, kind, head, padding, extra_args)

    if method == "double_vjp":
        return double_vjp_derivative(fn, t0)
    with torch.no_grad():
        if fd_step is None:
            fd_step = 1e-6 if images.dtype == torch.float64 else 1e-3
        step = torch.as_tensor(fd_step, dtype=images.dtype, device=images.device)
        return _check_output(fn(t0), images.shape[0]), (fn(t0 + step) - fn(t0 - step)) / (2.0 * step)


class _ChannelAffine(nn.Module):
    """An eval-mode batch norm as the per-channel affine map it computes: ``x * scale + shift``."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        with torch.no_grad():
            scale = torch.rsqrt(bn.running_var + bn.eps)
            if bn.weight is not None:
                scale = scale * bn.weight
            shift = -bn.running_mean * scale
            if bn.bias is not None:
                shift = shift + bn.bias
        self.register_buffer("scale", scale.detach().clone())
        self.register_buffer("shift", shift.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return torch.addcmul(self.shift.reshape(shape), x, self.scale.reshape(shape))


def forward_mode_model(model: Any) -> Any:
    """``model``, or a copy whose eval-mode batch norms are replaced by the affine maps they compute.

    The function is unchanged (in eval mode a batch norm *is* ``x * scale + shift``); the copy only
    avoids the slow generic forward-mode formula of ``native_batch_norm`` in torch 2.13, which
    materialises zero tangents of its statistics (about a third of a jvp's time on a BN CNN).
    """
    if not isinstance(model, nn.Module):
        return model
    bns = [
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        and not m.training
        and m.track_running_stats
        and m.running_mean is not None
    ]
    if not bns:
        return model
    import copy

    clone = copy.deepcopy(model)
    named = dict(clone.named_modules())
    for name in bns:
        parent_name, _, attr = name.rpartition(".")
        setattr(named[parent_name] if parent_name else clone, attr, _ChannelAffine(named[name]))
    return clone


def forward_mode_derivatives(
    model: Callable[..., torch.Tensor],
    images: torch.Tensor,
    transforms: Sequence[ImageTransform],
    kind: str,
    head: Callable[[torch.Tensor], torch.Tensor],
    padding: Padding = "reflection",
    method: str = "jvp",
    extra_args: Sequence[Any] = (),
    state: dict[str, bool] | None = None,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{name: (head(f(x)), L f(x))}`` in forward mode, for several transforms of one batch.

    By the chain rule at ``t = 0``, ``d/dt f(T_t x) = J_f(x) v`` with the image tangent
    ``v = d/dt T_t x`` in closed form (:func:`~worldmodel.diagnostics.transforms.image_tangent`),
    so only the model is differentiated. ``"jvp"``: one :func:`torch.func.jvp` whose tangent is
    batched over the transforms with :func:`torch.func.vmap` (the primal pass is shared; falls back
    to one jvp per transform if the model does not vmap, recording ``state["vmap"] = False``).
    ``"linearize"``: :func:`torch.func.linearize` once, then one linear pass per transform (its
    tracing costs seconds; worth it only for large batches). Map outputs subtract the output's own
    tangent: ``d/dt T_{-t} y = -d/dt T_t y``.
    """
    from torch.func import jvp, linearize, vmap

    reference = (int(images.shape[-2]), int(images.shape[-1]))
    images = images.contiguous()  # forward-mode formulas of some ops (group_norm) need contiguous tangents

    def g(x: torch.Tensor) -> torch.Tensor:
        return head(model(x, *extra_args))

    tangents = {tr.name: image_tangent(images, tr, padding=padding).contiguous() for tr in transforms}
    pushed: dict[str, torch.Tensor] = {}
    y = None
    state = {} if state is None else state
    with torch.no_grad():
        if method == "linearize" and state.get("linearize", True):
            try:
                with warnings.catch_warnings():  # const-folding chatter of torch.fx inside linearize
                    warnings.simplefilter("ignore", UserWarning)
                    y, lin = linearize(g, images)
                pushed = {name: lin(v) for name, v in tangents.items()}
            except Exception as err:  # tracing can fail on exotic models: forward mode still works
                warnings.warn(f"torch.func.linearize failed ({type(err).__name__}: {err}); using jvp", stacklevel=3)
                pushed, state["linearize"] = {}, False
        if not pushed and len(tangents) > 1 and state.get("vmap", True):
            names = list(tangents)
            try:
                batched = torch.stack([tangents[n] for n in names])
                y, stacked = vmap(lambda v: jvp(g, (images,), (v,)), out_dims=(None, 0))(batched)
                pushed = dict(zip(names, stacked.unbind(0), strict=True))
            except Exception as err:  # e.g. data-dependent control flow: one jvp per transform instead
                warnings.warn(
                    f"torch.func.vmap over the transforms failed ({type(err).__name__}: {err}); "
                    "using one jvp per transform",
                    stacklevel=3,
                )
                pushed, state["vmap"] = {}, False
        for name, v in tangents.items():
            if name not in pushed:
                y, pushed[name] = jvp(g, (images,), (v,))
        y = _check_output(y, images.shape[0])
        out = {}
        for tr in transforms:
            d = pushed[tr.name]
            if kind == "map" and acts_on(y, tr):
                d = d - image_tangent(y, tr, reference_size=reference, padding=padding)
            out[tr.name] = (y, d)
    return out


def double_vjp_derivative(
    fn: Callable[[torch.Tensor], torch.Tensor], t0: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(fn(t0), d fn / dt at t0)`` with two reverse passes (the double-VJP trick of the original code).

    ``g(v) = v^T (d fn / dt)`` is built with ``create_graph=True``; its gradient in ``v`` is the
    derivative. Needs a twice-differentiable ``fn``.
    """
    with torch.enable_grad():
        t = t0.detach().clone().requires_grad_(True)
        y = fn(t)
        v = torch.zeros_like(y, requires_grad=True)
        (g,) = torch.autograd.grad(y, t, v, create_graph=True)
        (d,) = torch.autograd.grad(g, v)
    return y.detach(), d.detach()


# ----------------------------------------------------------------------------- LEE over a dataset


def _sem(v: torch.Tensor) -> float:
    n = v.numel()
    return float(v.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")


@dataclass
class LEEResult:
    """Local equivariance error of one transform over a set of images."""

    transform: str
    """Transform name."""
    unit: str
    """Unit of the transform's parameter (the LEE is per unit squared)."""
    output: str
    """``"vector"`` (invariance) or ``"map"`` (equivariance)."""
    lee: torch.Tensor
    """Per image ``||L f(x)||^2`` (float64, CPU)."""
    relative: torch.Tensor
    """Per image ``||L f(x)||^2 / ||f(x)||^2``."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        """Mean LEE over the images."""
        return float(self.lee.mean())

    @property
    def sem(self) -> float:
        """Standard error of :attr:`mean` over the images."""
        return _sem(self.lee)

    def summary(self) -> dict[str, Any]:
        """Plain numbers for JSON."""
        return {
            "transform": self.transform,
            "unit": self.unit,
            "output": self.output,
            "images": int(self.lee.numel()),
            "lee": self.mean,
            "lee_sem": self.sem,
            "lee_median": float(self.lee.median()),
            "relative": float(self.relative.mean()),
            "relative_sem": _sem(self.relative),
            **self.extra,
        }


def local_equivariance_error(
    model: Callable[..., torch.Tensor],
    images: torch.Tensor,
    transforms: str | Sequence[str | ImageTransform] | None = None,
    *,
    output: Output = "auto",
    head: Head = None,
    padding: Padding = "reflection",
    method: str = "jvp",
    batch_size: int = 64,
    extra_args: Sequence[Any] = (),
    image_size: int | tuple[int, int] | None = None,
    progress: bool = True,
    skip_inapplicable: bool = False,
) -> dict[str, LEEResult]:
    """LEE of ``model`` on ``images`` for each transform (default: all), in batches.

    ``extra_args`` tensors are sliced along their first dimension with the images. With
    ``skip_inapplicable``, transforms that do not apply to the images (saturation on grey images)
    are left out instead of raising. Other arguments as in :func:`lie_derivative`. Returns
    ``{name: LEEResult}``.
    """
    from tqdm.auto import tqdm

    model = _unwrap(model)
    check_inputs(model, images, image_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    trs = resolve_transforms(transforms)
    if skip_inapplicable:
        trs = [tr for tr in trs if not (tr.name == "saturation" and images.shape[1] != 3)]
    h = resolve_head(head)
    kind = probe_output_kind(model, images, output, h, extra_args)
    n = images.shape[0]
    batches = [(s, min(n, s + batch_size)) for s in range(0, n, batch_size)]
    per: dict[str, tuple[list, list]] = {tr.name: ([], []) for tr in trs}
    state: dict[str, bool] = {}
    fm_model = forward_mode_model(model) if method in ("jvp", "linearize") else model
    bar = tqdm(total=len(trs) * len(batches), desc="Lie derivatives", unit="batch", disable=not progress, leave=False)
    try:
        for s, e in batches:
            x = images[s:e]
            extra = [a[s:e] if isinstance(a, torch.Tensor) and a.ndim and a.shape[0] == n else a for a in extra_args]
            if method in ("jvp", "linearize"):
                derivs = forward_mode_derivatives(fm_model, x, trs, kind, h, padding, method, extra, state)
            else:
                derivs = {
                    tr.name: primal_and_derivative(model, x, tr, kind, h, padding, method, extra_args=extra)
                    for tr in trs
                }
            norm = None
            for tr in trs:
                y, d = derivs[tr.name]
                sq = d.double().flatten(1).square().sum(1)
                if norm is None:  # f(x) does not depend on the transform
                    norm = y.double().flatten(1).square().sum(1).clamp_min(1e-300)
                per[tr.name][0].append(sq.cpu())
                per[tr.name][1].append((sq / norm).cpu())
                bar.update(1)
    finally:
        bar.close()
    return {
        tr.name: LEEResult(tr.name, tr.unit, kind, torch.cat(per[tr.name][0]), torch.cat(per[tr.name][1])) for tr in trs
    }
