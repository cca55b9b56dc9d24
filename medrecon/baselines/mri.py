"""Classical MRI reconstructions: zero-filled RSS, CG-SENSE, l1-wavelet and total-variation CS.

All functions are batched over leading slice dimensions and run where their inputs live. The
iterative ones only call ``A(x)``, ``A.adjoint(y)`` and ``A.normal(x)``, so any operator with that
protocol works (batched coil maps included). Each batch element gets its own step sizes.

This module also holds the solver pieces shared with :mod:`medrecon.baselines.ct`: the power
method, finite differences / total variation and the Chambolle-Pock TV least-squares solver.

References:
    Pruessmann KP, Weiger M, Boernert P, Boesiger P. Advances in sensitivity encoding with
    arbitrary k-space trajectories. Magn Reson Med 46:638-651 (2001) (CG-SENSE).
    Lustig M, Donoho D, Pauly JM. Sparse MRI: the application of compressed sensing for rapid MR
    imaging. Magn Reson Med 58:1182-1195 (2007).
    Beck A, Teboulle M. A fast iterative shrinkage-thresholding algorithm for linear inverse
    problems. SIAM J Imaging Sci 2(1):183-202 (2009) (FISTA).
    Chambolle A, Pock T. A first-order primal-dual algorithm for convex problems with applications
    to imaging. J Math Imaging Vis 40:120-145 (2011).
"""

from __future__ import annotations

import math

import torch

from medrecon.sampling.cg import cg_normal, iterations
from operators.base import LinearOperator
from operators.coils import rss
from operators.fft import ifft2c
from operators.mri import as_mask_2d

from .wavelets import dwt2, idwt2, soft_threshold

__all__ = ["cg_sense", "cs_tv", "cs_wavelet", "max_eigenvalue", "total_variation", "zero_filled"]

_BOUNDARIES = ("periodic", "neumann")


# --------------------------------------------------------------------------- shared helpers
def _lead(t: torch.Tensor, n_trail: int) -> tuple[int, ...]:
    return tuple(t.shape[: t.dim() - n_trail])


def _per_elem(v: torch.Tensor, n_trail: int) -> torch.Tensor:
    """Reshape a per-batch-element scalar ``(...)`` to broadcast against ``(..., *trail)``."""
    return v.reshape(*v.shape, *([1] * n_trail))


def _sq_norm(t: torch.Tensor, n_trail: int) -> torch.Tensor:
    """Squared 2-norm over the trailing ``n_trail`` dims: ``(..., *trail) -> (...)``."""
    return t.abs().square().sum(dim=tuple(range(-n_trail, 0)))


def max_eigenvalue(A: LinearOperator, like: torch.Tensor, iters: int = 30, seed: int = 0) -> torch.Tensor:
    """Largest eigenvalue of ``A^H A`` per batch element, by the power method.

    The start vector is Gaussian from a CPU ``torch.Generator`` seeded with ``seed`` (the same on
    every device and for every batch element). The estimate approaches the true value from below.

    Args:
        A: the operator (only ``A.normal`` is called).
        like: a tensor in ``A``'s domain giving batch shape, dtype and device.
        iters: power iterations.
        seed: seed of the start vector.

    Returns:
        Real ``||A||^2`` estimates.

    Shapes:
        like: ``(..., *A.in_shape)`` -> returns ``(...)``.
    """
    nt = len(A.in_shape)
    gen = torch.Generator().manual_seed(seed)
    # One start vector shared by every batch element, so a batch gives what each slice gives alone.
    v = torch.randn(like.shape[like.dim() - nt:], dtype=like.dtype, generator=gen).to(like.device)
    v = v.expand_as(like).clone()
    v = v / _per_elem(_sq_norm(v, nt).sqrt(), nt)
    eig = torch.zeros(_lead(like, nt), dtype=like.real.dtype, device=like.device)
    for _ in range(iters):
        w = A.normal(v)
        eig = _sq_norm(w, nt).sqrt()
        v = w / _per_elem(torch.where(eig > 0, eig, torch.ones_like(eig)), nt)
    return eig


def _check_boundary(boundary: str) -> None:
    if boundary not in _BOUNDARIES:
        raise ValueError(f"boundary must be one of {_BOUNDARIES}, got {boundary!r}")


