"""One-parameter image transforms: identity at t = 0, group law, exact tangents, clear errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import jvp

from worldmodel.diagnostics.transforms import (
    GENERATORS,
    GEOMETRIC_NAMES,
    PADDINGS,
    TRANSFORM_NAMES,
    TRANSFORMS,
    apply_transform,
    get_transform,
    image_tangent,
)


def _images(dtype=torch.float64, shape=(2, 3, 9, 11)):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(0), dtype=dtype)


@pytest.mark.parametrize("name", TRANSFORM_NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_identity_at_zero(name, dtype):
    """T_0 = identity for every transform, padding, scalar or per-image t (the original's stretch was not)."""
    x = _images(dtype)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    for padding in PADDINGS:
        for t in (0.0, torch.zeros(2, dtype=dtype)):
            assert torch.allclose(apply_transform(x, name, t, padding=padding), x, atol=tol, rtol=0), (name, padding)


@pytest.mark.parametrize("name", GEOMETRIC_NAMES)
def test_one_parameter_group(name):
    """M_s M_t = M_{s+t} for the coordinate maps (closed forms are exponentials of one generator)."""
    tr = TRANSFORMS[name]
    s, t = torch.tensor(0.3, dtype=torch.float64), torch.tensor(-0.17, dtype=torch.float64)
    a1, b1 = tr.affine(s)
    a2, b2 = tr.affine(t)
    a3, b3 = tr.affine(s + t)
    assert torch.allclose(a1 @ a2, a3, atol=1e-12)
    assert torch.allclose(a1 @ b2 + b1, b3, atol=1e-12)


@pytest.mark.parametrize("name", GEOMETRIC_NAMES)
def test_generators_are_the_derivatives_at_zero(name):
    t0 = torch.zeros((), dtype=torch.float64)
    _, (da, db) = jvp(TRANSFORMS[name].affine, (t0,), (torch.ones_like(t0),))
    g, b = GENERATORS[name]
    assert torch.allclose(da, torch.tensor(g, dtype=torch.float64)) and torch.allclose(
        db, torch.tensor(b, dtype=torch.float64)
    )


def test_integer_translation_shifts_pixels_and_units_are_pixels():
    x = _images()
    assert torch.allclose(apply_transform(x, "translate_x", 2.0)[..., 2:], x[..., :-2], atol=1e-12)
    assert torch.equal(apply_transform(x, "translate_x", 2.0)[..., :2], torch.zeros_like(x[..., :2]))  # zeros padding
    assert torch.allclose(apply_transform(x, "translate_y", -1.0)[..., :-1, :], x[..., 1:, :], atol=1e-12)


def test_rotation_is_counter_clockwise_on_screen():
    """A bright pixel right of the centre moves to above the centre (rows grow downwards)."""
    x = torch.zeros(1, 1, 9, 9, dtype=torch.float64)
    x[0, 0, 4, 7] = 1.0
    y = apply_transform(x, "rotate", math.pi / 2)
    assert y[0, 0, 1, 4] == pytest.approx(1.0, abs=1e-9)


def test_bicubic_reproduces_linear_ramps():
    """Keys' a = -1/2 kernel is exact on linear images (torch's bicubic, a = -3/4, is not), so a
    sub-pixel translation of a ramp is the shifted ramp inside the image."""
    u = torch.arange(16, dtype=torch.float64)
    ramp = (0.5 * u + 1.0).expand(1, 1, 16, 16).clone()
    y = apply_transform(ramp, "translate_x", 0.37, padding="border")
    assert torch.allclose(y[..., 3:-3], ramp[..., 3:-3] - 0.5 * 0.37, atol=1e-12)


@pytest.mark.parametrize("padding", PADDINGS)
def test_closed_form_tangent_is_the_derivative_of_the_warp(padding):
    """image_tangent == d/dt apply_transform at 0 (forward mode through the sampler), incl. feature
    maps of another resolution than the reference image."""
    t0 = torch.zeros((), dtype=torch.float64)
    for shape, ref in (((2, 3, 9, 11), None), ((2, 4, 5, 6), (10, 12))):
        x = _images(shape=shape)
        for name in TRANSFORM_NAMES:
            if name == "saturation" and shape[1] != 3:
                continue
            _, d = jvp(
                lambda t, n=name, x=x, ref=ref: apply_transform(x, n, t, ref, padding), (t0,), (torch.ones_like(t0),)
            )
            assert torch.allclose(image_tangent(x, name, ref, padding), d, atol=1e-12), (name, shape)


def test_feature_maps_move_in_the_input_frame():
    """A 2-pixel input translation is a 1-pixel translation of a half-resolution map."""
    m = _images(shape=(1, 2, 6, 8))
    moved = apply_transform(m, "translate_x", 2.0, reference_size=(12, 16))
    assert torch.allclose(moved[..., 1:], m[..., :-1], atol=1e-12)


def test_errors_name_the_valid_values():
    x = _images()
    with pytest.raises(ValueError, match="valid values: translate_x"):
        get_transform("twist")
    with pytest.raises(ValueError, match="valid values: zeros, border, reflection"):
        apply_transform(x, "rotate", 0.1, padding="wrap")
    with pytest.raises(ValueError, match="RGB"):
        apply_transform(x[:, :1], "saturation", 0.1)
    with pytest.raises(ValueError, match="floating point"):
        apply_transform((x * 255).to(torch.uint8), "rotate", 0.1)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        apply_transform(x[0], "rotate", 0.1)
