"""Reconstruct CT sinograms with any registered CT method (FBP, TV, DPS, the fast sampler...)."""

from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np
import torch

from medrecon import methods as registry
from medrecon.errors import InputError
from medrecon.sampling.consistency import data_misfit, noise_misfit
from operators import mu_to_hu

from .config import ReconConfig
from .context import CtData
from .problems import ct_measurement
from .result import ReconResult, misfit_record, run_sampler, sampler_misfit
from .volume import check_volume

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
    if cfg.data_term != "ls" and not photons:
        raise InputError(f"--data-term {cfg.data_term} needs the scan's photon count (I0), which this sinogram file does "
                         "not give; use --data-term ls")
    volume = None
    if cfg.volume:
        check_volume(int(y.shape[0]))
        volume = {"z_weight": cfg.effective_z_weight("ct"), "slab": cfg.slab}
    data = CtData(y, A, mu_water, photons, progress=cfg.progress, data_term=cfg.data_term,
                  z_weight=cfg.effective_z_weight("ct"))
    if spec.learned:
        res = run_sampler(cfg, prior, data.problem(prior), params, "ct")
        mu, nfe = res.mean, res.nfe
        std = res.std * (1000.0 / mu_water)
        # Under PWLS the sampler's misfit is the weighted one; the unweighted one below compares across methods.
        misfit = sampler_misfit(res) if cfg.data_term == "ls" else None
    else:
        mu = spec.runner("ct")(data, settings)
        misfit = None
    hu = mu_to_hu(mu, mu_water)
    seconds = time.perf_counter() - t0
    if misfit is None:  # classical methods return attenuation too, so their misfit is as cheap (outside the time)
        prob = ct_measurement(A, y, photons)
        misfit = misfit_record(data_misfit(prob, mu.float()).tolist(), noise_misfit(prob).tolist(),
                               res.info.get("final_dc", 0) if spec.learned else None)
    return ReconResult(hu.float().cpu().numpy(), None if std is None else std.float().cpu().numpy(), "ct", params,
                       nfe, seconds, {"data_misfit": misfit, "data_term": cfg.data_term,
                                      **({"volume": volume} if volume else {})})