def _grad(x: torch.Tensor, boundary: str) -> torch.Tensor:
    """Forward differences ``(D_y x, D_x x)``: ``(..., H, W) -> (..., 2, H, W)``.

    ``periodic``: ``x[i+1] - x[i]`` with wrap-around (the FFT's own periodicity; anisotropic TV is
    then identical to SigPy's ``FiniteDifference``). ``neumann``: zero difference across the last
    row/column (no jump assumed at the image border).
    """
    if boundary == "periodic":
        dy = torch.roll(x, -1, dims=-2) - x
        dx = torch.roll(x, -1, dims=-1) - x
    else:
        dy = torch.cat([x[..., 1:, :] - x[..., :-1, :], torch.zeros_like(x[..., :1, :])], dim=-2)
        dx = torch.cat([x[..., :, 1:] - x[..., :, :-1], torch.zeros_like(x[..., :, :1])], dim=-1)
    return torch.stack([dy, dx], dim=-3)


def _grad_adjoint(q: torch.Tensor, boundary: str) -> torch.Tensor:
    """Exact adjoint of :func:`_grad` (minus the discrete divergence): ``(..., 2, H, W) -> (..., H, W)``."""
    qy, qx = q[..., 0, :, :], q[..., 1, :, :]
    if boundary == "periodic":
        return (torch.roll(qy, 1, dims=-2) - qy) + (torch.roll(qx, 1, dims=-1) - qx)
    qy = torch.cat([qy[..., :-1, :], torch.zeros_like(qy[..., :1, :])], dim=-2)
    qx = torch.cat([qx[..., :, :-1], torch.zeros_like(qx[..., :, :1])], dim=-1)
    gy = torch.cat([torch.zeros_like(qy[..., :1, :]), qy[..., :-1, :]], dim=-2) - qy
    gx = torch.cat([torch.zeros_like(qx[..., :, :1]), qx[..., :, :-1]], dim=-1) - qx
    return gy + gx


def total_variation(x: torch.Tensor, isotropic: bool = True, boundary: str = "periodic") -> torch.Tensor:
    """Discrete total variation of real or complex images.

    Isotropic: ``sum_ij sqrt(|D_y x|^2 + |D_x x|^2)``; anisotropic: ``sum_ij |D_y x| + |D_x x|``
    (complex moduli), with forward differences and the given boundary (see ``_grad``).

    Shapes:
        x: ``(..., H, W)`` -> returns ``(...)`` real.
    """
    _check_boundary(boundary)
    g = _grad(x, boundary).abs()
    per_pixel = g.square().sum(dim=-3).sqrt() if isotropic else g.sum(dim=-3)
    return per_pixel.sum(dim=(-2, -1))


def _project_ball(q: torch.Tensor, radius: torch.Tensor | float, isotropic: bool) -> torch.Tensor:
    """Project onto ``{|q| <= radius}``: pointwise l2 over the 2 components (isotropic) or per entry.

    This is the prox of the conjugate of ``radius * ||.||_{2,1}`` (resp. ``||.||_1``).
    """
    mag = q.abs().square().sum(dim=-3, keepdim=True).sqrt() if isotropic else q.abs()
    outside = mag > radius
    return torch.where(outside, q * (radius / torch.where(outside, mag, torch.ones_like(mag))), q)


def _project_modulus(q: torch.Tensor, radius: float) -> torch.Tensor:
    """Project every entry (real, or complex by its modulus) onto ``|q| <= radius``."""
    mag = q.abs()
    return q * (radius / mag.clamp_min(1e-30)).clamp(max=1.0)


def _dz_adjoint(q: torch.Tensor) -> torch.Tensor:
    """Adjoint of the differences along dim 0, ``(S-1, ...) -> (S, ...)``: ``(D^T q)_s = q_{s-1} - q_s``."""
    zero = torch.zeros_like(q[:1])
    return torch.cat([zero, q]) - torch.cat([q, zero])


# Chambolle-Pock step sizes. Scalar mode (any operator): tau = _PD_RATIO * 0.99/3, sigma =
# 0.99/(3 * _PD_RATIO) on K = [A/||A||; grad], so tau sigma ||K||^2 < 1 with ||K||^2 <= 1 + 8.
# Diagonal mode (A >= 0 entrywise, e.g. CT): Pock & Chambolle (ICCV 2011) alpha = 1 steps, with
# tau scaled by _DIAG_BALANCE and sigma divided by it (their condition is unchanged). Both
# constants were tuned on 64x64 multi-coil MRI and 128x128 sparse-view CT phantoms (100 iterations
# reach ~0.2% / ~1.5% of the optimal objective). PDHG is equivariant under a joint scaling of
# (x, y, lam), so they do not depend on the image units.
_PD_RATIO = 3.0
_DIAG_BALANCE = 0.1


