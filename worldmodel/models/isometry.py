"""Closed-form latent isometries for Neural Isometries (NISO).

The pieces of the NISO operator and map solver, independent of any encoder:

* :func:`polar_project`: the orthogonal (or special-orthogonal) factor ``U V^T`` of a batch of
  matrices, with a hand-written backward pass whose denominators are ``s_i + s_j`` only (see
  :class:`_PolarProjection`), so gradients stay finite when singular values coincide.
* :class:`SpectralOperator`: the learned operator ``Omega = Phi Lambda Phi^T M``: a diagonal
  positive mass matrix ``M``, an ``M``-orthonormal eigenbasis ``Phi`` (``|N| x k``) and sorted,
  non-negative eigenvalues ``Lambda``.
* :func:`spectral_mask`, :func:`solve_isometry`, :func:`multiplicity_loss`,
  :func:`equivariance_error`: the map ``tau`` between two projected latents and the quantities
  the losses and evaluations need.

Shapes: latents on the grid are ``[B, N, d]`` (``N`` positions, ``d`` channels); projected
latents are ``[B, k, d]``; maps ``tau`` are ``[B, k, k]``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

MaskKind = Literal["soft", "hard"]
MASK_KINDS: tuple[str, ...] = ("soft", "hard")

#: Smallest magnitude allowed for the ``s_i + s_j`` (and ``s_i``) denominators of the backward pass.
DEFAULT_GRAD_EPS = 1e-6


def _safe_denominator(den: torch.Tensor, eps: float) -> torch.Tensor:
    """``den`` with its magnitude clamped to at least ``eps``, keeping its sign (0 -> +eps)."""
    sign = torch.where(den < 0, -torch.ones_like(den), torch.ones_like(den))
    return sign * den.abs().clamp_min(eps)


class _PolarProjection(torch.autograd.Function):
    """Orthogonal polar factor ``Q = U D V^T`` of ``X = U S V^T`` (batched), with a stable backward.

    Why hand-written: ``torch.linalg.svd``'s backward differentiates ``U`` and ``V`` separately,
    and each of them is only defined up to rotations inside a space of equal singular values, so
    its formula carries ``1 / (s_i^2 - s_j^2)`` terms that blow up (inf/NaN) whenever two singular
    values meet. NISO hits that case all the time: the mask ``P`` is close to a block of ones for
    clustered eigenvalues and ``tau`` starts near the identity. The product ``U D V^T`` however is
    unique (for non-singular ``X``), and its derivative needs only ``1 / (s_i + s_j)``.

    Derivation (square case). Write ``X = Q H`` with ``Q = U D V^T`` orthogonal and
    ``H = V D S V^T`` symmetric, where ``D = diag(1, ..., 1, d_k)`` and ``d_k = det(U V^T)`` when
    a special-orthogonal result is asked for (``d_k = 1`` otherwise). Differentiating,
    ``dX = dQ H + Q dH``; with ``W = Q^T dQ`` skew (``Q^T Q = I``) and ``dH`` symmetric,
    ``Q^T dX - dX^T Q = W H + H W``. In the basis ``V`` (``H`` diagonal, entries
    ``sigma_i = d_i s_i``) this reads ``W~_ij (sigma_i + sigma_j) = C_ij`` with
    ``C = D G - G^T D``, ``G = U^T dX V``, ``W~ = V^T W V``, and ``dQ = U D W~ V^T``.
    The vector-Jacobian product for an upstream gradient ``Qbar`` follows by transposing these
    linear maps: with ``Y = D U^T Qbar V``,

        ``Xbar = U D [(Y - Y^T) / (sigma_i + sigma_j)] V^T``.

    Tall case (``n > k``, no determinant fix, used for the eigenbasis): ``dQ`` gains the part
    outside the column space, ``(I - U U^T) dX V S^-1 V^T``, whose transpose adds
    ``(Qbar - U U^T Qbar) V S^-1 V^T`` to ``Xbar``.

    ``sigma_i + sigma_j`` can still vanish where the projection itself is not differentiable
    (two zero singular values, or ``det < 0`` with the two smallest singular values equal: then
    the nearest rotation is not unique); there the denominator is clamped to ``eps`` in
    magnitude, which keeps the gradient finite and bounded.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, special: bool, eps: float) -> torch.Tensor:  # type: ignore[override]
        u, s, vh = torch.linalg.svd(x, full_matrices=False)
        square = x.shape[-1] == x.shape[-2]
        d = torch.ones_like(s)
        if special and square:
            det = torch.linalg.det(u @ vh)
            d[..., -1] = torch.where(det < 0, -1.0, 1.0).to(s.dtype)
        q = (u * d.unsqueeze(-2)) @ vh
        ctx.save_for_backward(u, s, vh, d)
        ctx.eps = eps
        return q

    @staticmethod
    def backward(ctx, grad_q: torch.Tensor):  # type: ignore[override]
        u, s, vh, d = ctx.saved_tensors
        eps = ctx.eps
        v = vh.transpose(-1, -2)
        ut = u.transpose(-1, -2)
        sigma = d * s
        den = sigma.unsqueeze(-1) + sigma.unsqueeze(-2)
        eye = torch.eye(s.shape[-1], dtype=s.dtype, device=s.device)
        # The diagonal of (Y - Y^T) is exactly zero; a unit denominator there avoids 0/0.
        den = torch.where(eye.bool(), torch.ones_like(den), _safe_denominator(den, eps))
        y = d.unsqueeze(-1) * (ut @ grad_q @ v)
        inner = (y - y.transpose(-1, -2)) / den
        grad_x = (u * d.unsqueeze(-2)) @ inner @ vh
        if u.shape[-2] > u.shape[-1]:  # tall: component orthogonal to the column space
            perp = grad_q - u @ (ut @ grad_q)
            grad_x = grad_x + (perp @ v / _safe_denominator(s, eps).unsqueeze(-2)) @ vh
        return grad_x, None, None


