"""Volume mode: the slices of a stack sampled together, coupled along z, in one pass or in overlapping slabs.

Every slice moves through the same schedule in one batch, and at every step the clean-image estimates are
coupled by TV along z (:mod:`.zcouple`). A volume too large for one batch is cut into slabs of ``slab``
slices that overlap by ``overlap``; each slab is sampled as a volume of its own and the overlaps are blended
with linear ramps, so no slab border is a hard edge. Each slice draws its noise from its own stream, seeded
by its index in the volume given (:class:`~.common.RowStreams`), so a slice gets the same noise in any slab:
with ``z_weight = 0`` slab processing equals one pass up to float32 rounding (a CG dot product summed over a
different batch), and with coupling the two differ only through the coupling near the slab borders, which
the ramps down-weight (tests/sampling/test_volume.py states the tolerance). Slice indices count from the
first slice of the volume given: ``--slices 2:6`` and ``--slices 0:6`` draw different noise for slices 2-5.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch

from .common import RowStreams, SampleResult, posterior_stats
from .consistency import data_misfit, noise_misfit
from .posterior import posterior_sample
from .problem import InverseProblem
from .zcouple import ZCoupling

__all__ = ["default_overlap", "slab_ranges", "slab_weights", "volume_sample"]


def default_overlap(slab: int) -> int:
    """Slices shared by neighbouring slabs: a quarter of the slab, at least 1 (at most ``slab - 1``)."""
    return min(max(1, slab // 4), slab - 1)


def slab_ranges(n: int, slab: int | None, overlap: int | None = None) -> list[range]:
    """The slabs covering ``n`` slices: ``slab`` slices each, neighbours sharing ``overlap`` (the last slab
    ends at the last slice). ``slab`` None or ``>= n``: one slab.

    Raises:
        ValueError: ``slab < 2`` or an overlap outside ``[0, slab)``.
    """
    if slab is None or slab >= n:
        return [range(n)]
    if slab < 2:
        raise ValueError(f"a slab needs at least 2 slices, got {slab}")
    ov = default_overlap(slab) if overlap is None else int(overlap)
    if not 0 <= ov < slab:
        raise ValueError(f"the slab overlap must be between 0 and {slab - 1}, got {ov}")
    starts = list(range(0, n - slab, slab - ov)) + [n - slab]
    return [range(a, a + slab) for a in sorted(set(starts))]


def slab_weights(slabs: list[range], n: int) -> list[torch.Tensor]:
    """Blending weights per slab ``(len(slab),)``: ramps ``1/(o+1) .. 1`` into each interior border over the
    slices it shares with its neighbour, 1 elsewhere; summed over slabs they are positive everywhere."""
    out = []
    for j, r in enumerate(slabs):
        w = torch.ones(len(r), dtype=torch.float64)
        if j > 0:
            shared = slabs[j - 1].stop - r.start
            w[:shared] = torch.minimum(w[:shared], torch.arange(1, shared + 1, dtype=torch.float64) / (shared + 1))
        if j + 1 < len(slabs):
            shared = r.stop - slabs[j + 1].start
            ramp = torch.arange(shared, 0, -1, dtype=torch.float64) / (shared + 1)
            w[len(r) - shared:] = torch.minimum(w[len(r) - shared:], ramp)
        out.append(w)
    return out


def volume_sample(method: str | Callable, prior, problem: InverseProblem, z_weight: float,
                  samples: int = 1, seed: int = 0, slab: int | None = None, overlap: int | None = None,
                  keep_samples: bool = False, progress: bool = False, iters: int = 30, z_solve: str = "prox",
                  z_rho: float | None = None, **kwargs) -> SampleResult:
    """Sample the rows of ``problem`` as the contiguous slices of one volume.

    Args:
        method, prior, samples, seed, keep_samples, progress, **kwargs: as :func:`~.posterior.posterior_sample`.
        problem: the volume's S >= 2 slices, in order along z.
        z_weight: the TV-along-z weight ``w >= 0`` (:class:`~.zcouple.ZCoupling`); 0 samples every slice alone.
        slab: slices per slab (None: the whole volume in one pass).
        overlap: slices shared by neighbouring slabs (default :func:`default_overlap`).
        iters: dual iterations of the z proximal map.
        z_solve: ``"prox"`` (couple the estimates before each data step), ``"admm"`` (the fast and Langevin
            samplers solve TV along z jointly with the data term, :mod:`.zcouple`) or ``"admm-carry"`` (the same,
            the ADMM variables carried from step to step).
        z_rho: the joint solve's penalty relative to the data term (None: :data:`.zcouple.ADMM_RHO`).

    Returns:
        :class:`SampleResult` for the whole volume, as ``posterior_sample``'s; ``info["volume"]`` records the
        z weight and the slabs.

    Raises:
        ValueError: fewer than 2 slices, a negative z weight, or a bad slab.
    """
    s = problem.batch
    if s < 2:
        raise ValueError(f"volume mode needs at least 2 slices, got {s}")
    coupling = ZCoupling(float(z_weight), iters=iters, solve=z_solve,
                         **({} if z_rho is None else {"rho": float(z_rho)}))
    slabs = slab_ranges(s, slab, overlap)
    weights = slab_weights(slabs, s)
    dev = prior.alphas_cumprod.device
    acc_samples = None
    total = torch.zeros(s, dtype=torch.float64)
    seconds = 0.0
    res = None
    for r, w in zip(slabs, weights):
        sub = replace(problem.select(slice(r.start, r.stop)), zcouple=coupling)
        streams = RowStreams.for_rows(seed, r, samples, dev)
        res = posterior_sample(method, prior, sub, samples=samples, seed=seed, keep_samples=True,
                               progress=progress, streams=streams, **kwargs)
        seconds += res.seconds
        wb = w.to(res.mean.device, torch.float32).view(-1, 1, 1)
        if acc_samples is None:
            acc_samples = torch.zeros((s, *res.samples.shape[1:]), dtype=res.samples.dtype, device=res.mean.device)
        acc_samples[r.start:r.stop] += wb[:, None] * res.samples
        total[r.start:r.stop] += w
    phys = acc_samples / total.to(acc_samples.device, torch.float32).view(-1, 1, 1, 1)
    mean, std = posterior_stats(phys)
    info = dict(res.info)
    info.update({"misfit": data_misfit(problem, mean).tolist(), "noise_misfit": noise_misfit(problem).tolist(),
                 "seed": seed,
                 "volume": {"z_weight": float(z_weight), "slices": s, "slab": len(slabs[0]),
                            "overlap": (slabs[0].stop - slabs[1].start) if len(slabs) > 1 else 0,
                            "slabs": len(slabs), "prox_iters": iters, "z_solve": z_solve,
                            **({"admm_rho": coupling.rho, "admm_iters": coupling.admm_iters}
                               if z_solve != "prox" else {})}})
    return SampleResult(mean=mean, std=std, nfe=res.nfe, seconds=seconds, samples=phys if keep_samples else None,
                        info=info)
