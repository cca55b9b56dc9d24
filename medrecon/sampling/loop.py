"""The schedule loop every sampler shares: the starting noise, the strided timesteps and their ``abar``.

A sampler asks :func:`start` for ``x_T`` and the levels, then does its own work per :class:`Level`
(Tweedie estimate, data consistency, update). Keeping this in one place keeps the samplers' random
streams and schedules identical: the first draw of every chain is ``x_T``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Optional

import torch
from tqdm.auto import tqdm

from .common import randn
from .problem import InverseProblem
from .schedule import geometric_timesteps, strided_timesteps

__all__ = ["Level", "start", "levels"]


@dataclass(frozen=True)
class Level:
    """One step of a strided schedule.

    Attributes:
        i: step index (0 first).
        t: the timestep.
        abar: ``abar_t`` (0-d tensor).
        abar_next: ``abar`` of the next timestep, 1 after the last.
        last: whether this is the final step (no noise is added after it).
    """

    i: int
    t: int
    abar: torch.Tensor
    abar_next: torch.Tensor
    last: bool


def start(prior, problem: InverseProblem, steps: int, generator: Optional[torch.Generator] = None,
          spacing: str = "uniform") -> tuple[torch.Tensor, list[Level]]:
    """``x_T ~ N(0, I)`` of shape ``(B, channels, H, W)`` for ``problem`` and ``steps`` levels of the prior's
    schedule: ``uniform`` in the timestep (:func:`~.schedule.strided_timesteps`, DDIM's skip) or ``geometric``
    in the noise level (:func:`~.schedule.geometric_timesteps`, the annealed-Langevin spacing)."""
    dev = prior.alphas_cumprod.device
    ac = prior.alphas_cumprod
    x = randn((problem.batch, problem.channels, *problem.image_shape), generator, dev)
    if spacing == "geometric":
        ts = geometric_timesteps(ac, steps)
    elif spacing == "uniform":
        ts = strided_timesteps(prior.num_timesteps, steps)
    else:
        raise ValueError(f"spacing must be 'uniform' or 'geometric', got {spacing!r}")
    one = torch.ones((), device=dev)
    out = [Level(i, t, ac[t], ac[ts[i + 1]] if i + 1 < len(ts) else one, i + 1 == len(ts)) for i, t in enumerate(ts)]
    return x, out


def levels(schedule: list[Level], desc: str, progress: bool) -> Iterator[Level]:
    """The levels, with a progress bar when ``progress``."""
    return iter(tqdm(schedule, desc=desc, leave=False, disable=not progress))
