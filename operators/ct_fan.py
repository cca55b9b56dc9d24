"""2-D fan-beam CT: flat (:class:`FanBeamCT`) and curved, equiangular (:class:`FanBeamCurvedCT`) detectors, full and
short scans, with exact adjoints and FBP (docs/ct_geometry.md).

Geometry (image conventions of :mod:`operators.ct`; all lengths in mm, angles in radians):

- At source angle ``beta`` the source sits at ``S = -D r_beta`` with ``r_beta = (-sin beta, cos beta)`` (beta = 0:
  source below the image) and ``e_beta = (cos beta, sin beta)`` runs along the detector. ``D`` is the
  source-to-isocentre distance (``source_distance``, SID), ``D_sd`` the source-to-detector distance
  (``detector_distance``, SDD).
- A ray leaves the source at fan angle ``gamma`` from the central ray (the one through the isocentre), positive
  towards ``+e_beta``: direction ``cos(gamma) r_beta + sin(gamma) e_beta``.
- Detector bin ``k`` has the coordinate ``u_k = (k - (n-1)/2) * detector_spacing`` (mm, measured at the detector).
  Flat: ``u_k`` lies on the line through ``S + D_sd r_beta`` along ``e_beta``, so ``gamma_k = atan(u_k / D_sd)``.
  Curved (third generation): ``u_k`` is arc length on the circle of radius ``D_sd`` about the source, so
  ``gamma_k = u_k / D_sd`` (angular pitch ``detector_spacing / D_sd``).
- The ray ``(beta, gamma)`` is the parallel-beam line ``x cos(theta) + y sin(theta) = t`` with
  ``theta = beta - gamma`` and ``t = D sin(gamma)``. Kak & Slaney count ``gamma`` the other way
  (``theta = beta + gamma``); with our sign the conjugate of ``(beta, gamma)``, the same line run backwards, is
  ``(beta + pi - 2 gamma, -gamma)``.

Scans: a full scan covers ``beta`` in ``[0, 2 pi)`` (``n`` views at ``k 2 pi / n``). A short scan covers
``[0, pi + 2 delta]`` with ``delta >= gamma_max``, the half fan angle to the outer edge of the outermost bins
(the minimal short scan is ``pi + 2 gamma_max``); ``n`` views sit at the midpoints ``(k + 1/2) range / n``.

FBP: Kak & Slaney, *Principles of Computerized Tomographic Imaging* (1988), sec. 3.4.1 (equiangular rays) and
3.4.2 (equally spaced collinear detectors), with each ray's redundancy weight in place of the factor 1/2 of a full
scan: 1/2 for a full scan, Parker's weight (:func:`parker_weights`) for a short scan.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from .ct import _angle_weights, _as_angles, _filter_rows, _interp_rows, _RayProjector

__all__ = ["FanBeamCT", "FanBeamCurvedCT", "FanTruncationWarning", "parker_weights", "short_scan_angle_weights"]

_TWO_PI = 2 * math.pi


class FanTruncationWarning(UserWarning):
    """The fan does not cover the image's inscribed circle: some rays through the image miss the detector."""


def parker_weights(beta: torch.Tensor, gamma: torch.Tensor, delta: float) -> torch.Tensor:
    """Parker's short-scan weights, in Parker's and Kak & Slaney's sign of ``gamma`` (``theta = beta + gamma``).

    D. L. Parker, "Optimal short scan convolution reconstruction for fanbeam CT", Med. Phys. 9(2):254-257 (1982),
    the smooth ``sin^2`` weighting function, for a scan ``beta`` in ``[0, pi + 2 delta]``::

        w = sin^2( pi/4 * beta / (delta - gamma) )                 0 <= beta <= 2 delta - 2 gamma
        w = 1                                                     2 delta - 2 gamma <= beta <= pi - 2 gamma
        w = sin^2( pi/4 * (pi + 2 delta - beta) / (delta + gamma) )  pi - 2 gamma <= beta <= pi + 2 delta

    and 0 outside the scan. For ``|gamma| < delta <= pi/2`` it is non-negative, at most 1, continuously
    differentiable in ``beta``, and the weights of a ray and its conjugate ``(beta + pi + 2 gamma, -gamma)`` sum to 1,
    so every line counts once. ``delta`` is half the fan angle (the minimal short scan) or more (an overscan).
    The projectors of this module count ``gamma`` the other way and call ``parker_weights(beta, -gamma, delta)``.

    Shapes: ``beta`` and ``gamma`` broadcast; returns their broadcast shape in float64.
    """
    beta = torch.as_tensor(beta, dtype=torch.float64)
    gamma = torch.as_tensor(gamma, dtype=torch.float64)
    a = (delta - gamma).clamp_min(1e-300)
    b = (delta + gamma).clamp_min(1e-300)
    quarter = math.pi / 4
    w = torch.ones(torch.broadcast_shapes(beta.shape, gamma.shape), dtype=torch.float64, device=beta.device)
    w = torch.where(beta < 2 * a, torch.sin(quarter * beta / a) ** 2, w)
    w = torch.where(beta > math.pi - 2 * gamma, torch.sin(quarter * (math.pi + 2 * delta - beta) / b) ** 2, w)
    return torch.where((beta < 0) | (beta > math.pi + 2 * delta), torch.zeros_like(w), w)


