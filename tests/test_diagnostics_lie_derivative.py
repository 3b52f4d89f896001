"""Lie derivatives: exact invariances give ~0, closed forms are matched, finite differences and
the double-VJP baseline agree with forward mode, bad input fails clearly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from worldmodel.diagnostics.lie_derivative import lie_derivative, local_equivariance_error
from worldmodel.diagnostics.transforms import GEOMETRIC_NAMES, LUMA_WEIGHTS, TRANSFORM_NAMES

D = torch.float64


def _digits_like(n=3, size=15, channels=3, border=3):
    """Random images with a zero border of ``border`` pixels (content away from the edges)."""
    g = torch.Generator().manual_seed(1)
    x = torch.zeros(n, channels, size, size, dtype=D)
    x[..., border:-border, border:-border] = torch.rand(
        n, channels, size - 2 * border, size - 2 * border, generator=g, dtype=D
    )
    return x


def _small_cnn(channels=3):
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(channels, 6, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(6, 8, 3, stride=2, padding=1),
            nn.Tanh(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 5),
        )
        .to(D)
        .eval()
    )


# ----------------------------------------------------------------------------- exact invariance


def total_sum(x):
    """Invariant to translations of content away from the border, exactly: the Keys weights form a
    partition of unity, so sum_p T_t x(p) = sum_k x_k sum_p W(p - t - k) = sum_k x_k whenever all
    taps that carry content stay inside the image (zero padding, zero border)."""
    return x.sum(dim=(1, 2, 3)).unsqueeze(1)


def centre_pixel(x):
    """Invariant to every linear map about the centre (rotation, scale, shears, stretches,
    hyperbolic rotation), exactly: on an odd-sized image the centre pixel sits at the fixed point 0
    of M_t, and the interpolant returns the pixel value at a node."""
    c = x.shape[-1] // 2
    return x[:, :, c, c]


def normalised(x):
    """Invariant to brightness: f(e^t x) = e^t x / ||e^t x|| = f(x)."""
    return x.flatten(1) / x.flatten(1).norm(dim=1, keepdim=True)


def grey(x):
    """Invariant to saturation: with weights w summing to 1, w . (g + e^t (x - g)) = g + e^t (w . x - g) = g."""
    w = torch.tensor(LUMA_WEIGHTS, dtype=x.dtype).reshape(1, 3, 1, 1)
    return (x * w).sum(1).flatten(1)


INVARIANT = {
    "translate_x": total_sum,
    "translate_y": total_sum,
    "brightness": normalised,
    "saturation": grey,
    **{n: centre_pixel for n in GEOMETRIC_NAMES if not n.startswith("translate")},
}


@pytest.mark.parametrize("name", TRANSFORM_NAMES)
def test_exactly_invariant_functions_have_zero_lee(name):
    x = _digits_like()
    d = lie_derivative(INVARIANT[name], x, name)
    scale = lie_derivative(_small_cnn(), x, name).norm() + 1.0
    assert float(d.norm()) < 1e-10 * float(scale), name


# ----------------------------------------------------------------------------- closed forms


def test_closed_form_values_on_a_ramp():
    """x(u, v) = u (a ramp, reproduced exactly by the interpolant). For the pixel p = (u0, v0):
    translate_x: T_t x(p) = u0 - t -> -1; rotate: (R_{-t} p)_u = cos t u0 - sin t v0 -> -v0;
    scale: e^{-t} u0 -> -u0; shear_x: u0 - t v0 -> -v0; stretch_x: e^{-t} u0 -> -u0."""
    size = 15
    u = torch.arange(size, dtype=D) - (size - 1) / 2
    ramp = u.expand(1, 1, size, size).clone()
    r, c = 5, 9  # interior pixel: its taps never reach the border
    u0, v0 = c - (size - 1) / 2, r - (size - 1) / 2

    def pixel(x):
        return x[:, :, r, c]

    expected = {"translate_x": -1.0, "rotate": -v0, "scale": -u0, "shear_x": -v0, "stretch_x": -u0, "translate_y": 0.0}
    for name, value in expected.items():
        assert float(lie_derivative(pixel, ramp, name)) == pytest.approx(value, abs=1e-12), name


def test_closed_form_brightness_of_squared_norm():
    """f(x) = ||x||^2: f(e^t x) = e^{2t} ||x||^2, so L f = 2 ||x||^2 and LEE = 4 ||x||^4."""
    x = _digits_like()
    d = lie_derivative(lambda z: z.square().sum(dim=(1, 2, 3)).unsqueeze(1), x, "brightness")
    assert torch.allclose(d[:, 0], 2 * x.square().sum(dim=(1, 2, 3)), rtol=1e-12)


def test_pointwise_square_aliases_with_the_closed_form():
    """Equivariance of the pointwise map f(x) = x^2 under translate_x: with the central difference
    dx_j = (x_{j+1} - x_{j-1}) / 2 (the interpolant's derivative at the nodes),
    L f = -2 x dx + d(x^2) = dx_j (x_{j+1} - 2 x_j + x_{j-1}): non-zero, a product of the
    gradient and the discrete Laplacian. This is the aliasing of pointwise non-linearities."""
    x = _digits_like(channels=1)
    d = lie_derivative(lambda z: z * z, x, "translate_x", output="map")
    p = torch.nn.functional.pad(x, (1, 1))
    dx = (p[..., 2:] - p[..., :-2]) / 2
    lap = p[..., 2:] - 2 * x + p[..., :-2]
    assert torch.allclose(d, dx * lap, atol=1e-12)
    assert float(d.abs().max()) > 1e-2


def test_pointwise_linear_maps_are_exactly_equivariant():
    """A 1x1 convolution without bias commutes with every warp (T is linear in the image), so its
    equivariance Lie derivative vanishes for every geometric transform."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 1, bias=False).to(D).eval()
    x = _digits_like()
    for name in GEOMETRIC_NAMES:
        assert float(lie_derivative(conv, x, name, output="map").abs().max()) < 1e-12, name


# ----------------------------------------------------------------------------- agreement of the methods


def test_finite_differences_agree_within_one_percent_for_every_transform():
    """Float64, central differences with h = 1e-6 (error O(h): the interpolant is C1, not C2)."""
    net = _small_cnn()
    x = _digits_like(n=2, size=12, border=1)
    res = local_equivariance_error(net, x, head="softmax", progress=False)
    for name in TRANSFORM_NAMES:
        fwd = lie_derivative(net, x, name, head="softmax")
        fd = lie_derivative(net, x, name, head="softmax", method="finite_difference")
        assert float((fwd - fd).norm() / fwd.norm()) < 0.01, name
        assert res[name].lee.tolist() == pytest.approx(fwd.square().sum(1).tolist(), rel=1e-9)


def test_double_vjp_and_linearize_compute_the_same_quantity():
    net = _small_cnn()
    x = _digits_like(n=2, size=12, border=1)
    for name in ("translate_x", "rotate", "brightness"):
        a = lie_derivative(net, x, name)
        b = lie_derivative(net, x, name, method="double_vjp")
        c = lie_derivative(net, x, name, method="linearize")
        assert torch.allclose(a, b, atol=1e-12) and torch.allclose(a, c, atol=1e-12), name


def test_map_outputs_match_finite_differences_at_another_resolution():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2, padding=1)).to(D).eval()
    x = _digits_like(n=2, size=12, border=1)
    for name in ("translate_y", "scale", "hyperbolic"):
        fwd = lie_derivative(net, x, name)
        assert fwd.shape == (2, 4, 6, 6)
        fd = lie_derivative(net, x, name, method="finite_difference")
        assert float((fwd - fd).norm() / fwd.norm()) < 0.01, name


