"""The fast sampler: DDIM steps with conjugate-gradient data consistency, no network backprop.

Per step (Chung, Lee & Ye, ICLR 2024, "DDS"; with the noise-aware proximal of DiffPIR, Zhu et al.
2023, and the x0|x_t variance of PiGDM, Song et al. 2023):

1. Tweedie estimate ``x0_hat = E[x0 | x_t]``, whose error variance is approximated as
   ``r_t^2 = (1 - abar) / (abar + (1 - abar) / v)`` (exact for a Gaussian prior of variance ``v``);
2. data consistency: ``cg_iters`` CG steps, from ``p0 = to_phys(x0_hat)``, on
   ``(A^H A + lam I) p = A^H y + lam p0`` with ``lam = noise_var / (gain^2 r_t^2 c)``
   (``c = 2`` for complex images): the MAP of ``N(y; A p, noise) N(p; p0, r_t^2)``. For noiseless
   data ``lam = 0`` and this is exactly DDS's CG on the normal equations;
3. optionally perturb-and-MAP (Papandreou & Yuille 2010): add noise to ``y`` and ``p0`` before the
   solve so that an exact solve draws from ``p(x0 | x_t, y)`` rather than returning its mean;
4. a DDIM update (Song et al. 2021, eq. 12) towards the corrected ``x0``; ``eta = 1`` is the
   ancestral DDPM step, which makes the whole chain an exact posterior sampler for Gaussian priors.

Both clean-image estimates pass through ``problem.constrain`` (empty outside the measurement's
support, when the problem has one). With ``tv > 0`` the Tweedie estimate is first replaced by its in-plane
TV proximal map with weight ``tv * r_t`` (:mod:`.tv2d`), before the data-consistency solve starts from it.
"""

from __future__ import annotations

from typing import Optional

import torch

from .common import DivergenceGuard, check_finite, noise_like, randn
from .loop import levels, start
from .problem import InverseProblem
from .schedule import ddim_update
from .tv2d import tv_prox_2d

__all__ = ["fast_chain"]


def fast_chain(prior, problem: InverseProblem, steps: int = 50, cg_iters: int = 5, eta: float = 0.85,
               perturb: bool = False, prior_var: float = 1.0, generator: Optional[torch.Generator] = None,
               progress: bool = False, tv: float = 0.3) -> tuple[torch.Tensor, int]:
    """Run one batch of fast (DDS-style) chains.

    Args:
        prior: denoiser with ``eps``, ``x0_from_eps``, ``alphas_cumprod``, ``num_timesteps``.
        problem: one chain per row.
        steps: DDIM steps (= network evaluations).
        cg_iters: CG iterations per step.
        eta: DDIM stochasticity (0 deterministic, 1 ancestral).
        perturb: perturb-and-MAP sampling of ``x0 | x_t, y`` (exact posterior for Gaussian priors).
        prior_var: ``v`` in the ``r_t`` formula (data variance in network units).
        generator: noise source.
        progress: show a progress bar.
        tv: in-plane TV weight on the Tweedie estimate in units of its error std ``r_t`` (0: off; the default
            0.3 is the registry's, tuned in ``medrecon/methods.py``).

    Returns:
        ``(x0, nfe)`` as :func:`~medrecon.sampling.dps.dps_chain`.
    """
    dev = prior.alphas_cumprod.device
    b = problem.batch
    x, schedule = start(prior, problem, steps, generator)
    shape = tuple(x.shape)
    gain2 = problem.gain.reshape(b).abs() ** 2 * (2.0 if problem.is_complex else 1.0)
    noise_var = problem.noise_var.to(dev).float()
    aty = problem.A.adjoint(problem.y)
    x0c = x
    guard = DivergenceGuard("fast", len(schedule))
    zstate: dict = {}  # volume mode's carried ADMM variables (zcouple.py, solve "admm-carry")
    with torch.no_grad():
        for lv in levels(schedule, "fast", progress):
            i, t, abar_t, abar_prev = lv.i, lv.t, lv.abar, lv.abar_next
            eps = prior.eps(x, t)
            # Outside the measurement's support the data term is flat: keep the image empty there.
            x0 = problem.constrain(prior.x0_from_eps(x, t, eps).clamp(-4, 4))
            r2 = (1 - abar_t) / (abar_t + (1 - abar_t) / prior_var)
            # volume mode: TV along z across the slices, before the data step or inside it (zcouple.py)
            x0 = problem.couple(x0, r2.sqrt(), joint_dc=True)
            if tv > 0:  # TV as a second prior on the estimate (tv2d.py): strong while r_t is large
                x0 = problem.constrain(tv_prox_2d(x0, tv * r2.sqrt()))
            p0 = problem.to_phys(x0)
            # A non-Gaussian likelihood (CT's pre-log Poisson) is re-expanded at this step's estimate.
            step = problem.linearized(p0) if problem.linearize is not None else problem
            nv = noise_var if step is problem else step.noise_var.to(dev).float()
            lam = nv / (gain2 * r2)
            rhs = aty if step is problem else step.A.adjoint(step.y)
            if perturb:
                x0p = problem.constrain(x0 + r2.sqrt() * randn(shape, generator, dev))
                p0 = problem.to_phys(x0p)
                yn = step.y
                std = nv.sqrt().view(-1, *([1] * (yn.dim() - 1)))
                yn = yn + std * noise_like(yn, generator, dev)
                rhs = step.A.adjoint(yn)
            rhs = rhs + lam.view(-1, 1, 1) * p0
            p = problem.dc_solve(step.A, rhs, lam, p0, cg_iters, r2.sqrt(), zstate)
            x0c = problem.constrain(problem.to_net(p))
            guard.check(i, x0c)
            if not lv.last:
                eps_c = (x - abar_t.sqrt() * x0c) / (1 - abar_t).sqrt()
                x = ddim_update(x0c, eps_c, abar_prev, eta, abar_t, generator)
    check_finite(x0c, "fast")
    return x0c, len(schedule)
