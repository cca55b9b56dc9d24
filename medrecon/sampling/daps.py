"""Decoupled annealing posterior sampling (DAPS; Zhang et al., CVPR 2025), over a DDPM prior.

DAPS decouples consecutive steps of the chain. At each level ``t_i`` of an annealed schedule (paper,
Algorithm 1):

1. **x0 estimate**: a few deterministic DDIM steps (the probability-flow ODE, Song et al. 2021) from
   ``x_{t_i}`` down to ``t = 0`` give ``x0_hat`` (``ode_steps = 1`` is Tweedie's estimate);
2. **Langevin on x0**: ``langevin`` steps of unadjusted Langevin dynamics on
   ``log N(y; A p, noise) + log N(p; p_hat, gain^2 r_i^2)``, the measurement likelihood times the paper's
   Gaussian approximation of ``p(x0 | x_{t_i})`` with ``r_i = sigma_{t_i}`` (paper, eq. 9, ``r_t = sigma_t``);
3. **re-noise** to the next level: ``x_{t_{i+1}} = sqrt(abar) x0 + sqrt(1 - abar) n``. The chain forgets
   the previous level's errors, so no network backprop is needed and large corrections stay possible.

Step size: the paper tunes a learning rate per task. Here a step is ``lr_i / L_i``, where ``L_i = c ||A||^2 /
noise_var + 1 / (gain^2 r_i^2)`` bounds the target's curvature (``c = 2`` complex, 1 real; ``||A||`` by power
iteration once per batch): ``lr`` is dimensionless and stable for any ``lr < 2``, whatever the operator's
scale. ``lr_i`` decays linearly from ``lr`` to ``lr * lr_min_ratio`` over the levels (the paper's schedule).

Noise is physical (``problem.noise_var``, docs/design.md section 4). Noiseless data would make the
likelihood a constraint and the step zero, so the likelihood uses at least :data:`NOISE_FLOOR` of the
data's RMS as its noise standard deviation (float32 data are exact only to ~1e-7; the floor is documented
in the run record's settings).
"""

from __future__ import annotations

from typing import Optional

import torch

from .cg import operator_norm
from .common import DivergenceGuard, check_finite, randn
from .loop import levels, start
from .problem import InverseProblem
from .schedule import ddim_update

__all__ = ["daps_chain", "NOISE_FLOOR"]

# Smallest likelihood noise std as a fraction of the data's RMS (noiseless simulations, see the module note).
NOISE_FLOOR = 1e-3


def _ode_x0(prior, problem: InverseProblem, x: torch.Tensor, t: int, ode_steps: int) -> tuple[torch.Tensor, int]:
    """``x0_hat`` by ``ode_steps`` deterministic DDIM steps from ``(x, t)`` to 0; returns ``(x0, nfe)``."""
    ac = prior.alphas_cumprod
    ts = sorted({round(t * (1 - j / ode_steps)) for j in range(ode_steps)}, reverse=True)
    x0 = x
    for j, s in enumerate(ts):
        eps = prior.eps(x, s)
        x0 = problem.constrain(prior.x0_from_eps(x, s, eps).clamp(-4, 4))
        if j + 1 < len(ts):
            eps = (x - ac[s].sqrt() * x0) / (1 - ac[s]).sqrt()
            x = ddim_update(x0, eps, ac[ts[j + 1]], 0.0, ac[s], None)
    return x0, len(ts)


def daps_chain(prior, problem: InverseProblem, steps: int = 50, ode_steps: int = 2, langevin: int = 100,
               lr: float = 1.5, lr_min_ratio: float = 0.01, generator: Optional[torch.Generator] = None,
               progress: bool = False) -> tuple[torch.Tensor, int]:
    """Run one batch of DAPS chains.

    Args:
        prior: denoiser with ``eps``, ``x0_from_eps``, ``alphas_cumprod``, ``num_timesteps``.
        problem: one chain per row.
        steps: annealing levels (strided timesteps of the prior).
        ode_steps: DDIM steps of the x0 estimate at each level (network evaluations per level).
        langevin: Langevin steps on x0 per level (operator applications only, no network).
        lr: Langevin step relative to the target's curvature bound (stable below 2).
        lr_min_ratio: the step's final fraction of ``lr`` (linear decay over the levels).
        generator: noise source.
        progress: show a progress bar.

    Returns:
        ``(x0, nfe)``: network-space images ``(B, ch, H, W)`` and network evaluations per chain.
    """
    dev = prior.alphas_cumprod.device
    b = problem.batch
    x, schedule = start(prior, problem, steps, generator, spacing="geometric")
    shape = tuple(x.shape)
    c = 2.0 if problem.is_complex else 1.0
    gain2 = problem.gain.reshape(b).abs().to(dev).float() ** 2
    y = problem.y
    with torch.no_grad():
        rms2 = torch.linalg.vector_norm(y.reshape(b, -1), dim=1).float() ** 2 / y[0].numel()
        noise_var = torch.maximum(problem.noise_var.to(dev).float(), NOISE_FLOOR ** 2 * rms2)
        norm2 = operator_norm(problem.A, problem.A.adjoint(y)).float() ** 2
    bc = lambda v: v.view(-1, *([1] * (len(shape) - 2)))  # (B,) -> (B, 1, 1) for physical images
    guard = DivergenceGuard("DAPS", len(schedule))
    nfe = 0
    x0 = x
    with torch.no_grad():
        for lv in levels(schedule, "DAPS", progress):
            x0, used = _ode_x0(prior, problem, x, lv.t, ode_steps)
            nfe += used
            r2 = (1 - lv.abar) / lv.abar  # r_t = sigma_t, in network units
            x0 = problem.couple(x0, (1 - lv.abar).sqrt())  # volume mode (zcouple.py): the x0 estimate's error std
            curv = c * norm2 / noise_var + 1.0 / (gain2 * r2)
            frac = lv.i / max(1, len(schedule) - 1)
            eta = lr * (1 + frac * (lr_min_ratio - 1)) / curv  # (B,)
            p_hat = problem.to_phys(x0)
            p = p_hat
            for _ in range(langevin):
                grad = -c * problem.A.adjoint(problem.A(p) - y) / bc(noise_var) - (p - p_hat) / bc(gain2 * r2)
                n = randn(shape, generator, dev)
                # unit noise per real component: packed like the image (complex for MRI)
                noise = torch.complex(n[:, 0], n[:, 1]) if problem.is_complex else n[:, 0]
                p = p + bc(eta) * grad + bc((2 * eta).sqrt()) * noise
            x0 = problem.constrain(problem.to_net(p))
            guard.check(lv.i, x0)
            if not lv.last:
                x = lv.abar_next.sqrt() * x0 + (1 - lv.abar_next).sqrt() * randn(shape, generator, dev)
    check_finite(x0, "DAPS")
    return x0, nfe
