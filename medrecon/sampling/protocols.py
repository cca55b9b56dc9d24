"""What a sampler needs from a prior and what the application needs from a sampler (structural types).

Samplers are written against these, not against :class:`medrecon.priors.DiffusionPrior`: a test's
Gaussian prior, a patch prior or a prior at another precision all fit. docs/design.md, section 4.
"""

from __future__ import annotations

from typing import Optional, Protocol, runtime_checkable

import torch

from .problem import InverseProblem

__all__ = ["Denoiser", "Chain"]


@runtime_checkable
class Denoiser(Protocol):
    """A diffusion prior as samplers use it (DDPM parametrisation, Ho et al. 2020).

    Attributes:
        alphas_cumprod: ``(T,)`` cumulative ``abar_t`` on the sampling device.
        num_timesteps: ``T``.
    """

    alphas_cumprod: torch.Tensor
    num_timesteps: int

    def eps(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """Predicted noise for ``x`` ``(B, ch, H, W)`` at timestep ``t``; same shape."""
        ...

    def x0_from_eps(self, x: torch.Tensor, t: int, eps: torch.Tensor) -> torch.Tensor:
        """Tweedie's estimate ``(x - sqrt(1 - abar_t) eps) / sqrt(abar_t)``; same shape."""
        ...


class Chain(Protocol):
    """One batch of posterior chains (``MethodSpec.sampler``): one chain per row of ``problem``.

    Returns ``(x0, nfe)``: network-space images ``(B, ch, H, W)`` and network evaluations per chain.
    """

    def __call__(self, prior: Denoiser, problem: InverseProblem, *, generator: Optional[torch.Generator] = None,
                 progress: bool = False, **params) -> tuple[torch.Tensor, int]:
        ...
