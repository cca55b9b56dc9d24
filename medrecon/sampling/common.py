"""Shared sampler machinery: results, seeding, the schedule walk, and divergence guards."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import torch

from medrecon.errors import SamplerDivergedError

__all__ = ["RowStreams", "SampleResult", "posterior_stats", "check_finite", "randn", "noise_like", "Timer", "ddpm_posterior",
           "DivergenceGuard"]


@dataclass
class SampleResult:
    """What every sampler returns.

    Attributes:
        mean: posterior mean, physical units, ``(S, H, W)`` (complex for MRI).
        std: pixel-wise posterior standard deviation of the magnitude (MRI) or value (CT), ``(S, H, W)``;
            zeros when one sample was drawn.
        samples: ``(S, K, H, W)`` physical samples (kept only if asked).
        nfe: network evaluations per slice batch (the same for every slice).
        seconds: wall time.
        info: sampler settings and diagnostics.
    """

    mean: torch.Tensor
    std: torch.Tensor
    nfe: int
    seconds: float
    samples: Optional[torch.Tensor] = None
    info: dict = field(default_factory=dict)


def posterior_stats(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std over posterior samples. Shapes: ``(S, K, H, W) -> (S, H, W), (S, H, W)``.

    The std is of the magnitude for complex images (what a reader sees), unbiased for K > 1.
    """
    mean = samples.mean(dim=1)
    k = samples.shape[1]
    if k < 2:
        return mean, torch.zeros(mean.shape, dtype=mean.real.dtype, device=mean.device)
    vals = samples.abs() if samples.is_complex() else samples
    return mean, vals.std(dim=1, unbiased=True)


def check_finite(x: torch.Tensor, where: str) -> None:
    """Raise a clear error if a sampler produced NaN/Inf (one host sync; call sparingly)."""
    if not bool(torch.isfinite(x).all()):
        raise SamplerDivergedError(f"the {where} sampler diverged (NaN/Inf); lower the step size "
                                   "(--zeta) or use more steps; no output was written")


class DivergenceGuard:
    """Stop a chain as soon as it diverges, instead of running every step and failing at the end.

    Checked at the first step, every ``every`` steps and at the last (one host sync each: negligible
    next to a network evaluation). A chain has diverged when the iterate holds NaN/Inf, or when a
    norm explodes: the data residual ``||y - A x0_hat||`` (network units) beyond ``factor`` times
    ``||y|| + sqrt(len(y))`` (the scale of the data plus unit noise), or the iterate's RMS beyond
    ``factor``. Healthy chains stay many orders of magnitude below that (network images have unit
    scale; even the first Tweedie estimates from pure noise are within ~100x), so the test only
    fires on genuine blow-ups, which grow without bound within a few steps.

    Args:
        where: the sampler's name, for the message.
        total: the number of steps.
        every: steps between checks.
        factor: the explosion threshold.
    """

    def __init__(self, where: str, total: int, every: int = 10, factor: float = 1e6) -> None:
        self.where, self.total, self.every, self.factor = where, int(total), max(1, int(every)), float(factor)

    def due(self, i: int) -> bool:
        """Whether step ``i`` (0-based) is checked."""
        return i == 0 or (i + 1) % self.every == 0 or i + 1 == self.total

    def check(self, i: int, x: torch.Tensor, residual: Optional[torch.Tensor] = None,
              data: Optional[torch.Tensor] = None) -> None:
        """Raise :class:`SamplerDivergedError` if step ``i`` diverged (only on due steps).

        Args:
            i: the step index (0-based).
            x: the iterate ``(B, ...)`` (network space).
            residual: per-row residual norms ``(B,)`` in network units, when the sampler computes them.
            data: per-row reference scale ``(B,)`` in the same units: ``||y|| + sqrt(len(y))``.
        """
        if not self.due(i):
            return
        x = x.detach()
        step = f"step {i + 1}/{self.total}"
        if not bool(torch.isfinite(x).all()):
            self._fail(f"NaN/Inf in the image at {step}")
        rms = x.float().pow(2).mean().sqrt()
        if bool(rms > self.factor):
            self._fail(f"the image grew to RMS {float(rms):.3g} (network units) at {step}")
        if residual is not None:
            residual = residual.detach().float()
            if not bool(torch.isfinite(residual).all()):
                self._fail(f"NaN/Inf data residual at {step}")
            if data is not None:
                ratio = residual / data.detach().float().clamp_min(1e-12)
                if bool((ratio > self.factor).any()):
                    self._fail(f"the data residual grew to {float(ratio.max()):.3g} times the data scale at {step}")

    def _fail(self, what: str) -> None:
        raise SamplerDivergedError(f"the {self.where} sampler diverged ({what}); lower the step size (--zeta), "
                                   "use more --steps, or check the prior and the data; no output was written")


