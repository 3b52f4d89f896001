"""NISO's closed-form isometry: SO(k) projection, its stable gradient, and the operator parametrisation."""

from __future__ import annotations

import math

import pytest
import torch

from worldmodel.models.isometry import (
    SpectralOperator,
    equivariance_error,
    multiplicity_loss,
    polar_project,
    solve_isometry,
    spectral_mask,
)


def _random_rotation(n: int, gen: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=dtype))
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    if torch.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _assert_so(tau: torch.Tensor, atol: float = 1e-5) -> None:
    eye = torch.eye(tau.shape[-1], dtype=tau.dtype).expand_as(tau)
    torch.testing.assert_close(tau.transpose(-1, -2) @ tau, eye, atol=atol, rtol=0)
    torch.testing.assert_close(torch.linalg.det(tau), torch.ones(tau.shape[0], dtype=tau.dtype), atol=atol, rtol=0)


def test_tau_is_a_rotation_commuting_with_lambda_for_distinct_eigenvalues_and_hard_mask():
    gen = torch.Generator().manual_seed(0)
    k, d = 8, 8
    a = torch.randn(16, k, d, generator=gen)
    b = torch.randn(16, k, d, generator=gen)
    lam = torch.linspace(0.0, 3.5, k)  # distinct
    tau = solve_isometry(a, b, lam, mask="hard")
    _assert_so(tau)
    big = torch.diag(lam)
    torch.testing.assert_close(tau @ big, big @ tau, atol=1e-5, rtol=0)
    # The soft mask (training) gives rotations too, which need not commute.
    _assert_so(solve_isometry(a, b, lam, mask="soft"))
    with pytest.raises(ValueError, match="valid: 'soft', 'hard'"):
        spectral_mask(lam, "fuzzy")


@pytest.mark.parametrize("mask", ["hard", "soft"])
def test_tau_recovers_an_isometry_that_commutes_with_the_operator(mask):
    gen = torch.Generator().manual_seed(1)
    # eigenvalues with multiplicities 3, 2, 3; gaps of 60 make the soft mask block-diagonal to float precision
    lam = torch.tensor([0.0, 0.0, 0.0, 60.0, 60.0, 120.0, 120.0, 120.0], dtype=torch.float64)
    blocks = [_random_rotation(n, gen) for n in (3, 2, 3)]
    rot = torch.block_diag(*blocks)
    assert torch.allclose(rot @ torch.diag(lam), torch.diag(lam) @ rot)  # commutes with Omega's spectrum
    a = torch.randn(4, 8, 12, generator=gen, dtype=torch.float64)
    b = rot @ a
    tau = solve_isometry(a, b, lam, mask=mask)
    torch.testing.assert_close(tau, rot.expand_as(tau), atol=1e-9, rtol=0)
    assert float(equivariance_error(tau, a, b).max()) < 1e-16
    # a rotation that mixes eigenspaces is *not* recovered: tau stays block-diagonal
    mixing = _random_rotation(8, gen)
    tau_mix = solve_isometry(a, mixing @ a, lam, mask=mask)
    off_block = tau_mix.clone()
    off_block[:, :3, :3] = 0
    off_block[:, 3:5, 3:5] = 0
    off_block[:, 5:, 5:] = 0
    assert float(off_block.abs().max()) < 1e-9


def test_polar_projection_backward_matches_finite_differences():
    gen = torch.Generator().manual_seed(2)
    square = torch.randn(3, 5, 5, generator=gen, dtype=torch.float64)
    square[0] = -square[0]  # make sure both determinant signs occur
    dets = torch.linalg.det(square)
    assert (dets < 0).any() and (dets > 0).any()
    tall = torch.randn(2, 9, 4, generator=gen, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: polar_project(x, special=True), (square.requires_grad_(),))
    assert torch.autograd.gradcheck(lambda x: polar_project(x, special=False), (square.detach().requires_grad_(),))
    assert torch.autograd.gradcheck(lambda x: polar_project(x), (tall.requires_grad_(),))
    with pytest.raises(ValueError, match="n >= k"):
        polar_project(torch.randn(3, 5))


def test_gradients_stay_finite_with_repeated_eigenvalues_and_singular_values():
    k, d = 8, 8
    op = SpectralOperator(num_positions=36, rank=k, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        op.eigen_root.zero_()  # all eigenvalues equal (0): the mask P is all ones
    gen = torch.Generator().manual_seed(4)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen))
    a = q[:k].expand(2, k, d).clone().requires_grad_()  # A A^T = I: every singular value of B A^T is 1
    b = a.detach().clone().requires_grad_()
    phi, lam, mass = op()
    assert torch.unique(lam).numel() == 1
    tau = solve_isometry(a, b, lam)
    torch.testing.assert_close(tau, torch.eye(k).expand_as(tau), atol=1e-5, rtol=0)
    loss = (tau @ a - b).abs().mean() + (tau * torch.randn(k, k, generator=gen)).sum() + phi.sum()
    loss.backward()
    grads = [a.grad, b.grad, *(p.grad for p in op.parameters())]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # torch.linalg.svd's own backward is not finite at the same point: the custom Function is needed
    x = (spectral_mask(lam.detach()) * (b.detach() @ a.detach().transpose(1, 2))).requires_grad_()
    u, _, vh = torch.linalg.svd(x)
    ((u @ vh) * torch.randn(k, k, generator=gen)).sum().backward()
    assert not torch.isfinite(x.grad).all()


def test_operator_stays_m_orthonormal_sorted_and_nonnegative_after_every_step():
    op = SpectralOperator(num_positions=25, rank=6, generator=torch.Generator().manual_seed(5))
    opt = torch.optim.Adam(op.parameters(), lr=0.2)
    gen = torch.Generator().manual_seed(6)
    target = torch.randn(25, 6, generator=gen)
    for _ in range(8):
        phi, lam, mass = op()
        loss = (phi - target).square().sum() - lam.sum() + (mass - 3.0).square().sum() + multiplicity_loss(lam)
        opt.zero_grad()
        loss.backward()
        opt.step()
        phi, lam, mass = op()
        gram = phi.T @ (mass[:, None] * phi)
        torch.testing.assert_close(gram, torch.eye(6), atol=1e-4, rtol=0)
        assert (mass > 0).all() and (lam >= 0).all() and (torch.diff(lam) >= 0).all()
    assert float((mass.detach() - 1.0).abs().max()) > 0.1  # the mass really was learned, not left at 1
    omega = op.operator()
    # Omega Phi = Phi Lambda: Phi holds eigenvectors of the operator
    torch.testing.assert_close(omega @ phi, phi * lam, atol=1e-3, rtol=1e-3)


def test_multiplicity_loss_is_largest_for_one_cluster_and_vanishes_for_spread_eigenvalues():
    k = 8
    assert math.isclose(float(multiplicity_loss(torch.zeros(k))), math.sqrt(k - 1), rel_tol=1e-6)
    assert float(multiplicity_loss(torch.arange(k) * 50.0)) < 1e-12
    two_clusters = torch.tensor([0.0] * 4 + [50.0] * 4)
    assert 0 < float(multiplicity_loss(two_clusters)) < math.sqrt(k - 1)
