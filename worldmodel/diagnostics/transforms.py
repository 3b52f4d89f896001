"""One-parameter image transforms ``T_t`` for Lie derivatives, each the identity at ``t = 0``.

Every transform is a one-parameter group, ``T_s T_t = T_{s+t}`` (for the geometric ones up to the
resampling of the discrete image), so its derivative at ``t = 0`` is the generator the Lie
derivative differentiates along. Names, units and the map applied:

==================  ==========  ==================================================================
name                unit of t   content moves by (pixel coordinates ``(u, v)``: u right, v down)
==================  ==========  ==================================================================
``translate_x``     pixels      ``u += t``
``translate_y``     pixels      ``v += t`` (positive moves the content down)
``rotate``          radians     rotation about the image centre, positive counter-clockwise on screen
``scale``           log-scale   ``(u, v) *= e^t`` about the centre (``t = log 2`` doubles the size)
``shear_x``         1 (slope)   ``u += t v``
``shear_y``         1 (slope)   ``v += t u``
``stretch_x``       log-scale   ``u *= e^t``
``stretch_y``       log-scale   ``v *= e^t``
``hyperbolic``      rapidity    ``(u, v) <- (cosh t u + sinh t v, sinh t u + cosh t v)`` (area-preserving)
``saturation``      log-gain    ``x <- g + e^t (x - g)``, ``g`` the per-pixel grey value (RGB only)
``brightness``      log-gain    ``x <- e^t x``
==================  ==========  ==================================================================

Geometric transforms resample ``out(p) = in(M_t^-1 p)`` with a hand-written bicubic sampler
(Keys' cubic convolution with ``a = -1/2``). Not ``torch.nn.functional.grid_sample``, for three
measured reasons (docs/diagnostics.md): in torch 2.13 it has no forward-mode derivative
(``torch.func.jvp`` raises ``NotImplementedError``); its bilinear mode is not differentiable at
``t = 0`` (the grid sits on pixel centres, where the interpolant has kinks, so autograd returns a
one-sided derivative that disagrees with central finite differences); and its bicubic mode uses
``a = -3/4``, whose derivative at the pixel centres is 1.5 times the slope of a linear ramp.
Keys' ``a = -1/2`` kernel is C1, reproduces linear (and quadratic) images exactly, and its
derivative at a pixel centre is the central difference ``(x[i+1] - x[i-1]) / 2``. The sampler is
built from ``floor``, ``gather`` and arithmetic, so it supports forward mode, reverse mode and
double backward.

Coordinates: one physical frame in pixels of a *reference* image (the model's input), centred on
the image centre. A feature map of another resolution (``h x w`` from an ``H x W`` input) covers
the same field of view, so a 1-pixel translation of the input is a ``w / W``-pixel translation of
the map. Colour transforms act on the input image only; on feature maps they are the identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

#: Padding modes of the sampler (values read outside the image).
PADDINGS: tuple[str, ...] = ("zeros", "border", "reflection")
#: Kinds of transform.
KINDS: tuple[str, ...] = ("geometric", "colour")

Padding = Literal["zeros", "border", "reflection"]
#: Largest number of gathered values per chunk of the sampler (bounds its memory).
_GATHER_BUDGET = 1 << 24


@dataclass(frozen=True)
class ImageTransform:
    """A named one-parameter image transform (see the module docstring for the table).

    Attributes:
        name: registry name, e.g. ``"rotate"``.
        kind: ``"geometric"`` (a warp of pixel coordinates) or ``"colour"`` (pointwise in pixels).
        unit: unit of the parameter ``t``.
        description: one line for reports.
    """

    name: str
    kind: str
    unit: str
    description: str

    @property
    def geometric(self) -> bool:
        """Whether the transform warps coordinates (and so also acts on feature maps)."""
        return self.kind == "geometric"

    def affine(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A [..., 2, 2], b [..., 2])`` of ``M_t p = A p + b`` in reference pixels (geometric only)."""
        if not self.geometric:
            raise ValueError(f"{self.name!r} is a colour transform; it has no coordinate map")
        return _AFFINE[self.name](t)

    def __call__(
        self,
        images: torch.Tensor,
        t: float | torch.Tensor,
        reference_size: tuple[int, int] | None = None,
        padding: Padding = "zeros",
    ) -> torch.Tensor:
        """``T_t`` applied to ``images`` (float ``[B, C, H, W]``); ``t`` a scalar or one value per image.

        Args:
            images: the images, or feature maps of a model whose input had ``reference_size``.
            t: the parameter (same dtype/device as ``images`` if a tensor; differentiable).
            reference_size: ``(H, W)`` of the model's input (default: the images' own size).
            padding: what the sampler reads outside the image: ``"zeros"``, ``"border"`` or
                ``"reflection"`` (symmetric about the edge).
        """
        return apply_transform(images, self, t, reference_size, padding)


