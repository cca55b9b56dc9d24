"""The CT acquisition model: scanner geometry and dose -> projector, and simulated sinograms.

One rule each, shared by ``medrecon simulate ct``, the benchmark and any caller that builds a CT problem
(docs/design.md, section 3):

- :class:`CtScan` validates its settings once (one-line :class:`~medrecon.errors.InputError`) and builds the
  projector for an image grid: parallel beam with detector spacing equal to the pixel size, or a fan beam whose
  source sits 4 field-of-view widths from the centre and the detector 6 (magnification 1.5), with 1.5 detector
  cells per image column so that the magnified field of view is covered.
- :meth:`CtScan.simulate` turns HU images into line integrals of attenuation, ``y = A mu``, with
  Beer-Lambert transmission (Poisson) noise when a dose (``photons``) is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from medrecon.errors import InputError
from operators import FanBeamCT, ParallelBeamCT, counts_to_line_integrals, hu_to_mu, transmission_counts
from operators.base import LinearOperator

__all__ = ["CtScan", "GEOMETRIES", "MAX_VIEWS", "simulate_sinogram"]

GEOMETRIES = ("parallel", "fan")
MAX_VIEWS = 10_000


@dataclass(frozen=True)
class CtScan:
    """A CT acquisition: geometry, number of views, pixel size and dose.

    Attributes:
        geometry: ``"parallel"`` or ``"fan"``.
        views: projection angles over the geometry's period (1..:data:`MAX_VIEWS`).
        pixel_mm: the image grid's pixel size in mm (> 0); the detector spacing follows from it.
        photons: incident photons per ray (low dose), or ``None`` for a noiseless sinogram.
        mu_water: linear attenuation of water (1/mm) for the HU <-> mu conversion.
        seed: seeds the transmission noise.

    Raises:
        InputError: an unknown geometry, or a view count, pixel size, dose or mu_water out of range.
    """

    geometry: str = "parallel"
    views: int = 60
    pixel_mm: float = 1.0
    photons: Optional[float] = None
    mu_water: float = 0.019
    seed: int = 0

    def __post_init__(self) -> None:
        if self.geometry not in GEOMETRIES:
            raise InputError(f"--geometry must be one of {', '.join(GEOMETRIES)}, got {self.geometry!r}")
        if isinstance(self.views, bool) or not isinstance(self.views, int) or not 1 <= self.views <= MAX_VIEWS:
            raise InputError(f"--views must be a whole number between 1 and {MAX_VIEWS}, got {self.views!r}")
        if not (math.isfinite(self.pixel_mm) and self.pixel_mm > 0):
            raise InputError(f"the pixel size must be a positive number of mm, got {self.pixel_mm!r}")
        if self.photons is not None and not (math.isfinite(self.photons) and self.photons > 0):
            raise InputError(f"--photons must be a positive number of photons per ray, got {self.photons!r}")
        if not (math.isfinite(self.mu_water) and self.mu_water > 0):
            raise InputError(f"mu_water must be a positive attenuation in 1/mm, got {self.mu_water!r}")

    def operator(self, shape: tuple[int, int]) -> LinearOperator:
        """The projector for ``(H, W)`` images of :attr:`pixel_mm` pixels; sinograms are ``(views, detectors)``."""
        pix, n = float(self.pixel_mm), max(shape)
        if self.geometry == "parallel":
            return ParallelBeamCT(tuple(shape), self.views, pixel_size=pix, detector_spacing=pix)
        return FanBeamCT(tuple(shape), self.views, source_distance=4 * pix * n, detector_distance=6 * pix * n,
                         n_detectors=int(1.5 * n), detector_spacing=pix * 1.5, pixel_size=pix)

    def simulate(self, hu: torch.Tensor, A: Optional[LinearOperator] = None, return_counts: bool = False):
        """Sinograms ``(S, views, detectors)`` of HU images ``(S, H, W)`` (``A`` defaults to :meth:`operator`);
        with ``return_counts`` also the pre-log counts (:func:`simulate_sinogram`)."""
        A = self.operator(tuple(hu.shape[-2:])) if A is None else A
        return simulate_sinogram(hu, A, self.seed, self.photons, self.mu_water, return_counts)


def simulate_sinogram(hu: torch.Tensor, A: LinearOperator, seed: int, photons: Optional[float] = None,
                      mu_water: float = 0.019, return_counts: bool = False):
    """Line integrals of attenuation ``A mu`` for HU images ``(S, H, W)``; Poisson noise if ``photons``.

    With ``return_counts``: ``(line integrals, counts)``, the counts (float32, pre-log; None without
    ``photons``) being the measurement the line integrals are the log of (same random stream).
    """
    sino = A(hu_to_mu(hu.float(), mu_water))
    counts = None
    if photons:
        gen = torch.Generator(device=sino.device).manual_seed(int(seed))
        n = transmission_counts(sino, float(photons), gen)
        sino, counts = counts_to_line_integrals(n, float(photons)).to(sino.dtype), n.float()
    return (sino, counts) if return_counts else sino
