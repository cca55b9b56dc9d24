"""Reconstruct CT sinograms with FBP, TV, DPS or the fast sampler."""

from __future__ import annotations

import time

import numpy as np
import torch

from operators import mu_to_hu

from .config import ReconConfig
from .problems import ct_problem
from .result import ReconResult, run_sampler

__all__ = ["reconstruct_sinogram"]


def reconstruct_sinogram(sinogram: np.ndarray, A, cfg: ReconConfig, device: torch.device, mu_water: float = 0.019,
                         photons: float = 0.0, prior=None) -> ReconResult:
    """Reconstruct ``(S, views, detectors)`` line integrals into HU images ``(S, H, W)``."""
    y = torch.from_numpy(np.ascontiguousarray(sinogram)).to(device, torch.float32)
    A = A.to(device)
    params = cfg.method_params("ct")
    t0 = time.perf_counter()
    std, nfe = None, 0
    if cfg.method == "fbp":
        mu = A.fbp(y)
    elif cfg.method == "tv":
        from medrecon.baselines import tv_iterative

        mu = tv_iterative(A, y, params["lam"] * mu_water, iters=params["iters"])
    else:
        prob = ct_problem(prior, A, y, mu_water=mu_water, photons=photons or None)
        res = run_sampler(cfg, prior, prob, params)
        mu, nfe = res.mean, res.nfe
        std = res.std * (1000.0 / mu_water)
    hu = mu_to_hu(mu, mu_water)
    return ReconResult(hu.float().cpu().numpy(), None if std is None else std.float().cpu().numpy(), "ct", params,
                       nfe, time.perf_counter() - t0)
