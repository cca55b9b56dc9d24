"""Batched conjugate gradients on ``(A^H A + lam I) p = b`` (one system per batch row), and its ``lam = 0``
form that stops each row at the noise level (:func:`cg_discrepancy`)."""

from __future__ import annotations

import torch

from operators.base import LinearOperator

from .problem import batched_dot


def iterations(n: int, label: str | None) -> range:
    """``range(n)``, shown as a progress bar named ``label`` (None: no bar). Iterative solvers that run for
    seconds to minutes (CG-SENSE, FISTA, primal-dual TV) show one when the command line asks for progress."""
    if not label:
        return range(n)
    from tqdm.auto import tqdm

    return tqdm(range(n), desc=label, leave=False)  # type: ignore[return-value]

__all__ = ["cg_discrepancy", "cg_normal"]


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def cg_normal(A: LinearOperator, rhs: torch.Tensor, lam: torch.Tensor, x_init: torch.Tensor, iters: int,
              tol: float | None = None, progress: str | None = None) -> torch.Tensor:
    """Solve ``(A^H A + lam I) x = rhs`` with ``iters`` CG steps from ``x_init``.

    Used for data consistency (Chung, Lee & Ye 2024, "DDS", eq. 11): few steps from the Tweedie
    estimate keep the solution near the data manifold. With ``tol`` set, rows that converge stop
    changing and the loop ends early (a host sync per step, so GPU runs leave it unset). ``progress``: a
    progress-bar label (CG-SENSE from the command line), or None for none (the samplers' inner solves).

    Shapes:
        rhs, x_init: ``(B, H, W)`` (complex or real); lam: ``(B,)`` >= 0.
    """
    lam_b = _bcast(lam.to(rhs.real.dtype), rhs)

    def op(v):
        return A.normal(v) + lam_b * v

    x = x_init.clone()
    r = rhs - op(x)
    p = r.clone()
    rs = batched_dot(r, r)
    rs0 = rs.clamp_min(1e-30)
    for _ in iterations(iters, progress):
        if tol is None:
            active = torch.ones_like(rs, dtype=torch.bool)
        else:
            active = rs > (tol ** 2) * rs0
            if not bool(active.any()):
                break
        ap = op(p)
        denom = batched_dot(p, ap)
        alpha = torch.where(active & (denom > 0), rs / denom.clamp_min(1e-30), torch.zeros_like(rs))
        x = x + _bcast(alpha, x) * p
        r = r - _bcast(alpha, r) * ap
        rs_new = batched_dot(r, r)
        beta = torch.where(active, rs_new / rs.clamp_min(1e-30), torch.zeros_like(rs))
        p = r + _bcast(beta, p) * p
        rs = rs_new
    return x


def operator_norm(A: LinearOperator, like: torch.Tensor, iters: int = 15, seed: int = 0) -> torch.Tensor:
    """Largest singular value of ``A`` per batch row by power iteration on ``A^H A``. ``like``: ``(B, H, W)``."""
    g = torch.Generator(device=like.device).manual_seed(seed)
    v = torch.randn(like.shape, generator=g, device=like.device, dtype=like.real.dtype)
    v = v.to(like.dtype)
    lam = torch.ones(like.shape[0], device=like.device)
    for _ in range(iters):
        v = v / batched_dot(v, v).sqrt().clamp_min(1e-30).view(-1, *([1] * (v.dim() - 1)))
        w = A.normal(v)
        lam = batched_dot(v, w)
        v = w
    return lam.clamp_min(0).sqrt()


def cg_discrepancy(A: LinearOperator, y: torch.Tensor, x_init: torch.Tensor, iters: int,
                   floor: torch.Tensor | None = None, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Solve ``A^H A x = A^H y`` (:func:`cg_normal` with ``lam = 0``) from ``x_init``, each row stopping by the
    discrepancy principle once ``||A x - y||^2 <= floor``.

    Written in CGLS form (Hestenes & Stiefel 1952; Bjorck, "Numerical Methods for Least Squares Problems",
    1996, 7.4): the iterates are those of CG on the normal equations, but the data residual ``y - A x`` is
    carried along, which the stopping rule needs, at the same cost (one ``A`` and one ``A^H`` per step, as
    ``A.normal``). The step that would take a row's residual below ``floor`` is shortened along its search
    direction so that the residual lands on ``floor`` (the smaller root of a quadratic), and the row stops:
    a full CG step can overshoot the noise level by a large factor at low noise, and fit noise again. A row
    also stops once its normal-equation residual falls to the dtype's rounding level, where further steps
    only add rounding noise. Stopped rows are frozen; a host sync per step decides whether any row is left
    (this runs once per reconstruction, not inside a sampler's loop).

    With ``keep`` the solve is on ``A P`` (``P`` zeroes the pixels outside ``keep``): every update lies in
    ``range(P A^H)``, so pixels outside ``keep`` keep their starting value.

    Shapes:
        y: ``(B, *A.out_shape)``; x_init: ``(B, H, W)`` (complex or real); floor: ``(B,)`` (None: no early
        stop); keep: ``(B, H, W)`` bool or None.
    """
    x = x_init.clone()

    def mask(v: torch.Tensor) -> torch.Tensor:
        return v if keep is None else v * keep.to(v.device)

    s = y - A(x)
    r = mask(A.adjoint(s))
    p = r.clone()
    gamma = batched_dot(r, r)
    rounding = gamma * torch.finfo(gamma.dtype).eps ** 2
    active = torch.ones_like(gamma, dtype=torch.bool)
    for _ in range(max(0, int(iters))):
        active = active & (gamma > rounding)
        if floor is not None:
            over = batched_dot(s, s) - floor.to(gamma)  # how far above the noise level
            active = active & (over > 0)
        if not bool(active.any()):
            break
        q = A(p)
        qq = batched_dot(q, q)
        alpha = torch.where(active & (qq > 0), gamma / torch.where(qq > 0, qq, 1.0), torch.zeros_like(gamma))
        if floor is not None:
            # ||s - a q||^2 = ||s||^2 - 2 a c + a^2 ||q||^2 with c = Re<s, q>: where the full step ends at or below
            # the floor, take the smaller root of ||s - a q||^2 = floor instead (written without cancellation).
            c = batched_dot(s, q)
            lands = active & (qq > 0) & (over - 2 * alpha * c + alpha ** 2 * qq <= 0)
            root = over / (c + (c ** 2 - qq * over).clamp_min(0).sqrt()).clamp_min(torch.finfo(c.dtype).tiny)
            alpha = torch.where(lands, root, alpha)
        x = x + _bcast(alpha, x) * p
        s = s - _bcast(alpha, s) * q
        r = mask(A.adjoint(s))
        gamma_new = batched_dot(r, r)
        beta = torch.where(active, gamma_new / torch.where(gamma > 0, gamma, 1.0), torch.zeros_like(gamma))
        p = r + _bcast(beta, p) * p
        gamma = torch.where(active, gamma_new, gamma)
        if floor is not None:
            active = active & ~lands  # at the noise level: done
    return x