def polar_project(x: torch.Tensor, special: bool = False, eps: float = DEFAULT_GRAD_EPS) -> torch.Tensor:
    """Nearest matrix with orthonormal columns to ``x`` (``[..., n, k]``, ``n >= k``), batched.

    Args:
        x: matrices ``[..., n, k]`` with ``n >= k``.
        special: for square inputs, return the nearest rotation (``det = +1``, in ``SO(k)``) by
            flipping the sign of the last singular vector when needed.
        eps: floor on the magnitude of the backward pass denominators.

    Returns:
        ``U D V^T`` from the thin SVD ``x = U S V^T``; gradients stay finite with repeated
        singular values.
    """
    if x.ndim < 2 or x.shape[-2] < x.shape[-1]:
        raise ValueError(f"polar_project expects [..., n, k] with n >= k, got shape {tuple(x.shape)}")
    return _PolarProjection.apply(x, bool(special), float(eps))


def spectral_mask(eigenvalues: torch.Tensor, kind: MaskKind = "soft", tol: float = 1e-6) -> torch.Tensor:
    """Mask ``P`` ``[k, k]`` relating eigenvalues: ``exp(-|l_i - l_j|)`` or ``1[|l_i - l_j| <= tol]``."""
    diff = (eigenvalues.unsqueeze(-1) - eigenvalues.unsqueeze(-2)).abs()
    if kind == "soft":
        return torch.exp(-diff)
    if kind == "hard":
        return (diff <= tol).to(eigenvalues.dtype)
    raise ValueError(f"unknown mask kind {kind!r}; valid: {', '.join(map(repr, MASK_KINDS))}")