def _scalar_affine(t: torch.Tensor, a00, a01, a10, a11, b0, b1) -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.stack((torch.stack((a00, a01), -1), torch.stack((a10, a11), -1)), -2)
    b = torch.stack((b0, b1), -1)
    return a, b


def _affine_fns():
    def one(t):
        return torch.ones_like(t)

    def zero(t):
        return torch.zeros_like(t)

    return {
        "translate_x": lambda t: _scalar_affine(t, one(t), zero(t), zero(t), one(t), t, zero(t)),
        "translate_y": lambda t: _scalar_affine(t, one(t), zero(t), zero(t), one(t), zero(t), t),
        # v points down, so [[c, s], [-s, c]] turns the content counter-clockwise on screen.
        "rotate": lambda t: _scalar_affine(
            t, torch.cos(t), torch.sin(t), -torch.sin(t), torch.cos(t), zero(t), zero(t)
        ),
        "scale": lambda t: _scalar_affine(t, torch.exp(t), zero(t), zero(t), torch.exp(t), zero(t), zero(t)),
        "shear_x": lambda t: _scalar_affine(t, one(t), t, zero(t), one(t), zero(t), zero(t)),
        "shear_y": lambda t: _scalar_affine(t, one(t), zero(t), t, one(t), zero(t), zero(t)),
        "stretch_x": lambda t: _scalar_affine(t, torch.exp(t), zero(t), zero(t), one(t), zero(t), zero(t)),
        "stretch_y": lambda t: _scalar_affine(t, one(t), zero(t), zero(t), torch.exp(t), zero(t), zero(t)),
        "hyperbolic": lambda t: _scalar_affine(
            t, torch.cosh(t), torch.sinh(t), torch.sinh(t), torch.cosh(t), zero(t), zero(t)
        ),
    }


_AFFINE = _affine_fns()

#: ``d/dt M_t`` at ``t = 0`` of each geometric transform: ``(G, g)`` with ``M_t p ~ p + t (G p + g)``.
GENERATORS: dict[str, tuple[tuple[tuple[float, float], tuple[float, float]], tuple[float, float]]] = {
    "translate_x": (((0.0, 0.0), (0.0, 0.0)), (1.0, 0.0)),
    "translate_y": (((0.0, 0.0), (0.0, 0.0)), (0.0, 1.0)),
    "rotate": (((0.0, 1.0), (-1.0, 0.0)), (0.0, 0.0)),
    "scale": (((1.0, 0.0), (0.0, 1.0)), (0.0, 0.0)),
    "shear_x": (((0.0, 1.0), (0.0, 0.0)), (0.0, 0.0)),
    "shear_y": (((0.0, 0.0), (1.0, 0.0)), (0.0, 0.0)),
    "stretch_x": (((1.0, 0.0), (0.0, 0.0)), (0.0, 0.0)),
    "stretch_y": (((0.0, 0.0), (0.0, 1.0)), (0.0, 0.0)),
    "hyperbolic": (((0.0, 1.0), (1.0, 0.0)), (0.0, 0.0)),
}

