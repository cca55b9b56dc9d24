"""Preconditioned posterior Langevin sampling over a diffusion prior (pULA).

After Blumenthal, Holliber, Tamir & Uecker, "Fast and robust diffusion posterior sampling for MR image
reconstruction using the preconditioned unadjusted Langevin algorithm" (2025; BART's ``sample
--posterior``). At every noise level ``sigma_t`` of an annealed schedule the chain targets the *diffused*
posterior

    pi_t(p) ∝ p_t(p) · N(y; A p, noise),

the exact likelihood (in physical units) times the prior diffused to ``sigma_t``, whose score the network
gives through Tweedie's formula: ``grad log p_t(p) = (D_t(p) - p) / (gain^2 sigma_t^2)``. A Langevin step
is preconditioned by the inverse of the target's Gauss-Newton Hessian,

    M_t = (c A^H A / noise_var + I / (gain^2 sigma_t^2))^-1      (c = 2 for complex images, 1 for real),

so directions the data pin down move little and directions the data cannot see move a prior-sized step:
one step size serves every operator, acceleration and noise level. With
``lam_t = noise_var / (c gain^2 sigma_t^2)`` the preconditioned drift is

    M_t grad log pi_t(p) = mu - p,     mu = (A^H A + lam_t I)^-1 (A^H y + lam_t D_t(p)),

and a draw of ``N(0, M_t)`` is ``(A^H A + lam_t I)^-1 (A^H e1 + lam_t e2)`` with ``e1`` distributed as the
measurement noise and ``e2`` as the prior's diffusion noise (perturb-and-MAP, Papandreou & Yuille 2010).
Both go through one CG solve: ``q = (A^H A + lam I)^-1 (A^H (y + a e1) + lam (D + a e2))``, started from
``D + a e2`` (CG then keeps that start's null-space part, which the data cannot correct).

The step ``p <- (1 - g) p + g q`` with ``a = sqrt(g (2 - g)) / g`` is the exact (exponential-integrator)
discretisation of the preconditioned Langevin diffusion when ``M_t`` is the target's exact inverse Hessian:
then its stationary law is the target for every ``g`` in (0, 1], where plain ULA's ``sqrt(2 g)`` noise
inflates the variance by ``2 / (2 - g)``, and ``g = 1`` draws the Gaussian approximation exactly. Where the
diffused prior is flatter than ``sigma_t^-2`` (directions the data cannot see, prior variance ``v``), the
preconditioner over-estimates the curvature and the spread there shrinks towards ``(2 - g) / 2`` of the
exact one: one full step per level (``g = 1``, the fastest setting) gives sharp but narrow samples; several
half steps per level (``inner 4, step 0.5``) come within 8 % of the closed-form posterior std
(tests/sampling/test_gaussian_posterior.py). For noiseless data ``lam_t = 0``: the measured components are
matched exactly (up to CG) and the rest follows the prior.

The levels are spaced geometrically in ``sigma`` (:func:`~.schedule.geometric_timesteps`), as annealed
Langevin sampling needs: a chain that takes one step per level cannot follow DDIM's uniform stride in ``t``,
whose last step jumps from ``sigma`` 0.07 to 0.01 and leaves that noise in the image (mri-4x's tuning slices,
K = 1, ``--geometric 0`` against 1: benchmarks/sweeps/samplers_2026-12-06).

The noise is physical: ``problem.noise_var`` is the k-space noise variance (MRI) or the photon-count
variance of the log-sinogram (CT), not a level on the prior's scale (docs/design.md, section 4).
"""

from __future__ import annotations

from typing import Optional

import torch

from .common import DivergenceGuard, check_finite, noise_like, randn
from .loop import levels, start
from .problem import InverseProblem
from .tv2d import tv_prox_2d

__all__ = ["langevin_chain"]


