"""The result of one reconstruction and the shared sampler call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from medrecon import methods as registry
from medrecon.sampling import posterior_sample

__all__ = ["ReconResult", "run_sampler", "support_record"]


@dataclass
class ReconResult:
    """Image ``(S, h, w)`` float32 (MRI magnitude, CT HU), optional std map, and accounting."""

    image: np.ndarray
    std: Optional[np.ndarray]
    modality: str
    params: dict
    nfe: int
    seconds: float
    info: dict = field(default_factory=dict)


def run_sampler(cfg, prior, problem, params: dict):
    """Run the config's learned method (its registered sampler chain) with the seed, samples, batching and
    autocast of ``cfg``; ``params`` are the method's resolved parameters.

    The precision is this call's (``prior.at_precision``): the prior, which batch workers share from a
    cache, is not changed.
    """
    net = prior.at_precision(torch.bfloat16 if cfg.autocast else None)
    res = posterior_sample(registry.get(cfg.method).sampler, net, problem, samples=cfg.samples, seed=cfg.seed,
                           batch_size=cfg.batch_size, progress=cfg.progress, **params)
    return res


def support_record(problem) -> dict:
    """What the run record says about the support restriction of a learned reconstruction."""
    if problem.support is None:
        return {"applied": False}
    from operators.coils import SUPPORT_LEVEL

    return {"applied": True, "rule": f"coil maps: sum_c |S_c|^2 >= {SUPPORT_LEVEL} x its maximum",
            "fraction": round(problem.support_fraction(), 4)}
