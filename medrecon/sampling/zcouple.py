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

**Joint solve** (``solve="admm"``, the samplers with a CG data step: fast and Langevin). The proximal split
above couples the estimates *before* the data step, which then moves every slice alone. DiffusionMBIR
(Algorithm 1, eqs. 10-12) and DDS-3D instead solve the data term and TV along z together, by ADMM on the
split ``d = D_z p``:

    min_p  1/2 <p, (A^H A + lam I) p> - Re<b, p> + rho * tau_t * ||D_z p||_1,     b = A^H y + lam p0,

    p   <- CG on (A^H A + lam I + rho D_z^T D_z) p = b + rho D_z^T (d - u)     (one system for the whole stack)
    d   <- shrink(D_z p + u, tau_t)                                           (complex: on the magnitude)
    u   <- u + D_z p - d

with ``tau_t = w * r_t * gain`` in physical units (the same "w Tweedie error stds" as the proximal mode's
threshold), ``d`` started at ``shrink(D_z p0, tau_t)`` and ``u`` at 0 at every diffusion step (so that one
ADMM iteration already pulls the slices together; ``solve="admm-carry"`` instead carries ``d`` and ``u`` from
one diffusion step to the next, as DiffusionMBIR's Algorithm 1 does), and ``rho`` relative to the data term's
scale on the estimate (``rho_rel * <p0, A^H A p0> / <p0, p0>``), so one setting serves MRI and CT. With many iterations
the result is the minimizer of the objective above (tests/sampling/test_zjoint.py against an independent
long-run FISTA). DPS and DAPS have no CG step; they keep the proximal coupling in either mode.

The proximal map of 1-D TV is solved on its dual (Chambolle 2004, eq. 9, for the 1-D difference operator;
accelerated as FISTA, Beck & Teboulle 2009): every pixel column is independent, so it runs on the whole
stack at once. Complex images (two channels) are coupled as one vector per pixel (isotropic over real and
imaginary parts), so the phase is not treated differently from the magnitude.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

__all__ = ["SOLVES", "ZCoupling", "admm_tv_z", "tv_z_prox"]

SOLVES = ("prox", "admm", "admm-carry")
ADMM_RHO = 0.03  # rho_rel: CT's best PSNR on the ct-vol-60 tuning slab (benchmarks/results/zjoint_cpu_2026-12-07/)
ADMM_ITERS = 1  # ADMM iterations per diffusion step, each ``cg_iters`` CG steps (DiffusionMBIR: 1)


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


def _stack_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Real part of ``<a, b>`` over the whole tensor (the joint system couples every row), as a 0-d tensor."""
    return (a.conj() * b).real.sum() if a.is_complex() else (a * b).sum()


def _shrink(v: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """Soft threshold ``v * max(0, 1 - tau / |v|)`` (complex: on the magnitude, the phase kept)."""
    mag = v.abs()
    return v * (1 - tau / mag.clamp_min(1e-30)).clamp_min(0)


def admm_tv_z(normal, rhs: torch.Tensor, lam: torch.Tensor, p0: torch.Tensor, tau: torch.Tensor,
              rho: float | torch.Tensor, k: int = 1, admm_iters: int = 1, cg_iters: int = 5,
              normal_p0: torch.Tensor | None = None, state: dict | None = None) -> torch.Tensor:
    """Data term and TV along z solved together (the module note's ADMM), from ``p0``.

    Minimizes ``1/2 <p, (N + lam) p> - Re<rhs, p> + rho * sum_i tau_i |p_{i+1} - p_i|`` with ``N = normal``
    (``A^H A``), slice ``i`` being row block ``i`` of ``k`` posterior samples (chain ``j`` coupled with chain
    ``j`` of the neighbouring slices).

    Args:
        normal: ``v -> A^H A v`` on ``(B, H, W)``.
        rhs: ``A^H y + lam p0`` ``(B, H, W)``.
        lam: ``(B,)`` >= 0.
        p0: the start and the anchor of the proximal term ``(B, H, W)``.
        tau: shrink threshold, broadcastable to ``(S - 1, k, 1, 1)`` (physical units).
        rho: the penalty on ``D_z p = d`` (absolute, in the data term's units; a float or a 0-d tensor).
        k: posterior samples per slice.
        admm_iters, cg_iters: ADMM iterations, and CG steps of each one's ``p`` update.
        normal_p0: ``normal(p0)`` when the caller has it (saves one operator application).
        state: ADMM variables carried between calls (``{"d": ..., "u": ...}``; empty at the first call, updated in
            place); None starts fresh.

    Returns:
        ``p`` ``(B, H, W)``, dtype of ``p0``.
    """
    b = p0.shape[0]
    view = (b // k, k, *p0.shape[1:])
    lam_b = lam.to(p0.real.dtype).view(-1, *([1] * (p0.dim() - 1)))

    def dz(v: torch.Tensor) -> torch.Tensor:
        return _dz(v.reshape(view))

    def dzt(q: torch.Tensor) -> torch.Tensor:
        return _dz_t(q).reshape(p0.shape)

    def op(v: torch.Tensor) -> torch.Tensor:
        return normal(v) + lam_b * v + rho * dzt(dz(v))

    p = p0.clone()
    if state is not None and "d" in state:
        d, u = state["d"], state["u"]
    else:
        d = _shrink(dz(p0), tau)
        u = torch.zeros_like(d)
    for it in range(max(1, int(admm_iters))):
        # p-update: CG on the whole stack (one system: the dot products run over every slice).
        np_ = normal_p0 if it == 0 and normal_p0 is not None else normal(p)
        r = rhs + rho * dzt(d - u) - (np_ + lam_b * p + rho * dzt(dz(p)))
        q = r.clone()
        rs = _stack_dot(r, r)
        for _ in range(max(0, int(cg_iters))):
            aq = op(q)
            den = _stack_dot(q, aq)
            alpha = torch.where(den > 0, rs / den.clamp_min(1e-30), torch.zeros_like(rs))
            p = p + alpha * q
            r = r - alpha * aq
            rs_new = _stack_dot(r, r)
            q = r + (rs_new / rs.clamp_min(1e-30)) * q
            rs = rs_new
        v = dz(p) + u
        d = _shrink(v, tau)
        u = v - d
    if state is not None:
        state.update(d=d, u=u)
    return p


@dataclass(frozen=True)
class ZCoupling:
    """TV-along-z coupling of a volume's rows (see the module note).

    Rows are slice-major with ``k`` posterior samples per slice adjacent (``InverseProblem.repeat``); chain
    ``j`` of slice ``s`` is coupled with chain ``j`` of slices ``s - 1`` and ``s + 1``.

    Attributes:
        weight: ``w >= 0``, the threshold per unit of the Tweedie error std.
        k: posterior samples per slice (set by ``InverseProblem.repeat``).
        iters: dual iterations of the proximal map.
        solve: ``"prox"`` (the estimates coupled before the data step), ``"admm"`` (the samplers with a CG data
            step solve it jointly with TV along z, :meth:`dc_solve`; the others couple by the proximal map) or
            ``"admm-carry"`` (the same, the ADMM variables carried between diffusion steps).
        rho: ``rho_rel`` of the joint solve.
        admm_iters: ADMM iterations per diffusion step of the joint solve.
    """

    weight: float
    k: int = 1
    iters: int = 30
    solve: str = "prox"
    rho: float = ADMM_RHO
    admm_iters: int = ADMM_ITERS

    def __post_init__(self) -> None:
        if not self.weight >= 0:
            raise ValueError(f"the z weight must be >= 0, got {self.weight}")
        if self.solve not in SOLVES:
            raise ValueError(f"the z solve must be one of {', '.join(SOLVES)}, got {self.solve!r}")
        if not (self.rho > 0 and self.admm_iters >= 1):
            raise ValueError(f"the joint z solve needs rho > 0 and at least one ADMM iteration, got {self.rho}, "
                             f"{self.admm_iters}")

    @property
    def joint(self) -> bool:
        """Whether samplers with a CG data step couple inside it (:meth:`dc_solve`) rather than before it."""
        return self.solve != "prox" and self.weight > 0

    def with_k(self, k: int) -> ZCoupling:
        return replace(self, k=int(k))

    def dc_solve(self, A, rhs: torch.Tensor, lam: torch.Tensor, p0: torch.Tensor, cg_iters: int,
                 r: torch.Tensor | float, gain: torch.Tensor, state: dict | None = None) -> torch.Tensor:
        """The joint data-consistency solve (module note): ``(A^H A + lam I) p = rhs`` with TV along z.

        Shapes: rhs, p0 ``(S*k, H, W)`` physical; lam ``(S*k,)``; r the Tweedie error std (network units,
        scalar); gain ``(S*k, 1, 1)`` physical units per network unit. ``state``: the chain's carried ADMM
        variables (used with ``solve="admm-carry"``).
        """
        b = p0.shape[0]
        g = gain.reshape(b // self.k, self.k, 1, 1).abs().to(p0.device, p0.real.dtype)
        tau = self.weight * torch.as_tensor(r, dtype=p0.real.dtype, device=p0.device) * 0.5 * (g[1:] + g[:-1])
        ap0 = A.normal(p0)
        scale = _stack_dot(p0, ap0) / _stack_dot(p0, p0).clamp_min(1e-30)  # A^H A's size on this estimate
        rho = self.rho * scale.clamp_min(1e-12)  # a 0-d tensor: no host sync inside the sampler loop
        return admm_tv_z(A.normal, rhs, lam, p0, tau, rho, k=self.k, admm_iters=self.admm_iters,
                         cg_iters=cg_iters, normal_p0=ap0, state=state if self.solve == "admm-carry" else None)

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
