"""Diffusion posterior sampling (Chung et al., ICLR 2023, Algorithm 1).

At each step: Tweedie's estimate ``x0_hat(x_i)``; the ancestral DDPM update; then a gradient step on
the data residual, with the gradient flowing back through the network. The paper writes the step as
``zeta_i grad ||y - A x0_hat||^2`` with ``zeta_i = zeta' / ||y - A x0_hat||``; the official code
differentiates the unsquared norm ``||y - A x0_hat||`` and scales by a constant, which is the same
update with ``zeta = 2 zeta'``. We do the latter, once (residuals measured in network units), and
divide the step by the operator norm ``||A||`` (power iteration, once per batch) so that one ``zeta``
serves operators of any scale: ``||A|| = 1`` for SENSE with normalized coil maps (so MRI matches the
paper's convention), while a CT projector's norm grows with the image size and number of views.
Tweedie's estimate and the output pass through ``problem.constrain`` (empty outside the
measurement's support, when the problem has one).
"""

from __future__ import annotations

from typing import Optional

import torch

from .cg import operator_norm
from .common import DivergenceGuard, check_finite, ddpm_posterior, randn
from .loop import levels, start
from .problem import InverseProblem

__all__ = ["dps_chain"]


def dps_chain(prior, problem: InverseProblem, steps: int = 1000, zeta: float = 3.0,
              generator: Optional[torch.Generator] = None, progress: bool = False) -> tuple[torch.Tensor, int]:
    """Run one batch of DPS chains.

    Args:
        prior: a :class:`~medrecon.priors.DiffusionPrior` (or anything with ``eps``, ``x0_from_eps``,
            ``alphas_cumprod``, ``num_timesteps``).
        problem: the batch of problems (one chain per row).
        steps: number of timesteps (1000 = the paper's full schedule; fewer = strided).
        zeta: step size on ``||y - A x0_hat||`` in network units.
        generator: noise source.
        progress: show a progress bar.

    Returns:
        ``(x0, nfe)``: final network-space images ``(B, ch, H, W)`` and network evaluations per chain.

    Shapes:
        x: ``(B, channels, H, W)`` with ``B = problem.batch``.
    """
    dev = prior.alphas_cumprod.device
    b = problem.batch
    x, schedule = start(prior, problem, steps, generator)
    gain = problem.gain.reshape(b).abs()
    with torch.no_grad():
        like = problem.A.adjoint(problem.y)
        step = zeta / operator_norm(problem.A, like).view(b, 1, 1, 1).clamp_min(1e-12)
        # ||y|| + sqrt(len(y)) in network units: the scale an exploding residual is measured against.
        data = torch.linalg.vector_norm(problem.y.reshape(b, -1), dim=1) / gain + problem.y[0].numel() ** 0.5
    guard = DivergenceGuard("DPS", len(schedule))
    for lv in levels(schedule, "DPS", progress):
        i, t, abar_t, abar_prev = lv.i, lv.t, lv.abar, lv.abar_next
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            eps = prior.eps(x, t)
            x0 = problem.constrain(prior.x0_from_eps(x, t, eps))  # empty where the data cannot see
            r = problem.residual(x0)
            norm = torch.linalg.vector_norm(r.reshape(b, -1), dim=1) / gain
            (grad,) = torch.autograd.grad(norm.sum(), x)
        with torch.no_grad():
            c_x0, c_xt, var = ddpm_posterior(abar_t, abar_prev)
            x0c = problem.couple(x0.detach().clamp(-4, 4), (1 - abar_t).sqrt())
            x_new = c_x0 * x0c + c_xt * x  # volume mode couples x0_hat across slices (zcouple.py)
            if not lv.last:
                x_new = x_new + var.sqrt() * randn(x.shape, generator, dev)
            x = x_new - step * grad
        guard.check(i, x, residual=norm, data=data)
    x = problem.constrain(x.detach())
    check_finite(x, "DPS")
    return x, len(schedule)