#: All transforms by name, in report order.
TRANSFORMS: dict[str, ImageTransform] = {
    tr.name: tr
    for tr in (
        ImageTransform("translate_x", "geometric", "pixels", "shift right by t pixels"),
        ImageTransform("translate_y", "geometric", "pixels", "shift down by t pixels"),
        ImageTransform("rotate", "geometric", "radians", "rotate counter-clockwise about the centre"),
        ImageTransform("scale", "geometric", "log-scale", "zoom by e^t about the centre"),
        ImageTransform("shear_x", "geometric", "slope", "u += t v"),
        ImageTransform("shear_y", "geometric", "slope", "v += t u"),
        ImageTransform("stretch_x", "geometric", "log-scale", "u *= e^t"),
        ImageTransform("stretch_y", "geometric", "log-scale", "v *= e^t"),
        ImageTransform("hyperbolic", "geometric", "rapidity", "hyperbolic rotation (squeeze along the diagonals)"),
        ImageTransform("saturation", "colour", "log-gain", "x <- grey + e^t (x - grey), RGB images"),
        ImageTransform("brightness", "colour", "log-gain", "x <- e^t x"),
    )
}
TRANSFORM_NAMES: tuple[str, ...] = tuple(TRANSFORMS)
GEOMETRIC_NAMES: tuple[str, ...] = tuple(n for n, tr in TRANSFORMS.items() if tr.geometric)
#: Rec. 601 luma weights: the grey value that saturation keeps fixed.
LUMA_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)


def get_transform(name: str | ImageTransform) -> ImageTransform:
    """The transform called ``name``; ``ValueError`` listing the valid names otherwise."""
    if isinstance(name, ImageTransform):
        return name
    if name not in TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}; valid values: {', '.join(TRANSFORM_NAMES)}")
    return TRANSFORMS[name]


def resolve_transforms(names: str | ImageTransform | list | tuple | None = None) -> list[ImageTransform]:
    """Transforms from names (``None``: all; ``"geometric"``: the geometric ones)."""
    if names is None:
        return list(TRANSFORMS.values())
    if isinstance(names, (str, ImageTransform)):
        names = [names]
    out: list[ImageTransform] = []
    for n in names:
        if n == "geometric":
            out += [TRANSFORMS[g] for g in GEOMETRIC_NAMES]
        else:
            out.append(get_transform(n))
    if not out:
        raise ValueError(f"no transforms given; valid values: {', '.join(TRANSFORM_NAMES)}")
    return out


# ----------------------------------------------------------------------------- sampling


def keys_weights(frac: torch.Tensor) -> torch.Tensor:
    """Keys (a = -1/2) cubic-convolution weights ``[..., 4]`` for taps at offsets -1, 0, 1, 2.

    ``frac`` in [0, 1) is the position past the tap at offset 0. At ``frac = 0`` the weights are
    ``(0, 1, 0, 0)`` exactly (interpolation), and they sum to 1 for every ``frac``.
    """
    f = frac
    f2, f3 = f * f, f * f * f
    w_m1 = -0.5 * f3 + f2 - 0.5 * f
    w_0 = 1.5 * f3 - 2.5 * f2 + 1.0
    w_1 = -1.5 * f3 + 2.0 * f2 + 0.5 * f
    w_2 = 0.5 * f3 - 0.5 * f2
    return torch.stack((w_m1, w_0, w_1, w_2), dim=-1)