def _tv_least_squares(A: LinearOperator, y: torch.Tensor, lam: float, iters: int, *, nonneg: bool,
                      isotropic: bool, boundary: str, x0: torch.Tensor | None, power_iters: int,
                      diagonal: bool, progress: str | None = None, z_lam: float = 0.0) -> torch.Tensor:
    """Chambolle-Pock (2011, Algorithm 1, theta = 1) for ``min 0.5||Ax - y||^2 + lam TV(x) [+ x >= 0]``.

    With ``z_lam > 0`` the rows of ``y`` are the contiguous slices of a volume and the objective gains
    ``z_lam sum |x_{s+1} - x_s|`` (TV along the slices, Neumann ends: a third block of ``K``), so the
    in-plane TV becomes a 3-D TV with its own weight along z (volume mode). The scalar mode then normalizes
    every slice by the same ``||A||`` (the largest), so the slices share one objective.

    Written as ``min_x F(Kx) + G(x)`` with ``K = [A; grad]``, ``F(u, v) = 0.5||u - y||^2 +
    lam ||v||_{2,1}`` and ``G`` the indicator of ``x >= 0`` (or 0). Step sizes:

    * ``diagonal=False``: ``A`` is normalised by ``a = ||A||`` (power method), i.e. the problem
      ``0.5||(A/a) x - y/a||^2 + (lam/a^2) TV(x)`` (same minimiser) is solved with scalar steps.
    * ``diagonal=True`` (only for entrywise non-negative ``A``): diagonal preconditioning
      (Pock & Chambolle, ICCV 2011, Lemma 2 with alpha = 1): ``tau_j = 1 / sum_i |K_ij|``,
      ``sigma_i = 1 / sum_j |K_ij|``, where the sums over ``A`` are ``A^T 1`` and ``A 1`` and those
      over forward differences are 4 (columns) and 2 (rows). No power method is needed.

    Shapes:
        y: ``(..., *A.out_shape)``; x0: ``(..., H, W)`` -> returns ``(..., H, W)``.
    """
    _check_boundary(boundary)
    if lam < 0 or z_lam < 0:
        raise ValueError(f"lam and z_lam must be >= 0, got {lam}, {z_lam}")
    nt_in, nt_out = len(A.in_shape), len(A.out_shape)
    use_z = z_lam > 0 and y.dim() > nt_out and y.shape[0] > 1
    aty = A.adjoint(y)
    if diagonal:
        ones_in = torch.ones(A.in_shape, dtype=aty.dtype, device=aty.device)
        row = A(ones_in)
        col = A.adjoint(torch.ones(A.out_shape, dtype=y.dtype, device=y.device))
        c = _DIAG_BALANCE
        tau = c / (col + 4.0 + (2.0 if use_z else 0.0))  # a D_z column has two entries
        # Rays that miss the image (A 1 = 0) carry no coupling; any positive step works there.
        sig_a = 1.0 / (c * torch.where(row > 0, row, torch.ones_like(row)))
        sig_g = 0.5 / c
        sig_z = 0.5 / c  # a D_z row has two entries
        fwd, adj, y_n, lam_n, lamz_n = A, A.adjoint, y, lam, z_lam
    else:
        a2 = max_eigenvalue(A, aty, power_iters)
        a2 = torch.where(a2 > 0, a2, torch.ones_like(a2))
        if use_z:  # one normalization for the whole volume, so the coupled slices share one objective
            a2 = a2.amax().expand_as(a2)
        a_in, a_out = _per_elem(a2.sqrt(), nt_in), _per_elem(a2.sqrt(), nt_out)
        # ||K||^2 <= 1 + 8 (+ 4 with D_z): 3 bounds sqrt(9), 4 bounds sqrt(13)
        bound = 4.0 if use_z else 3.0
        tau, sig_a = 0.99 * _PD_RATIO / bound, 0.99 / (bound * _PD_RATIO)
        sig_g = sig_z = sig_a

        def fwd(v: torch.Tensor) -> torch.Tensor:
            return A(v) / a_out

        def adj(v: torch.Tensor) -> torch.Tensor:
            return A.adjoint(v) / a_in

        y_n, lam_n = y / a_out, _per_elem(lam / a2, nt_in + 1)  # radius of the dual ball, per element
        lamz_n = float(z_lam) / float(a2.reshape(-1)[0]) if use_z else 0.0
    u = torch.zeros_like(aty) if x0 is None else x0.to(aty.dtype).expand_as(aty).clone()
    u_bar = u
    p = torch.zeros_like(y_n)
    q = torch.zeros((*u.shape[:-2], 2, *u.shape[-2:]), dtype=u.dtype, device=u.device)
    qz = torch.zeros_like(u[1:]) if use_z else None
    for _ in iterations(iters, progress):
        # Dual ascent, CP eq. (8): prox of sigma F*, separable over the data and gradient blocks.
        p = (p + sig_a * (fwd(u_bar) - y_n)) / (1.0 + sig_a)
        q = _project_ball(q + sig_g * _grad(u_bar, boundary), lam_n, isotropic)
        back = adj(p) + _grad_adjoint(q, boundary)
        if use_z:  # the z block: differences between neighbouring slices, projected entrywise
            qz = _project_modulus(qz + sig_z * (u_bar[1:] - u_bar[:-1]), lamz_n)
            back = back + _dz_adjoint(qz)
        # Primal descent, then the prox of tau G (projection onto x >= 0).
        u_new = u - tau * back
        if nonneg:
            u_new = u_new.clamp_min(0.0)
        u_bar = 2.0 * u_new - u  # extrapolation, theta = 1
        u = u_new
    return u