def short_scan_angle_weights(angles: torch.Tensor, scan_range: float) -> torch.Tensor:
    """Quadrature weights ``d(beta)`` for angles inside ``[0, scan_range]`` (not periodic).

    Each angle gets half the gap to each neighbour; the first and last reach to the mirror images of their
    neighbours across the ends, so midpoint-sampled angles ``(k + 1/2) range / n`` all get ``range / n`` and
    angles including both ends get the trapezoid rule's weights.

    Shapes: ``(n,)`` -> ``(n,)`` float64.
    """
    a = angles.double()
    order = torch.argsort(a)
    s = a[order]
    ext = torch.cat([-s[:1], s, 2 * scan_range - s[-1:]])
    w_sorted = 0.5 * (ext[2:] - ext[:-2])
    w = torch.empty_like(w_sorted)
    w[order] = w_sorted
    return w


class _FanBeam(_RayProjector):
    """Shared machinery of the fan-beam projectors; subclasses say how bins map to fan angles and filter."""

    geometry_type = ""
    detector = ""

    def __init__(self, image_shape: Sequence[int], angles: torch.Tensor | Sequence[float] | int,
                 source_distance: float, detector_distance: float, n_detectors: int, detector_spacing: float,
                 pixel_size: float = 1.0, scan_range: float | str | None = None) -> None:
        name = type(self).__name__
        dso, dsd, du, n = float(source_distance), float(detector_distance), float(detector_spacing), int(n_detectors)
        if not (math.isfinite(dso) and dso > 0 and math.isfinite(dsd) and dsd > 0):
            raise ValueError(f"{name}: source_distance and detector_distance must be positive mm, "
                             f"got {source_distance!r} and {detector_distance!r}")
        if dsd < dso:
            raise ValueError(f"{name}: the source-to-detector distance {dsd:g} mm is shorter than the "
                             f"source-to-isocentre distance {dso:g} mm")
        if n < 1 or not (math.isfinite(du) and du > 0):
            raise ValueError(f"{name}: need n_detectors >= 1 and a positive detector_spacing")
        self.source_distance, self.detector_distance = dso, dsd
        self.fan_half_angle = self._half_angle(n, du, dsd)
        if not self.fan_half_angle < math.pi / 2:
            raise ValueError(f"{name}: the detector spans {2 * math.degrees(self.fan_half_angle):.0f} degrees of fan; "
                             "it must be narrower than 180")
        self.scan_range = self._resolve_range(scan_range)
        if isinstance(angles, numbers.Integral) and not isinstance(angles, bool) and self.short_scan and angles >= 1:
            betas = (torch.arange(int(angles), dtype=torch.float64) + 0.5) * (self.scan_range / int(angles))
        else:
            betas = _as_angles(angles, _TWO_PI)
        if self.short_scan and (betas.min() < -1e-9 or betas.max() > self.scan_range + 1e-9):
            raise ValueError(f"{name}: a short scan's angles must lie in [0, scan_range = {self.scan_range:.4f}] rad")
        super().__init__(image_shape, betas, n, pixel_size, du)
        if dso <= self.support_radius:
            raise ValueError(f"{name}: the source lies inside the field of view: source_distance {dso:g} mm must "
                             f"exceed the image half diagonal (plus a pixel), {self.support_radius:.1f} mm")
        inscribed = 0.5 * self.pixel_size * min(self.image_shape)
        if self.fov_radius < inscribed * (1 - 1e-9):
            warnings.warn(f"{name}: the fan covers a circle of radius {self.fov_radius:.1f} mm, smaller than the "
                          f"image's inscribed circle ({inscribed:.1f} mm): projections are truncated and "
                          "reconstructions are reliable only inside that circle", FanTruncationWarning, stacklevel=3)

    # ------------------------------------------------------------------ geometry
    @staticmethod
    def _half_angle(n: int, du: float, dsd: float) -> float:
        raise NotImplementedError

    def _resolve_range(self, scan_range: float | str | None) -> float:
        """``None``/``"full"``: 2 pi; ``"short"``: pi + 2 gamma_max; a number: checked to lie in that span."""
        minimal = math.pi + 2 * self.fan_half_angle
        if scan_range is None or scan_range == "full":
            return _TWO_PI
        if scan_range == "short":
            return minimal
        if isinstance(scan_range, str):
            raise ValueError(f"{type(self).__name__}: scan_range must be 'full', 'short' or radians, "
                             f"got {scan_range[:20]!r}")
        r = float(scan_range)
        if not (math.isfinite(r) and minimal * (1 - 1e-12) <= r <= _TWO_PI * (1 + 1e-12)):
            raise ValueError(f"{type(self).__name__}: scan_range {r!r} rad must lie between pi + fan angle "
                             f"({minimal:.4f}) and 2 pi")
        return min(max(r, minimal), _TWO_PI)

    @property
    def short_scan(self) -> bool:
        """True when the scan covers less than 2 pi (FBP then applies Parker's weights)."""
        return self.scan_range < _TWO_PI

    @property
    def fov_radius(self) -> float:
        """Radius (mm) of the circle about the isocentre that every view sees whole: ``D sin(gamma_max)``."""
        return self.source_distance * math.sin(self.fan_half_angle)

    @property
    def fan_angles(self) -> torch.Tensor:
        """Fan angle ``gamma_k`` (rad) of every bin, float64 ``(n_detectors,)``, on the operator's device."""
        return self._gammas(self.detector_positions.double())

    def _gammas(self, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def redundancy_weights(self) -> torch.Tensor:
        """The weight FBP gives each measured ray: 1/2 in a full scan (every line is measured twice), Parker's
        weight in a short scan (a ray and its conjugate sum to 1). Shapes: ``(n_angles, n_detectors)`` float64."""
        shape = (self.out_shape[0], self.n_detectors)
        if not self.short_scan:
            return torch.full(shape, 0.5, dtype=torch.float64, device=self.angles.device)
        delta = 0.5 * (self.scan_range - math.pi)
        return parker_weights(self.angles.double()[:, None], -self.fan_angles[None, :], delta)

    def _cutoff(self, iso_spacing: float) -> float:
        """The filter's band limit (cycles/sample): the pixel grid's Nyquist, ``iso_spacing / (2 pixel_size)``, when
        the detector samples the isocentre (every ``iso_spacing`` mm) more finely than the pixels; else 0.5."""
        if iso_spacing >= self.pixel_size * (1 - 1e-9):  # (rounding: the original CtScan fan samples at the pixel)
            return 0.5
        return 0.5 * iso_spacing / self.pixel_size

    def fov_mask(self) -> torch.Tensor:
        """Pixels whose centre lies in the scan field of view (within :attr:`fov_radius` of the isocentre), the
        ones every view sees. Shapes: ``(H, W)`` bool, on the operator's device."""
        xx, yy = self._pixel_coords(torch.float64)
        return (xx * xx + yy * yy <= self.fov_radius ** 2).reshape(self.image_shape)

    def _view_weights(self) -> torch.Tensor:
        if self.short_scan:
            return short_scan_angle_weights(self.angles, self.scan_range)
        return _angle_weights(self.angles, _TWO_PI)

    # ------------------------------------------------------------------ FBP
    def _fbp_filter(self, s: torch.Tensor, filter: str) -> torch.Tensor:
        """Pre-weight and ramp-filter the projections ``(B, A, D)``."""
        raise NotImplementedError

    def _fbp_read(self, pe: torch.Tensor, pr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fractional bin of pixels with ``p . e_beta = pe`` and ``p . r_beta = pr``, and the square of the distance
        their backprojected value is divided by."""
        raise NotImplementedError

    def fbp(self, sinogram: torch.Tensor, filter: str = "ramp") -> torch.Tensor:
        """Fan-beam filtered backprojection (approximate inverse, not the adjoint), full or short scan.

        ``f(p) = sum_i dbeta_i W(p, beta_i) Q_i(bin(p, beta_i))``: each projection is multiplied by the ray's
        redundancy weight (:meth:`redundancy_weights`) and the detector's cosine weight, convolved with the ramp
        kernel of the detector's sampling, then backprojected with the distance weight ``W`` (Kak & Slaney sec.
        3.4.1 curved, 3.4.2 flat). Angles are weighted by their share of the scan (``2 pi / n`` for a full scan
        of equispaced views). Two rules for clinical detectors, which sample the isocentre far more finely than a
        reconstruction grid's pixels: the ramp is band-limited to the pixel grid's Nyquist frequency when the
        detector is finer (``ramp_filter``'s ``cutoff``: else the unresolvable frequencies alias into streaks), and
        pixels outside the scan field of view (:meth:`fov_mask`), which some views miss, are set to 0 (air), as
        a scanner blanks them. Neither applies when the detector samples the isocentre at the pixel size or more
        coarsely and the fan covers the whole image (the original ``CtScan`` fan).

        Args:
            sinogram: line integrals ``(..., n_angles, n_detectors)``; returns ``(..., H, W)`` in image units.
            filter: ``"ramp"``, ``"shepp-logan"`` or ``"hann"`` (as the parallel-beam FBP).
        """
        s, lead = self._check_sino(sinogram)
        q = self._fbp_filter(s, filter)
        q = q * self._view_weights().to(q)[:, None]
        xx, yy = self._pixel_coords(q.dtype)
        out = q.new_zeros((q.shape[0], xx.numel()))
        for a0, a1 in self._chunks(q.shape[0], xx.numel()):
            c, sn = self._cos_sin(a0, a1, q.dtype)
            pos, dist2 = self._fbp_read(xx * c + yy * sn, -xx * sn + yy * c)
            out = out + (_interp_rows(q[:, a0:a1], pos) / dist2).sum(1)
        inside = self.fov_mask().reshape(-1)
        if not bool(inside.all()):  # outside the scan field of view some views miss the pixel: set it to 0 (air)
            out = out * inside.to(out.dtype)
        return out.reshape(*lead, *self.image_shape)

    # ------------------------------------------------------------------ serialisation
    def geometry(self) -> dict[str, Any]:
        d = super().geometry()
        d.update(source_distance=self.source_distance, detector_distance=self.detector_distance,
                 scan_range=self.scan_range)
        return d

    @classmethod
    def from_geometry(cls, d: dict[str, Any]) -> _FanBeam:
        """Rebuild from :meth:`geometry` output (a geometry without ``scan_range`` is a full scan)."""
        if d.get("type") != cls.geometry_type:
            raise ValueError(f"not a {cls.geometry_type} geometry: type={d.get('type')!r}")
        scan_range = d.get("scan_range")
        return cls(tuple(d["image_shape"]), torch.tensor(d["angles"], dtype=torch.float64),
                   float(d["source_distance"]), float(d["detector_distance"]), int(d["n_detectors"]),
                   float(d["detector_spacing"]), float(d["pixel_size"]),
                   scan_range=None if scan_range is None else float(scan_range))

    def extra_repr(self) -> str:
        scan = "short" if self.short_scan else "full"
        return (f"{super().extra_repr()}, source_distance={self.source_distance:g}, "
                f"detector_distance={self.detector_distance:g}, scan={scan}")


class FanBeamCT(_FanBeam):
    """2-D fan-beam CT projector with a flat, equispaced detector (exact adjoint) and FBP.

    Geometry in the module docstring: bin ``k`` at ``u_k = (k - (n-1)/2) * detector_spacing`` on the flat detector,
    fan angle ``atan(u_k / detector_distance)``.

    Args:
        image_shape: ``(H, W)``.
        angles: source angles in radians, or an int ``n``: ``n`` equispaced angles in ``[0, 2 pi)`` for a full scan,
            at ``(k + 1/2) scan_range / n`` for a short one.
        source_distance: source to isocentre (mm); must exceed the image's half diagonal (plus a pixel).
        detector_distance: source to detector (mm), at least ``source_distance``.
        n_detectors: number of detector bins.
        detector_spacing: bin pitch on the detector (mm).
        pixel_size: pixel size in mm.
        scan_range: ``None`` or ``"full"`` (2 pi), ``"short"`` (pi + the fan angle) or radians in between; a short
            scan's explicit angles must lie in ``[0, scan_range]``.

    Raises:
        ValueError: non-positive distances, a detector nearer than the isocentre, a source inside the field of view,
            a fan of 180 degrees or more, or a scan range outside ``[pi + fan angle, 2 pi]`` (one line each).

    Warns:
        FanTruncationWarning: the fan misses part of the image's inscribed circle (:attr:`fov_radius`).

    Shapes:
        ``(..., H, W)`` real images; ``forward`` gives ``(..., n_angles, n_detectors)`` sinograms, ``adjoint``
        and ``fbp`` take them back to ``(..., H, W)``.
    """

    geometry_type = "fan_flat"
    detector = "flat"

    @staticmethod
    def _half_angle(n: int, du: float, dsd: float) -> float:
        return math.atan(0.5 * n * du / dsd)

    def _gammas(self, u: torch.Tensor) -> torch.Tensor:
        return torch.atan(u / self.detector_distance)

    def _rays(self, a0, a1):
        # Source at -D r_beta; the ray to bin u runs along D_sd r_beta + u e_beta.
        c, s = self._cos_sin(a0, a1, torch.float64)
        u = self.detector_positions.double()[None, :]
        dso, dsd = self.source_distance, self.detector_distance
        return (dso * s).expand_as(u * c), (-dso * c).expand_as(u * c), -dsd * s + u * c, dsd * c + u * s

    def _fbp_filter(self, s: torch.Tensor, filter: str) -> torch.Tensor:
        # Kak & Slaney 3.4.2: detector rescaled to the isocentre (s = u D / D_sd), pre-weight D / sqrt(D^2 + s^2)
        # (the cosine of the fan angle), ramp kernel at spacing ds.
        dso = self.source_distance
        ds = self.detector_spacing * dso / self.detector_distance
        sv = self.detector_positions.to(s) * (dso / self.detector_distance)
        pre = (dso / torch.sqrt(dso ** 2 + sv ** 2))[None, :] * self.redundancy_weights().to(s)
        return _filter_rows(s * pre, ds, filter, cutoff=self._cutoff(ds))

    def _fbp_read(self, pe, pr):
        # s' = D (p . e) / (D + p . r), distance weight 1 / U^2 with U = (D + p . r) / D.
        dso = self.source_distance
        u_ = (dso + pr) / dso
        ds = self.detector_spacing * dso / self.detector_distance
        return (pe / u_) / ds + (self.n_detectors - 1) / 2, u_ ** 2


class FanBeamCurvedCT(_FanBeam):
    """2-D fan-beam CT projector with a curved, equiangular detector (third generation), exact adjoint and FBP.

    The detector is an arc of radius ``detector_distance`` centred on the source; bin ``k`` sits at arc length
    ``u_k = (k - (n-1)/2) * detector_spacing`` (mm, at the detector), fan angle ``u_k / detector_distance``: the
    angular pitch is ``detector_spacing / detector_distance``. Arguments, errors, warnings and shapes as
    :class:`FanBeamCT`.
    """

    geometry_type = "fan_curved"
    detector = "curved"

    @staticmethod
    def _half_angle(n: int, du: float, dsd: float) -> float:
        return 0.5 * n * du / dsd

    @property
    def angular_pitch(self) -> float:
        """Angle (rad) between neighbouring bins, seen from the source."""
        return self.detector_spacing / self.detector_distance

    def _gammas(self, u: torch.Tensor) -> torch.Tensor:
        return u / self.detector_distance

    def _rays(self, a0, a1):
        # Source at -D r_beta; the ray at fan angle gamma runs along cos(gamma) r_beta + sin(gamma) e_beta.
        c, s = self._cos_sin(a0, a1, torch.float64)
        g = self.fan_angles[None, :]
        cg, sg = torch.cos(g), torch.sin(g)
        dso = self.source_distance
        return (dso * s).expand_as(cg * c), (-dso * c).expand_as(cg * c), -cg * s + sg * c, cg * c + sg * s

    def _fbp_filter(self, s: torch.Tensor, filter: str) -> torch.Tensor:
        # Kak & Slaney 3.4.1: R'(gamma) = R(gamma) D cos(gamma), convolved with (gamma / sin gamma)^2 h(gamma) at the
        # angular pitch (their g without the 1/2, which the redundancy weight carries).
        pre = (self.source_distance * torch.cos(self.fan_angles))[None, :] * self.redundancy_weights()
        return _filter_rows(s * pre.to(s), self.angular_pitch, filter, equiangular=True,
                            cutoff=self._cutoff(self.source_distance * self.angular_pitch))

    def _fbp_read(self, pe, pr):
        # The ray through p: gamma' = atan2(p . e, D + p . r); distance weight 1 / L^2, L = |p - S|.
        along = self.source_distance + pr
        return torch.atan2(pe, along) / self.angular_pitch + (self.n_detectors - 1) / 2, along ** 2 + pe ** 2