def _fold(index: torch.Tensor, size: int, padding: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Integer tap indices -> in-range indices (and a validity mask for zero padding)."""
    if padding == "zeros":
        valid = (index >= 0) & (index < size)
        return index.clamp(0, size - 1), valid
    if padding == "border":
        return index.clamp(0, size - 1), None
    # reflection about the outer pixel edges (symmetric: -1 -> 0, size -> size - 1), periodic 2*size
    period = 2 * size
    m = torch.remainder(index, period)
    return torch.where(m >= size, period - 1 - m, m), None


def sample_bicubic(
    images: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor, padding: Padding = "zeros"
) -> torch.Tensor:
    """Bicubic (Keys, a = -1/2) samples of ``images`` at source positions ``(xs, ys)``.

    Args:
        images: float ``[B, C, H, W]``.
        xs, ys: source column / row in pixel-index units (pixel centres at integers),
            ``[B, h, w]`` or ``[1, h, w]`` (shared by the batch); differentiable.
        padding: ``"zeros"``, ``"border"`` or ``"reflection"``.

    Returns:
        ``[B, C, h, w]``.
    """
    if padding not in PADDINGS:
        raise ValueError(f"unknown padding {padding!r}; valid values: {', '.join(PADDINGS)}")
    b, c, hh, ww = images.shape
    x0 = torch.floor(xs.detach())
    y0 = torch.floor(ys.detach())
    wx = keys_weights(xs - x0)  # [b', h, w, 4]
    wy = keys_weights(ys - y0)
    taps = torch.arange(-1, 3, device=images.device)
    ix, vx = _fold(x0.long()[..., None] + taps, ww, padding)
    iy, vy = _fold(y0.long()[..., None] + taps, hh, padding)
    if vx is not None:
        wx = wx * vx.to(wx.dtype)
        wy = wy * vy.to(wy.dtype)
    weights = wy[..., :, None] * wx[..., None, :]  # [b', h, w, 4, 4]
    flat = iy[..., :, None] * ww + ix[..., None, :]  # [b', h, w, 4, 4]
    out_h, out_w = xs.shape[-2:]
    flat = flat.reshape(flat.shape[0], 1, -1)
    weights = weights.reshape(weights.shape[0], 1, out_h, out_w, 16)
    src = images.reshape(b, c, hh * ww)
    # The 16 taps of every output value are gathered at once; channel chunks bound the memory.
    step = max(1, _GATHER_BUDGET // max(1, b * out_h * out_w * 16))
    outs = []
    for c0 in range(0, c, step):
        part = src[:, c0 : c0 + step]
        values = torch.gather(part, 2, flat.expand(b, part.shape[1], -1)).reshape(b, part.shape[1], out_h, out_w, 16)
        outs.append((values * weights).sum(-1))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)


def _source_coordinates(
    transform: ImageTransform,
    t: torch.Tensor,
    size: tuple[int, int],
    reference: tuple[int, int],
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-index source positions ``[B', h, w]`` of ``out(p) = in(M_t^-1 p)`` on an ``h x w`` map."""
    h, w = size
    ref_h, ref_w = reference
    sx, sy = w / ref_w, h / ref_h  # map pixels per reference pixel
    a, b = transform.affine(-t)  # M_t^-1 = M_{-t}: one-parameter groups
    a = a.reshape(-1, 2, 2)
    b = b.reshape(-1, 2)
    # Map-pixel coordinates centred on the image centre (exact at t = 0: integers +- (n-1)/2).
    u = torch.arange(w, device=device, dtype=dtype) - (w - 1) / 2.0
    v = torch.arange(h, device=device, dtype=dtype) - (h - 1) / 2.0
    vv, uu = torch.meshgrid(v, u, indexing="ij")  # [h, w]
    # Conjugate by the scaling S = diag(sx, sy): in map pixels the map is S M S^-1.
    a00, a01 = a[:, 0, 0, None, None], a[:, 0, 1, None, None] * (sx / sy)
    a10, a11 = a[:, 1, 0, None, None] * (sy / sx), a[:, 1, 1, None, None]
    us = a00 * uu + a01 * vv + b[:, 0, None, None] * sx
    vs = a10 * uu + a11 * vv + b[:, 1, None, None] * sy
    return us + (w - 1) / 2.0, vs + (h - 1) / 2.0


def _check_images(images: torch.Tensor, name: str = "images") -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [B, C, H, W], got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"{name} must be [B, C, H, W], got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be floating point (float32 or float64, e.g. uint8 / 255), got {images.dtype}")


def _as_t(t: float | torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=images.dtype, device=images.device)
    if t.ndim > 1 or (t.ndim == 1 and t.shape[0] not in (1, images.shape[0])):
        raise ValueError(f"t must be a scalar or one value per image ([{images.shape[0]}]), got shape {tuple(t.shape)}")
    return t


def apply_transform(
    images: torch.Tensor,
    transform: str | ImageTransform,
    t: float | torch.Tensor,
    reference_size: tuple[int, int] | None = None,
    padding: Padding = "zeros",
) -> torch.Tensor:
    """``T_t(images)``; see :class:`ImageTransform` for the arguments."""
    tr = get_transform(transform)
    _check_images(images)
    t = _as_t(t, images)
    if tr.kind == "colour":
        scale = torch.exp(t).reshape(-1, 1, 1, 1) if t.ndim else torch.exp(t)
        if tr.name == "brightness":
            return images * scale
        if images.shape[1] != 3:
            raise ValueError(f"saturation needs RGB images (3 channels), got {images.shape[1]} channel(s)")
        luma = torch.tensor(LUMA_WEIGHTS, dtype=images.dtype, device=images.device).reshape(1, 3, 1, 1)
        grey = (images * luma).sum(1, keepdim=True)
        return grey + scale * (images - grey)
    if padding not in PADDINGS:
        raise ValueError(f"unknown padding {padding!r}; valid values: {', '.join(PADDINGS)}")
    size = (int(images.shape[-2]), int(images.shape[-1]))
    reference = size if reference_size is None else (int(reference_size[0]), int(reference_size[1]))
    xs, ys = _source_coordinates(tr, t, size, reference, images.device, images.dtype)
    return sample_bicubic(images, xs, ys, padding)