def test_float32_runs_and_lee_result_summary():
    net = _small_cnn().float()
    x = _digits_like(n=4, size=12).float()
    res = local_equivariance_error(net, x, ["translate_x", "rotate"], head="softmax", batch_size=3, progress=False)
    s = res["rotate"].summary()
    assert s["images"] == 4 and s["output"] == "vector" and s["lee"] > 0 and s["relative"] > 0


# ----------------------------------------------------------------------------- bad input


class _Sized(nn.Module):
    image_size = 12

    def forward(self, x):
        return x.flatten(1)


def test_bad_input_fails_clearly():
    x = _digits_like(n=2, size=12)
    with pytest.raises(TypeError, match="must return a tensor"):
        lie_derivative(lambda z: (z, z), x, "rotate")
    with pytest.raises(ValueError, match="expects 12x12 images, got 15x15"):
        lie_derivative(_Sized().eval(), _digits_like(n=2, size=15), "rotate")
    with pytest.raises(ValueError, match="floating point"):
        lie_derivative(_Sized().eval(), (x * 255).to(torch.uint8), "rotate")
    with pytest.raises(ValueError, match="valid values: translate_x, translate_y"):
        lie_derivative(_Sized().eval(), x, "twirl")
    with pytest.raises(ValueError, match="model.to"):
        lie_derivative(_small_cnn().float(), x, "rotate")
    with pytest.raises(ValueError, match="valid values: jvp, linearize, double_vjp, finite_difference"):
        lie_derivative(_Sized().eval(), x, "rotate", method="magic")
    with pytest.raises(ValueError, match="valid values: none, softmax"):
        lie_derivative(_Sized().eval(), x, "rotate", head="sigmoid")
    with pytest.raises(ValueError, match="valid values: auto, vector, map"):
        lie_derivative(_Sized().eval(), x, "rotate", output="grid")
