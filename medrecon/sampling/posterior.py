"""One entry point for every sampler: K posterior samples per slice, batched, seeded, timed."""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch

from .common import RowStreams, SampleResult, Timer, posterior_stats
from .consistency import data_misfit, noise_misfit
from .consistency import final_dc as exact_dc
from .daps import daps_chain
from .dps import dps_chain
from .fast import fast_chain
from .langevin import langevin_chain
from .problem import InverseProblem

__all__ = ["posterior_sample", "SAMPLERS"]

# The chains this package ships, by name, for library callers and tests that name them; the application
# finds a method's chain in the method registry (MethodSpec.sampler), so a new sampler need not be listed here.
SAMPLERS = {"dps": dps_chain, "fast": fast_chain, "daps": daps_chain, "langevin": langevin_chain}


def posterior_sample(method: Union[str, Callable], prior, problem: InverseProblem, samples: int = 1, seed: int = 0,
                     batch_size: Optional[int] = None, keep_samples: bool = False, progress: bool = False,
                     streams: Optional[RowStreams] = None, **kwargs) -> SampleResult:
    """Draw ``samples`` posterior samples for every slice of ``problem``.

    Rows (slice x sample, slice-major) are processed in chunks of ``batch_size`` (all at once by
    default). Chunk ``j`` draws its noise from a generator seeded with ``seed + 1000003 * j`` on the
    prior's device, so the same seed, batch size and device give the same output.

    Args:
        method: a chain ``chain(prior, problem, generator=, progress=, **kwargs) -> (x0, nfe)`` (a registered
            method's ``MethodSpec.sampler``), or the name of one in :data:`SAMPLERS`.
        prior: the diffusion prior (or a test denoiser with the same interface).
        problem: measurements for S slices.
        samples: K, posterior samples per slice.
        seed: random seed.
        batch_size: rows per network batch.
        keep_samples: also return every sample.
        progress: progress bars.
        streams: one random stream per row (slice x sample) instead of the seeded chunk generators; all rows then
            run as one chunk (volume mode, :mod:`.volume`, where the slices are coupled and a slice's noise must
            not depend on which slab it is sampled in).
        **kwargs: sampler settings (``steps``, ``zeta``, ``cg_iters``, ``eta``, ...). ``final_dc`` (default 0) is
            not the chain's: it is the most CG iterations of a final exact data-consistency step on every
            sample (:func:`~.consistency.final_dc`, stopping at the noise level), applied here so that every
            sampler has it.

    Returns:
        :class:`SampleResult` with mean/std ``(S, H, W)``. ``info`` holds the settings, ``final_dc``, and per
        slice ``misfit`` (``||A mean - y|| / ||y||`` of the posterior mean) and ``noise_misfit`` (what a perfect
        image would give: :func:`~.consistency.noise_misfit`).
    """
    if callable(method):
        chain = method
        method = getattr(method, "__name__", "sampler").strip("_").removesuffix("_chain")
    elif method in SAMPLERS:
        chain = SAMPLERS[method]
    else:
        raise ValueError(f"unknown sampler {method!r}; choose from {sorted(SAMPLERS)}")
    dc_iters = int(kwargs.pop("final_dc", 0) or 0)
    dev = prior.alphas_cumprod.device
    rows = problem.repeat(samples)
    n = rows.batch
    bs = n if batch_size is None or streams is not None else max(1, int(batch_size))
    outs = []
    nfe = 0
    with Timer(dev) as timer:
        for j, start in enumerate(range(0, n, bs)):
            gen = streams if streams is not None else torch.Generator(device=dev).manual_seed(int(seed) + 1000003 * j)
            sub = rows.select(slice(start, start + bs))
            x, nfe = chain(prior, sub, generator=gen, progress=progress, **kwargs)
            p = sub.to_phys(x).detach()
            outs.append(exact_dc(sub, p, dc_iters) if dc_iters > 0 else p)
    phys = torch.cat(outs).reshape(problem.batch, samples, *problem.image_shape)
    mean, std = posterior_stats(phys)
    # Rows are slice-major copies of the problem's slices; the mean has one row per slice, as ``problem``.
    info = {"method": method, "samples": samples, "seed": seed, "batch_size": bs, **kwargs, "final_dc": dc_iters,
            "misfit": data_misfit(problem, mean).tolist(), "noise_misfit": noise_misfit(problem).tolist()}
    return SampleResult(mean=mean, std=std, nfe=nfe, seconds=timer.seconds,
                        samples=phys if keep_samples else None, info=info)
