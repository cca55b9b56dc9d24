"""Reconstruct CT sinograms with any registered CT method (FBP, TV, DPS, the fast sampler...)."""

from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np
import torch

from medrecon import methods as registry
from operators import mu_to_hu

from .config import ReconConfig
from .context import CtData
from .result import ReconResult, run_sampler

__all__ = ["reconstruct_sinogram"]


def reconstruct_sinogram(sinogram: np.ndarray, A, cfg: ReconConfig, device: torch.device, mu_water: float = 0.019,
                         photons: float = 0.0, prior=None) -> ReconResult:
    """Reconstruct ``(S, views, detectors)`` line integrals into HU images ``(S, H, W)``."""
    y = torch.from_numpy(np.ascontiguousarray(sinogram)).to(device, torch.float32)
    A = A.to(device)
    spec = registry.get(cfg.method)
    settings = cfg.method_settings("ct")
    params = asdict(settings)
    t0 = time.perf_counter()
    std, nfe = None, 0
    data = CtData(y, A, mu_water, photons, progress=cfg.progress)
    if spec.learned:
        res = run_sampler(cfg, prior, data.problem(prior), params)
        mu, nfe = res.mean, res.nfe
        std = res.std * (1000.0 / mu_water)
    else:
        mu = spec.runner("ct")(data, settings)
    hu = mu_to_hu(mu, mu_water)
    return ReconResult(hu.float().cpu().numpy(), None if std is None else std.float().cpu().numpy(), "ct", params,
                       nfe, time.perf_counter() - t0)
