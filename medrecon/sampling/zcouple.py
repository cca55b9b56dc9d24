"""Coupling the slices of a volume: total variation along z on the samplers' clean-image estimates.

A 2-D prior draws every slice alone, so neighbouring slices of a sampled volume disagree wherever the data
leave the image open, and a sagittal or coronal reformat shows stripes. DiffusionMBIR (Chung et al., CVPR
2023, Algorithm 1) and the 3-D mode of DDS (Chung, Lee & Ye, ICLR 2024, section 4.3) add total variation
along z to the data-consistency step, with one ADMM iteration per diffusion step. Here the splitting is
the proximal one (half-quadratic splitting, as DiffPIR, Zhu et al. 2023, eq. 13): at each step the stack of
Tweedie estimates ``x0_hat`` (all slices of a chain set) is replaced by

    v = argmin_v  1/2 ||v - x0_hat||^2 + mu_t TV_z(v),      mu_t = w * r_t,

the proximal map of TV along z, before the data-consistency solve starts from ``v``. ``r_t`` is the
Tweedie estimate's error std in network units (the sampler's own ``r_t``), so the coupling is strong while
the estimates are rough and fades as the chain converges; ``w`` (``--z-weight``) is dimensionless and
``w = 0`` is exactly the slice-by-slice sampler. Each row's data-consistency solve then only moves the
image within ``range(A^H)`` (CG from ``v``), so what the data leave open is the z-coupled estimate's.

The proximal map of 1-D TV is solved on its dual (Chambolle 2004, eq. 9, for the 1-D difference operator;
accelerated as FISTA, Beck & Teboulle 2009): every pixel column is independent, so it runs on the whole
stack at once. Complex images (two channels) are coupled as one vector per pixel (isotropic over real and
imaginary parts), so the phase is not treated differently from the magnitude.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

__all__ = ["ZCoupling", "tv_z_prox"]


def _dz(v: torch.Tensor) -> torch.Tensor:
    """Forward differences along dim 0: ``(S, ...) -> (S-1, ...)``."""
    return v[1:] - v[:-1]


def _dz_t(q: torch.Tensor) -> torch.Tensor:
    """Adjoint of :func:`_dz`: ``(S-1, ...) -> (S, ...)``, ``(D^T q)_i = q_{i-1} - q_i``."""
    out = torch.empty((q.shape[0] + 1, *q.shape[1:]), dtype=q.dtype, device=q.device)
    out[0] = -q[0]
    out[-1] = q[-1]
    torch.sub(q[:-1], q[1:], out=out[1:-1])
    return out


def _project(q: torch.Tensor, mu: torch.Tensor, group_dim: int | None) -> torch.Tensor:
    """Project ``q`` onto ``|q| <= mu`` (pointwise, or as vectors along ``group_dim``)."""
    if group_dim is None:
        return torch.maximum(torch.minimum(q, mu), -mu)
    norm = q.square().sum(dim=group_dim, keepdim=True).sqrt_().clamp_min_(1e-30)
    return q * (mu / norm).clamp_(max=1.0)


def tv_z_prox(x: torch.Tensor, mu: torch.Tensor | float, iters: int = 40, group_dim: int | None = None) -> torch.Tensor:
    """``argmin_v 1/2 ||v - x||^2 + mu sum_i |v_{i+1} - v_i|`` along dim 0, for every other index at once.

    Dual (Chambolle 2004): ``v = x - D^T q`` with ``|q_i| <= mu``; projected gradient on ``q`` with step 1/4
    (``||D^T D|| <= 4``), FISTA momentum. ``group_dim`` couples the entries along that dimension into one
    vector (complex images as their two channels), so the threshold acts on the vector's length.

    Shapes: x ``(S, ...)`` with ``S >= 1``; mu a scalar or broadcastable to ``x[1:]``; returns ``x.shape``.
    """
    if x.shape[0] < 2:
        return x
    mu_t = torch.as_tensor(mu, dtype=x.dtype, device=x.device)
    if not bool((mu_t > 0).any()):
        return x
    q = torch.zeros_like(x[1:])
    q_prev = q
    s = q
    tk = 1.0
    for _ in range(max(1, int(iters))):
        v = x - _dz_t(s)
        q = _project(s + 0.25 * _dz(v), mu_t, group_dim)
        tk_next = (1 + (1 + 4 * tk * tk) ** 0.5) / 2
        s = q + ((tk - 1) / tk_next) * (q - q_prev)
        q_prev, tk = q, tk_next
    return x - _dz_t(q)


@dataclass(frozen=True)
class ZCoupling:
    """TV-along-z coupling of a volume's rows (see the module note).

    Rows are slice-major with ``k`` posterior samples per slice adjacent (``InverseProblem.repeat``); chain
    ``j`` of slice ``s`` is coupled with chain ``j`` of slices ``s - 1`` and ``s + 1``.

    Attributes:
        weight: ``w >= 0``, the threshold per unit of the Tweedie error std.
        k: posterior samples per slice (set by ``InverseProblem.repeat``).
        iters: dual iterations of the proximal map.
    """

    weight: float
    k: int = 1
    iters: int = 30

    def __post_init__(self) -> None:
        if not self.weight >= 0:
            raise ValueError(f"the z weight must be >= 0, got {self.weight}")

    def with_k(self, k: int) -> ZCoupling:
        return replace(self, k=int(k))

    def __call__(self, x: torch.Tensor, r: torch.Tensor | float) -> torch.Tensor:
        """The coupled estimates. Shapes: x ``(S*k, ch, H, W)`` network space; ``r`` a scalar (0-d tensor)."""
        if self.weight == 0 or x.shape[0] < 2 * self.k:
            return x
        b = x.shape[0]
        stack = x.reshape(b // self.k, self.k, *x.shape[1:]).float()
        mu = self.weight * torch.as_tensor(r, dtype=stack.dtype, device=x.device)
        group = 2 if stack.shape[2] > 1 else None  # channels: real and imaginary parts as one vector
        out = tv_z_prox(stack, mu, self.iters, group_dim=group)
        return out.reshape(x.shape).to(x.dtype)