class RowStreams:
    """One random stream per batch row, used where a sampler takes a ``torch.Generator``.

    Volume mode draws each slice's noise from its own stream, seeded by the slice's index in the whole volume
    and its sample number (:meth:`for_rows`), so a slice receives the same noise whether the volume is
    sampled in one pass or in slabs (``medrecon.sampling.volume``). :func:`randn` draws row by row from it.
    """

    def __init__(self, generators: list) -> None:
        self.generators = list(generators)
        self.device = self.generators[0].device

    @classmethod
    def for_rows(cls, seed: int, slices: range, samples: int, device: torch.device) -> "RowStreams":
        """Streams for slices ``slices`` (indices in the whole volume) x ``samples``, slice-major as
        ``InverseProblem.repeat``: row ``(s, j)`` is seeded from NumPy's ``SeedSequence([seed, s, j])``, so no two
        (seed, slice, sample) triples share a stream."""
        import numpy as np

        def row_seed(s: int, j: int) -> int:
            return int(np.random.SeedSequence([int(seed), int(s), int(j)]).generate_state(2, np.uint32)
                       .astype(np.uint64) @ np.array([1 << 32, 1], dtype=np.uint64)) & ((1 << 63) - 1)

        gens = [torch.Generator(device=device).manual_seed(row_seed(s, j)) for s in slices for j in range(samples)]
        return cls(gens)

    def __len__(self) -> int:
        return len(self.generators)


def randn(shape, generator, device: torch.device) -> torch.Tensor:
    """Seeded normal noise; the generator (a ``torch.Generator`` or :class:`RowStreams`, one stream per row of
    ``shape[0]``) may live on CPU or on ``device``."""
    if isinstance(generator, RowStreams):
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} row streams for a batch of {shape[0]} rows")
        rows = [torch.randn(tuple(shape[1:]), generator=g, device=g.device) for g in generator.generators]
        return torch.stack(rows).to(device)
    gdev = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gdev).to(device)


def noise_like(like: torch.Tensor, generator: Optional[torch.Generator], device: torch.device) -> torch.Tensor:
    """Unit Gaussian noise shaped like ``like``: real ``N(0, 1)``, or circular complex with ``E|n|^2 = 1`` (each
    part of variance 1/2, as k-space noise), so ``std * noise_like(y)`` has the per-sample variance ``std^2``."""
    if like.is_complex():
        re = randn(like.shape, generator, device)
        im = randn(like.shape, generator, device)
        return torch.complex(re, im).to(like.dtype) * (0.5 ** 0.5)
    return randn(like.shape, generator, device).to(like.dtype)


def ddpm_posterior(abar_t: torch.Tensor, abar_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Coefficients of ``q(x_prev | x_t, x0)`` between any two timesteps (Ho et al. 2020, eq. 7).

    Returns ``(c_x0, c_xt, var)`` with mean ``c_x0 x0 + c_xt x_t`` and variance ``var``.
    """
    alpha = abar_t / abar_prev
    beta = 1 - alpha
    c_x0 = abar_prev.sqrt() * beta / (1 - abar_t)
    c_xt = alpha.sqrt() * (1 - abar_prev) / (1 - abar_t)
    var = beta * (1 - abar_prev) / (1 - abar_t)
    return c_x0, c_xt, var


class Timer:
    """Wall-clock timer that synchronizes CUDA at start and stop only."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> "Timer":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds = time.perf_counter() - self.t0
