"""Timestep schedules and the deterministic/stochastic DDIM update shared by the samplers."""

from __future__ import annotations

from typing import Optional

import torch

from .common import randn

__all__ = ["strided_timesteps", "geometric_timesteps", "ddim_update", "unconditional_ddim"]


def strided_timesteps(num_train: int, steps: int) -> list[int]:
    """``steps`` timesteps from ``num_train - 1`` down to 0, evenly strided (DDIM's "uniform" skip).

    Returns a descending list of ints; ``steps == num_train`` gives the full ancestral schedule.
    """
    if not 1 <= steps <= num_train:
        raise ValueError(f"steps must be in [1, {num_train}], got {steps}")
    ts = torch.linspace(num_train - 1, 0, steps).round().long().tolist()
    out: list[int] = []
    for t in ts:  # rounding may repeat a value at tiny strides; keep strictly decreasing
        if not out or t < out[-1]:
            out.append(int(t))
    return out


def geometric_timesteps(alphas_cumprod: torch.Tensor, steps: int) -> list[int]:
    """``steps`` timesteps whose noise levels ``sigma_t = sqrt((1 - abar_t) / abar_t)`` are evenly spaced in
    ``log sigma`` from the largest to the smallest (Song & Ermon 2019's annealing), descending.

    A uniform stride in ``t`` leaves the last levels far apart in ``sigma`` (with the linear DDPM schedule, 50
    levels step from ``sigma`` 0.07 straight to 0.01), which a chain that takes one step per level cannot
    follow; a geometric spacing keeps every ratio ``sigma_i / sigma_{i+1}`` equal. Timesteps that round to the
    same integer are merged, so fewer than ``steps`` may come back at very large ``steps``.
    """
    num = int(alphas_cumprod.shape[0])
    if not 1 <= steps <= num:
        raise ValueError(f"steps must be in [1, {num}], got {steps}")
    ac = alphas_cumprod.double().cpu()
    log_sigma = 0.5 * torch.log((1 - ac) / ac)  # increasing in t
    targets = torch.linspace(float(log_sigma[-1]), float(log_sigma[0]), steps, dtype=torch.float64)
    idx = torch.searchsorted(log_sigma.contiguous(), targets).clamp(0, num - 1)
    # the nearer of the two neighbouring timesteps
    lo = (idx - 1).clamp_min(0)
    pick = torch.where((targets - log_sigma[lo]).abs() < (log_sigma[idx] - targets).abs(), lo, idx)
    out: list[int] = []
    for t in pick.tolist():
        if not out or t < out[-1]:
            out.append(int(t))
    return out


def ddim_update(x0: torch.Tensor, eps: torch.Tensor, abar_prev: torch.Tensor, eta: float, abar_t: torch.Tensor,
                generator: Optional[torch.Generator]) -> torch.Tensor:
    """DDIM step (Song et al., 2021, eq. 12) from an x0 estimate and a noise estimate.

    ``x_{t-1} = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z``, with
    ``sigma = eta sqrt((1-abar_prev)/(1-abar_t)) sqrt(1 - abar_t/abar_prev)``.
    """
    sigma = eta * ((1 - abar_prev) / (1 - abar_t)).sqrt() * (1 - abar_t / abar_prev).sqrt()
    mean = abar_prev.sqrt() * x0 + (1 - abar_prev - sigma ** 2).clamp_min(0).sqrt() * eps
    if eta == 0:
        return mean
    z = randn(x0.shape, generator, x0.device)
    return mean + sigma * z


@torch.no_grad()
def unconditional_ddim(prior, shape: tuple, steps: int = 50, generator: Optional[torch.Generator] = None,
                       eta: float = 0.0, progress: bool = False) -> torch.Tensor:
    """Unconditional samples from a prior, in network space. Shapes: ``shape = (B, channels, H, W)``.

    ``eta = 0`` is deterministic DDIM, ``eta = 1`` ancestral sampling on the strided schedule.
    """
    from tqdm.auto import tqdm

    dev = prior.device
    gdev = generator.device if generator is not None else "cpu"
    x = torch.randn(shape, generator=generator, device=gdev).to(dev)
    ts = strided_timesteps(prior.num_timesteps, steps)
    ac = prior.alphas_cumprod
    for i, t in enumerate(tqdm(ts, desc="sampling", leave=False, disable=not progress)):
        eps = prior.eps(x, t)
        x0 = prior.x0_from_eps(x, t, eps).clamp(-3, 3)
        abar_prev = ac[ts[i + 1]] if i + 1 < len(ts) else torch.ones((), device=dev)
        eps = (x - ac[t].sqrt() * x0) / (1 - ac[t]).sqrt()
        x = ddim_update(x0, eps, abar_prev, eta, ac[t], generator)
    return x