def solve_isometry(
    a: torch.Tensor,
    b: torch.Tensor,
    eigenvalues: torch.Tensor,
    mask: MaskKind = "soft",
    eps: float = DEFAULT_GRAD_EPS,
) -> torch.Tensor:
    """Closed-form map ``tau`` in ``SO(k)`` taking projected latents ``a`` towards ``b``.

    ``tau = proj_SO(k)(P * (b a^T))`` with ``P = spectral_mask(eigenvalues)``: the
    Procrustes solution restricted (softly) to maps that commute with ``Lambda``.

    Args:
        a, b: projected latents ``[B, k, d]``.
        eigenvalues: ``[k]`` sorted eigenvalues ``Lambda``.
        mask: ``"soft"`` (training, as in the paper) or ``"hard"`` (exact eigenspace blocks).
        eps: backward denominator floor of :func:`polar_project`.

    Returns:
        ``tau`` ``[B, k, k]``.
    """
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"a and b must both be [B, k, d]; got {tuple(a.shape)} and {tuple(b.shape)}")
    if eigenvalues.shape != (a.shape[1],):
        raise ValueError(f"eigenvalues must be [k={a.shape[1]}], got {tuple(eigenvalues.shape)}")
    cross = b @ a.transpose(-1, -2)
    return polar_project(spectral_mask(eigenvalues, mask) * cross, special=True, eps=eps)


def multiplicity_loss(eigenvalues: torch.Tensor) -> torch.Tensor:
    """``L_M = ||diag(P 1) - P||_F / k``: penalises clustered eigenvalues (pushes the mask P towards the identity)."""
    p = spectral_mask(eigenvalues, "soft")
    lap = torch.diag_embed(p.sum(-1)) - p
    return torch.linalg.matrix_norm(lap) / eigenvalues.shape[-1]


def equivariance_error(tau: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample relative latent error ``||tau a - b||^2 / ||b||^2`` (``[B]``)."""
    num = (tau @ a - b).square().flatten(1).sum(-1)
    return num / b.square().flatten(1).sum(-1).clamp_min(1e-12)


def project(latent: torch.Tensor, phi: torch.Tensor, mass: torch.Tensor) -> torch.Tensor:
    """Projected latent ``Phi^T M E`` ``[B, k, d]`` of grid latents ``[B, N, d]``."""
    return phi.transpose(0, 1) @ (mass.unsqueeze(-1) * latent)


def unproject(coeffs: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """Grid latents ``Phi C`` ``[B, N, d]`` of eigenbasis coefficients ``[B, k, d]``."""
    return phi @ coeffs


class SpectralOperator(nn.Module):
    """Learned operator ``Omega = Phi Lambda Phi^T M`` on a grid of ``num_positions`` points.

    Parametrisation (every forward call returns a valid operator, whatever the raw parameters):

    * mass ``M = m^2 + 1e-8`` (diagonal, positive), ``m`` initialised to ones;
    * eigenbasis ``Phi = M^{-1/2} polar(M^{1/2} F)`` for a free ``F`` (``N x k``), so that
      ``Phi^T M Phi = I`` exactly (up to float rounding) after every optimiser step;
    * eigenvalues ``Lambda = cumsum(l^2)``: non-negative and sorted ascending by construction.

    Args:
        num_positions: ``|N|``, the number of latent grid positions.
        rank: ``k``, number of eigenpairs (``k <= |N|``).
        generator: optional RNG for the initialisation.
    """

    def __init__(self, num_positions: int, rank: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not 1 <= rank <= num_positions:
            raise ValueError(f"operator rank k={rank} must be in 1..|N|={num_positions}")
        self.num_positions = int(num_positions)
        self.rank = int(rank)
        self.mass_root = nn.Parameter(torch.ones(num_positions))
        self.basis_free = nn.Parameter(torch.randn(num_positions, rank, generator=generator) * 0.01)
        self.eigen_root = nn.Parameter(torch.randn(rank, generator=generator) / rank)

    def mass(self) -> torch.Tensor:
        """Diagonal of ``M`` ``[N]``."""
        return self.mass_root.square() + 1e-8

    def eigenvalues(self) -> torch.Tensor:
        """``Lambda`` ``[k]``, ascending, ``>= 0``."""
        return torch.cumsum(self.eigen_root.square(), dim=0)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(Phi [N, k], Lambda [k], M [N])``."""
        mass = self.mass()
        root = mass.sqrt().unsqueeze(-1)
        phi = polar_project(root * self.basis_free) / root
        return phi, self.eigenvalues(), mass

    def operator(self) -> torch.Tensor:
        """The dense operator ``Omega`` ``[N, N]`` (for inspection and tests)."""
        phi, lam, mass = self()
        return (phi * lam) @ phi.transpose(0, 1) * mass.unsqueeze(0)