# --------------------------------------------------------------------------- reconstructions
def zero_filled(kspace: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """fastMRI's zero-filled baseline: root-sum-of-squares of the coil images ``ifft2c(k)``.

    Args:
        kspace: multi-coil k-space, unsampled entries zero (or masked here).
        mask: optional sampling mask (``(W,)`` column mask or ``(H, W)``), applied as
            ``kspace * mask + 0.0``.

    Returns:
        Real magnitude image (no centre crop).

    Shapes:
        kspace: ``(..., C, H, W)`` complex; mask: broadcastable to ``(H, W)`` -> ``(..., H, W)`` real.
    """
    if mask is not None:
        kspace = kspace * as_mask_2d(mask, kspace.shape[-2:]).to(kspace.device) + 0.0
    return rss(ifft2c(kspace), dim=-3)


class _FlatNormal(LinearOperator):
    """``A.normal`` on ``(B, ...)`` rows for :func:`cg_normal`, reshaped to the original batch dims."""

    def __init__(self, A: LinearOperator, lead: tuple[int, ...]) -> None:
        super().__init__(A.in_shape, A.in_shape, A.in_complex, A.in_complex)
        self.op = A
        self.lead = lead

    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        return self.op.normal(x.reshape(*self.lead, *self.in_shape)).reshape(x.shape)


def cg_sense(A: LinearOperator, y: torch.Tensor, lam: float = 0.0, iters: int = 30,
             x0: torch.Tensor | None = None, progress: bool = False) -> torch.Tensor:
    """CG-SENSE: conjugate gradients on ``(A^H A + lam I) x = A^H y`` (Pruessmann et al. 2001).

    Args:
        A: e.g. :class:`operators.MultiCoilMRI`.
        y: measured k-space.
        lam: Tikhonov weight (0: plain least squares; CG from zero then regularises by early stopping).
        iters: CG iterations.
        x0: start image (default zeros).
        progress: show a progress bar over the iterations.

    Returns:
        The complex image.

    Shapes:
        y: ``(..., C, H, W)``; x0: ``(..., H, W)`` -> returns ``(..., H, W)`` complex.
    """
    rhs = A.adjoint(y)
    nt = len(A.in_shape)
    lead = _lead(rhs, nt)
    flat = rhs.reshape(-1, *A.in_shape)
    start = torch.zeros_like(flat) if x0 is None else x0.to(rhs.dtype).expand_as(rhs).reshape(flat.shape)
    lam_t = torch.full((flat.shape[0],), float(lam), dtype=rhs.real.dtype, device=rhs.device)
    x = cg_normal(_FlatNormal(A, lead), flat, lam_t, start, iters, progress="sense" if progress else None)
    return x.reshape(rhs.shape)


def cs_wavelet(A: LinearOperator, y: torch.Tensor, lam: float, iters: int = 100, wavelet: str = "db4",
               levels: int | None = None, *, power_iters: int = 30, progress: bool = False) -> torch.Tensor:
    """l1-wavelet compressed sensing (Lustig et al. 2007): ``min 0.5||Ax - y||^2 + lam ||W x||_1``.

    Solved with FISTA (Beck & Teboulle 2009, eq. 4.1-4.3) from ``x = 0`` with step ``1/L``,
    ``L = ||A^H A||`` from :func:`max_eigenvalue`. The proximal step is
    ``W^H soft(W z, lam/L)``: every coefficient, the coarsest approximation band included, is
    soft-thresholded (complex: the magnitude shrinks), as SigPy's ``L1WaveletRecon`` does. ``W``
    is the periodized orthogonal DWT of :mod:`medrecon.baselines.wavelets`; for image sizes not
    divisible by ``2**levels`` it zero-pads, and then ``W^H soft(W .)`` is the usual (SigPy)
    approximation of the exact prox.

    Args:
        A: forward operator on complex images (e.g. :class:`operators.MultiCoilMRI`).
        y: measurements.
        lam: l1 weight, in the units of ``A^H y`` (try ~1e-3..1e-2 of ``max|A^H y|``).
        iters: FISTA iterations.
        wavelet: ``"db4"``, ``"haar"``, ... (see :func:`wavelets.wavelet_filter`).
        levels: wavelet levels; ``None`` is PyWavelets' maximum level (SigPy's default).
        power_iters: power-method iterations for ``L``.
        progress: show a progress bar over the iterations.

    Returns:
        The complex image.

    Shapes:
        y: ``(..., *A.out_shape)`` -> returns ``(..., H, W)``.
    """
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    nt = len(A.in_shape)
    aty = A.adjoint(y)
    lip = max_eigenvalue(A, aty, power_iters)
    step = _per_elem(1.0 / torch.where(lip > 0, lip, torch.ones_like(lip)), nt)
    shape = aty.shape[-2:]
    x = torch.zeros_like(aty)
    z = x
    t = 1.0
    for _ in iterations(iters, "cs-wavelet" if progress else None):
        x_old = x
        # Gradient step on the smooth term at the extrapolated point, then the l1-wavelet prox.
        v = z - step * (A.normal(z) - aty)
        x = idwt2(soft_threshold(dwt2(v, wavelet, levels), lam * step), shape, wavelet, levels)
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        z = x + ((t - 1.0) / t_new) * (x - x_old)
        t = t_new
    return x


def cs_tv(A: LinearOperator, y: torch.Tensor, lam: float, iters: int = 100, *, isotropic: bool = True,
          boundary: str = "periodic", power_iters: int = 30, progress: bool = False,
          z_lam: float = 0.0) -> torch.Tensor:
    """Total-variation compressed sensing: ``min 0.5||Ax - y||^2 + lam TV(x)`` on complex images.

    Chambolle-Pock primal-dual iterations (Chambolle & Pock 2011, Algorithm 1) on
    ``K = [A; grad]`` with ``A`` normalised by its norm (power method), from ``x = 0``. TV uses
    forward differences with periodic boundaries by default (the FFT model is periodic, and the
    anisotropic variant then equals SigPy's ``TotalVariationRecon`` objective exactly);
    ``boundary="neumann"`` drops the wrap-around differences.

    Args:
        A: forward operator on complex images.
        y: measurements.
        lam: TV weight.
        iters: primal-dual iterations.
        isotropic: pointwise l2 norm of the gradient (True) or l1 (anisotropic, SigPy's choice).
        boundary: ``"periodic"`` or ``"neumann"``.
        power_iters: power-method iterations for ``||A||``.
        progress: show a progress bar over the iterations.
        z_lam: volume mode: the rows of ``y`` are contiguous slices and ``z_lam sum_s |x_{s+1} - x_s|`` (TV along
            the slices) joins the objective; 0 reconstructs every slice alone.

    Returns:
        The complex image.

    Shapes:
        y: ``(..., *A.out_shape)`` -> returns ``(..., H, W)``.
    """
    return _tv_least_squares(A, y, lam, iters, nonneg=False, isotropic=isotropic, boundary=boundary, x0=None,
                             power_iters=power_iters, diagonal=False, progress="cs-tv" if progress else None,
                             z_lam=z_lam)
