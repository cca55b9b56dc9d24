"""The CT acquisition model: scanner geometry and dose -> projector, and simulated sinograms.

One rule each, shared by ``medrecon simulate ct``, the benchmark and any caller that builds a CT problem
(docs/design.md, section 3):

- :class:`CtScan` validates its settings once (one-line :class:`~medrecon.errors.InputError`) and builds the
  projector for an image grid: parallel beam with detector spacing equal to the pixel size, or a fan beam. The fan
  beam is either a clinical geometry (docs/ct_geometry.md) given in mm by a scanner preset
  (:data:`~medrecon.acquisition.scanners.SCANNERS`) and/or SID, SDD, detector pitch and channel count, flat or
  curved detector, full or short scan, which stays fixed in mm whatever the image grid; or, with none of those
  given, the original rule: source 4 field-of-view widths from the centre and the detector 6 (magnification 1.5),
  1.5 detector cells per image column so that the magnified field of view is covered.
- :meth:`CtScan.simulate` turns HU images into line integrals of attenuation, ``y = A mu``, with
  Beer-Lambert transmission (Poisson) noise when a dose (``photons``) is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import torch

from medrecon.acquisition.scanners import SCANNERS
from medrecon.errors import InputError
from operators import (FanBeamCT, FanBeamCurvedCT, ParallelBeamCT, counts_to_line_integrals, hu_to_mu,
                       transmission_counts)
from operators.base import LinearOperator

__all__ = ["DETECTORS", "FAN_KEYS", "GEOMETRIES", "MAX_DETECTORS", "MAX_VIEWS", "SCANS", "CtScan",
           "simulate_sinogram"]

GEOMETRIES = ("parallel", "fan")
DETECTORS = ("flat", "curved")
SCANS = ("full", "short")
MAX_VIEWS = 10_000
MAX_DETECTORS = 100_000
#: The fan-beam settings of :class:`CtScan` (also the benchmark manifest's acquisition keys), with their flags.
FAN_KEYS = {"scanner": "--scanner", "sid_mm": "--sid", "sdd_mm": "--sdd", "detector_pitch_mm": "--detector-pitch",
            "detectors": "--detectors", "detector": "--detector", "scan": "--scan"}
_CLINICAL = ("sid_mm", "sdd_mm", "detector_pitch_mm", "detectors")


@dataclass(frozen=True)
class CtScan:
    """A CT acquisition: geometry, number of views, pixel size and dose.

    Attributes:
        geometry: ``"parallel"`` or ``"fan"``.
        views: projection angles over the scan: ``[0, pi)`` parallel, ``[0, 2 pi)`` a full fan-beam scan,
            ``pi`` + the fan angle a short one (1..:data:`MAX_VIEWS`).
        pixel_mm: the image grid's pixel size in mm (> 0); a parallel beam's detector spacing follows from it.
        photons: incident photons per ray (low dose), or ``None`` for a noiseless sinogram.
        mu_water: linear attenuation of water (1/mm) for the HU <-> mu conversion.
        seed: seeds the transmission noise.
        scanner: a fan-beam preset of :data:`~medrecon.acquisition.scanners.SCANNERS`; the settings below override
            its values.
        sid_mm, sdd_mm: source-to-isocentre and source-to-detector distances (mm).
        detector_pitch_mm: channel pitch at the detector (mm; on a curved detector the arc length, angular pitch
            ``detector_pitch_mm / sdd_mm``).
        detectors: channels per view.
        detector: ``"flat"`` or ``"curved"``; default the preset's, else flat.
        scan: ``"full"`` (2 pi) or ``"short"`` (pi + the fan angle, FBP with Parker's weights).

    A fan beam with a scanner or any of ``sid_mm``, ``sdd_mm``, ``detector_pitch_mm``, ``detectors`` is a clinical
    geometry (fixed in mm: resampling the image leaves it alone) and needs all four, from the preset or given; with
    none of them it is the original geometry of the module docstring (scaled with the image).

    Raises:
        InputError: an unknown geometry, scanner, detector or scan; a view count, pixel size, dose, mu_water or
            fan-beam size out of range; fan settings on a parallel beam; an incomplete clinical geometry; a detector
            nearer the source than the isocentre; a fan of 180 degrees or more. :meth:`operator` adds those that
            need the image: a source inside the field of view.
    """

    geometry: str = "parallel"
    views: int = 60
    pixel_mm: float = 1.0
    photons: Optional[float] = None
    mu_water: float = 0.019
    seed: int = 0
    scanner: Optional[str] = None
    sid_mm: Optional[float] = None
    sdd_mm: Optional[float] = None
    detector_pitch_mm: Optional[float] = None
    detectors: Optional[int] = None
    detector: Optional[str] = None
    scan: str = "full"

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
        self._check_fan()

    def _check_fan(self) -> None:
        given = [FAN_KEYS[k] for k in FAN_KEYS if getattr(self, k) is not None and (k != "scan" or self.scan != "full")]
        if self.geometry == "parallel" and given:
            raise InputError(f"{', '.join(given)} describe a fan beam: add --geometry fan")
        if self.scanner is not None and self.scanner not in SCANNERS:
            raise InputError(f"--scanner must be one of {', '.join(SCANNERS)}, got {str(self.scanner)[:40]!r}")
        if self.detector is not None and self.detector not in DETECTORS:
            raise InputError(f"--detector must be flat or curved, got {str(self.detector)[:40]!r}")
        if self.scan not in SCANS:
            raise InputError(f"--scan must be full or short, got {str(self.scan)[:40]!r}")
        for key in ("sid_mm", "sdd_mm", "detector_pitch_mm"):
            v = getattr(self, key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                                  or v <= 0):
                raise InputError(f"{FAN_KEYS[key]} must be a positive number of mm, got {v!r}")
        n = self.detectors
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_DETECTORS):
            raise InputError(f"--detectors must be a whole number between 1 and {MAX_DETECTORS}, got {n!r}")
        fan = self.fan_geometry()
        if fan is None or "sid_mm" not in fan:
            return
        if fan["sdd_mm"] < fan["sid_mm"]:
            raise InputError(f"the source-to-detector distance ({fan['sdd_mm']:g} mm) is shorter than the "
                             f"source-to-isocentre distance ({fan['sid_mm']:g} mm): the detector must lie beyond "
                             "the isocentre")
        half = 0.5 * fan["detectors"] * fan["detector_pitch_mm"] / fan["sdd_mm"]
        if fan["detector"] == "curved" and half >= math.pi / 2:
            raise InputError(f"the curved detector spans {math.degrees(2 * half):.0f} degrees of fan "
                             f"({fan['detectors']} x {fan['detector_pitch_mm']:g} mm at {fan['sdd_mm']:g} mm); it "
                             "must be narrower than 180")

    def fan_geometry(self) -> Optional[dict[str, Any]]:
        """The resolved fan-beam settings: ``None`` for a parallel beam; ``{"detector", "scan"}`` for the original
        (image-scaled) fan; with a clinical geometry also ``sid_mm``, ``sdd_mm``, ``detector_pitch_mm``,
        ``detectors`` and ``scanner`` (a preset's values overridden by those given).

        Raises:
            InputError: a clinical geometry without all four sizes.
        """
        if self.geometry != "fan":
            return None
        preset = SCANNERS.get(self.scanner) if self.scanner is not None else None
        out: dict[str, Any] = {"detector": self.detector or (preset.detector if preset else "flat"), "scan": self.scan}
        values = {k: getattr(self, k) if getattr(self, k) is not None else getattr(preset, k, None) for k in _CLINICAL}
        if preset is None and all(v is None for v in values.values()):
            return out
        missing = [FAN_KEYS[k] for k, v in values.items() if v is None]
        if missing:
            raise InputError(f"a clinical fan-beam geometry needs --sid, --sdd, --detector-pitch and --detectors (or "
                             f"--scanner); missing {', '.join(missing)}")
        out.update({k: (int(v) if k == "detectors" else float(v)) for k, v in values.items()})
        out["scanner"] = self.scanner
        return out

    def operator(self, shape: tuple[int, int]) -> LinearOperator:
        """The projector for ``(H, W)`` images of :attr:`pixel_mm` pixels; sinograms are ``(views, detectors)``.

        A fan beam whose fan misses part of the image's inscribed circle warns
        (:class:`operators.FanTruncationWarning`): the projections are truncated.

        Raises:
            InputError: the source lies inside the image (SID not above its half diagonal) or another geometry
                the projector refuses, as one line.
        """
        pix, n = float(self.pixel_mm), max(shape)
        if self.geometry == "parallel":
            return ParallelBeamCT(tuple(shape), self.views, pixel_size=pix, detector_spacing=pix)
        fan = self.fan_geometry()
        cls = FanBeamCurvedCT if fan["detector"] == "curved" else FanBeamCT
        if "sid_mm" in fan:
            sizes = (fan["sid_mm"], fan["sdd_mm"], fan["detectors"], fan["detector_pitch_mm"])
        else:  # the original rule, scaled with the image
            sizes = (4 * pix * n, 6 * pix * n, int(1.5 * n), pix * 1.5)
        try:
            return cls(tuple(shape), self.views, source_distance=sizes[0], detector_distance=sizes[1],
                       n_detectors=sizes[2], detector_spacing=sizes[3], pixel_size=pix,
                       scan_range=None if fan["scan"] == "full" else "short")
        except ValueError as exc:
            why = str(exc).split(": ", 1)[-1]  # without the class name
            raise InputError(f"fan-beam geometry for a {shape[0]}x{shape[1]} image of {pix:.3g} mm pixels "
                             f"({shape[0] * pix:.0f} x {shape[1] * pix:.0f} mm): {why}") from exc

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
