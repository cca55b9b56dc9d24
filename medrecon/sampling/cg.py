"""Batched conjugate gradients on ``(A^H A + lam I) p = b`` (one system per batch row)."""

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

__all__ = ["cg_normal"]


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