def langevin_chain(prior, problem: InverseProblem, steps: int = 100, inner: int = 1, step: float = 1.0,
                   cg_iters: int = 5, geometric: int = 1, generator: Optional[torch.Generator] = None,
                   progress: bool = False, tv: float = 0.1) -> tuple[torch.Tensor, int]:
    """Run one batch of preconditioned posterior Langevin chains.

    Args:
        prior: denoiser with ``eps``, ``x0_from_eps``, ``alphas_cumprod``, ``num_timesteps``.
        problem: one chain per row.
        steps: noise levels of the annealed schedule (strided timesteps of the prior).
        inner: Langevin steps per level (each one network evaluation).
        step: the preconditioned step ``g`` in (0, 1]; 1 draws the Gaussian approximation exactly.
        cg_iters: CG iterations that apply the preconditioner at each step.
        geometric: 1 spaces the levels evenly in ``log sigma``; 0 uses DDIM's uniform stride in ``t`` (kept to
            reproduce the comparison in the module note).
        generator: noise source.
        progress: show a progress bar.
        tv: in-plane TV on each denoised estimate, weight ``tv`` times its error std (:mod:`.tv2d`, as the
            fast sampler's ``tv``; default 0.1, the registry's); 0: off (then the module note's exactness statements hold).

    Returns:
        ``(x0, nfe)``: network-space images ``(B, ch, H, W)`` and ``steps * inner`` network evaluations.
    """
    dev = prior.alphas_cumprod.device
    b = problem.batch
    x_t, schedule = start(prior, problem, steps, generator, spacing="geometric" if geometric else "uniform")
    # Work with the variance-exploding variable z = x_t / sqrt(abar) = x0 + sigma n (network units).
    z = x_t / schedule[0].abar.sqrt()
    shape = tuple(z.shape)
    c = 2.0 if problem.is_complex else 1.0
    gain2 = problem.gain.reshape(b).abs().to(dev).float() ** 2
    noise_var = problem.noise_var.to(dev).float()
    noise_std = noise_var.sqrt().view(-1, *([1] * (problem.y.dim() - 1)))
    g = float(step)
    a = (g * (2 - g)) ** 0.5 / g
    guard = DivergenceGuard("langevin", len(schedule) * inner)
    zstate: dict = {}  # volume mode's carried ADMM variables (zcouple.py, solve "admm-carry")
    n = 0
    with torch.no_grad():
        for lv in levels(schedule, "langevin", progress):
            sigma2 = (1 - lv.abar) / lv.abar
            lam = noise_var / (c * gain2 * sigma2)
            for k in range(inner):
                final = lv.last and k + 1 == inner
                x_t = lv.abar.sqrt() * z  # the network's (variance-preserving) input at this level
                d = problem.constrain(prior.x0_from_eps(x_t, lv.t, prior.eps(x_t, lv.t)).clamp(-4, 4))
                r_d = (sigma2 / (1 + sigma2)).sqrt()  # the denoised estimate's error std
                d = problem.couple(d, r_d, joint_dc=True)  # volume mode (zcouple.py): here, or in dc_solve
                if tv > 0:  # TV as a second prior on the denoised estimate (tv2d.py)
                    d = problem.constrain(tv_prox_2d(d, tv * r_d))
                step, lam_k, std_k = problem, lam, noise_std
                if problem.linearize is not None:  # CT's pre-log Poisson likelihood, expanded at this denoised estimate
                    step = problem.linearized(problem.to_phys(d))
                    nv = step.noise_var.to(dev).float()
                    lam_k = nv / (c * gain2 * sigma2)
                    std_k = nv.sqrt().view(-1, *([1] * (step.y.dim() - 1)))
                if final:  # the last step returns the drift's target, without noise
                    start_p = problem.to_phys(d)
                    rhs = step.A.adjoint(step.y) + lam_k.view(-1, 1, 1) * start_p
                    gk, ak = 1.0, 0.0
                else:
                    gk, ak = g, a
                    start_p = problem.to_phys(problem.constrain(d + ak * sigma2.sqrt() * randn(shape, generator, dev)))
                    y_pert = step.y + ak * std_k * noise_like(step.y, generator, dev)
                    rhs = step.A.adjoint(y_pert) + lam_k.view(-1, 1, 1) * start_p
                q = problem.dc_solve(step.A, rhs, lam_k, start_p, cg_iters, r_d, zstate)
                p = (1 - gk) * problem.to_phys(z) + gk * q if gk < 1 else q
                z = problem.constrain(problem.to_net(p))
                guard.check(n, z)
                n += 1
    check_finite(z, "langevin")
    return z, len(schedule) * inner