def _central_difference(images: torch.Tensor, dim: int, padding: str) -> torch.Tensor:
    """``(x[i+1] - x[i-1]) / 2`` along ``dim`` (-1: columns, -2: rows), neighbours outside per ``padding``.

    This is the derivative of the Keys (a = -1/2) interpolant at the pixel centres.
    """
    n = images.shape[dim]
    if n == 1:
        return torch.zeros_like(images)
    first, last = images.narrow(dim, 0, 1), images.narrow(dim, n - 1, 1)
    if padding == "zeros":
        before, after = torch.zeros_like(first), torch.zeros_like(last)
    else:  # border and reflection (symmetric) both repeat the edge pixel one step out
        before, after = first, last
    padded = torch.cat((before, images, after), dim=dim)
    return (padded.narrow(dim, 2, n) - padded.narrow(dim, 0, n)) * 0.5


def image_tangent(
    images: torch.Tensor,
    transform: str | ImageTransform,
    reference_size: tuple[int, int] | None = None,
    padding: Padding = "zeros",
) -> torch.Tensor:
    """``d/dt T_t(images)`` at ``t = 0``, in closed form (no differentiation needed).

    Geometric transforms: ``-grad(x) . (G p + g)`` with the generator ``(G, g)`` of
    :data:`GENERATORS` (in the map's pixels) and the gradient of the bicubic interpolant at the
    pixel centres, i.e. central differences with the sampler's padding; this equals the derivative
    of :func:`apply_transform` at ``t = 0`` exactly. Colour: ``x`` (brightness), ``x - grey``
    (saturation).
    """
    tr = get_transform(transform)
    _check_images(images)
    if tr.kind == "colour":
        if tr.name == "brightness":
            return images.clone()
        if images.shape[1] != 3:
            raise ValueError(f"saturation needs RGB images (3 channels), got {images.shape[1]} channel(s)")
        luma = torch.tensor(LUMA_WEIGHTS, dtype=images.dtype, device=images.device).reshape(1, 3, 1, 1)
        return images - (images * luma).sum(1, keepdim=True)
    if padding not in PADDINGS:
        raise ValueError(f"unknown padding {padding!r}; valid values: {', '.join(PADDINGS)}")
    h, w = int(images.shape[-2]), int(images.shape[-1])
    ref_h, ref_w = (h, w) if reference_size is None else (int(reference_size[0]), int(reference_size[1]))
    sx, sy = w / ref_w, h / ref_h
    (g00, g01), (g10, g11) = GENERATORS[tr.name][0]
    b0, b1 = GENERATORS[tr.name][1]
    u = torch.arange(w, device=images.device, dtype=images.dtype) - (w - 1) / 2.0
    v = torch.arange(h, device=images.device, dtype=images.dtype) - (h - 1) / 2.0
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    # Velocity of the content in map pixels (S G S^-1 p + S g); the sampled source moves the other way.
    vel_u = g00 * uu + g01 * (sx / sy) * vv + b0 * sx
    vel_v = g10 * (sy / sx) * uu + g11 * vv + b1 * sy
    out = torch.zeros_like(images)
    if bool((vel_u != 0).any()):
        out = out - _central_difference(images, -1, padding) * vel_u
    if bool((vel_v != 0).any()):
        out = out - _central_difference(images, -2, padding) * vel_v
    return out


def acts_on(tensor: torch.Tensor, transform: ImageTransform, is_input: bool = False) -> bool:
    """Whether ``transform`` acts on ``tensor``: images always; feature maps ``[B,C,h,w]`` with
    ``h, w > 1`` for geometric transforms; vectors and 1x1 maps never (the trivial action)."""
    if is_input:
        return True
    return transform.geometric and tensor.ndim == 4 and tensor.shape[-1] > 1 and tensor.shape[-2] > 1
