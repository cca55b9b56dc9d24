"""The result of one reconstruction and the shared sampler call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from medrecon import methods as registry
from medrecon.sampling import SampleResult, posterior_sample

__all__ = ["MISFIT_MEANING", "ReconResult", "misfit_record", "run_sampler", "sampler_misfit", "support_record"]


@dataclass
class ReconResult:
    """Image ``(S, h, w)`` float32 (MRI magnitude, CT HU), optional std map, and accounting.

    ``info`` carries what the run record keeps beside the image; ``info["data_misfit"]``
    (:func:`misfit_record`) where the method's output can be put through the forward operator (learned methods,
    CT classical methods), absent otherwise.
    """

    image: np.ndarray
    std: Optional[np.ndarray]
    modality: str
    params: dict
    nfe: int
    seconds: float
    info: dict = field(default_factory=dict)


def run_sampler(cfg, prior, problem, params: dict, modality: str = "mri"):
    """Run the config's learned method (its registered sampler chain) with the seed, samples, batching and
    autocast of ``cfg``; ``params`` are the method's resolved parameters. In volume mode (``cfg.volume``) the
    slices are sampled together with the z coupling (:func:`medrecon.sampling.volume.volume_sample`).

    The precision is this call's (``prior.at_precision``): the prior, which batch workers share from a
    cache, is not changed.
    """
    net = prior.at_precision(torch.bfloat16 if cfg.autocast else None, compiled=cfg.compile)
    if cfg.volume:
        from medrecon.sampling.volume import volume_sample

        z_solve, z_rho = cfg.effective_z_solve(modality)
        return volume_sample(registry.get(cfg.method).sampler, net, problem, cfg.effective_z_weight(modality),
                             samples=cfg.samples, seed=cfg.seed, slab=cfg.slab, progress=cfg.progress,
                             z_solve=z_solve, z_rho=z_rho, **params)
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


#: What the run record's ``data_misfit`` means.
MISFIT_MEANING = ("||A x - y|| / ||y|| of the reconstruction (learned: the posterior mean) in the measurement's "
                  "units, before cropping; noise_misfit: what the true image would give, sqrt(m noise_var) / ||y|| "
                  "over the m measured entries (0 for noiseless data)")


def misfit_record(misfit: Sequence[float], noise: Sequence[float], final_dc: int | None = None) -> dict:
    """The run record's ``data_misfit``: per-slice and mean data misfit, the noise reference and, for learned
    methods, the final data-consistency iterations (:mod:`medrecon.sampling.consistency`). Values keep 6
    significant digits. Shapes: ``misfit``, ``noise`` ``(S,)``."""

    def sig(v: float) -> float:
        return float(f"{float(v):.6g}")

    out = {"mean": sig(sum(misfit) / max(1, len(misfit))), "per_slice": [sig(v) for v in misfit],
           "noise_misfit": [sig(v) for v in noise], "meaning": MISFIT_MEANING}
    if final_dc is not None:
        out["final_dc"] = int(final_dc)
    return out


def sampler_misfit(res: SampleResult) -> dict:
    """:func:`misfit_record` of a :class:`~medrecon.sampling.SampleResult` (its ``info`` has them per slice)."""
    return misfit_record(res.info["misfit"], res.info["noise_misfit"], res.info.get("final_dc", 0))
