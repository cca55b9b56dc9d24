"""What a method's ``run`` function receives: the measurement, its operator, and what it takes to build them.

A classical method reads only what it needs; the coil maps (ESPIRiT, about a second per slice) and the
operator are made on first use, so ``zero-filled`` never estimates maps. Learned methods get the same
object's :meth:`MriData.problem` / :meth:`CtData.problem`, the one place the inverse problem is set up for
every sampler (docs/design.md, section 6).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from .problems import coil_maps_for, ct_problem, ct_system, mri_problem, noncart_problem

__all__ = ["MriData", "NonCartesianData", "CtData"]


@dataclass
class MriData:
    """Multi-coil Cartesian k-space, ready for any method.

    Shapes:
        kspace: ``(S, C, H, W)`` complex64, already masked.
        mask: ``(H, W)`` bool, the sampling pattern of the operator.
        calib_mask: the mask as the file or options gave it, ``(W,)`` columns or ``(H, W)``: it sizes the
            ESPIRiT calibration block (a column mask allows a taller block, :func:`~.problems.calib_size`).
        given_maps: ``(S, C, H, W)`` complex64 coil maps from the file or simulation, or None (ESPIRiT).
        noise_var: ``(S,)`` k-space noise variance per sample, or None (estimated where needed).
        progress: iterative methods show a progress bar (``recon`` without ``--quiet``).
    """

    kspace: torch.Tensor
    mask: torch.Tensor
    calib_mask: torch.Tensor
    given_maps: Optional[torch.Tensor] = None
    noise_var: Optional[torch.Tensor] = None
    progress: bool = False
    z_weight: float = 0.0  # volume mode: TV along the slices, relative to the method's in-plane weight (cs-tv)
    _maps: Optional[torch.Tensor] = field(default=None, init=False, repr=False)
    _A: Any = field(default=None, init=False, repr=False)

    @property
    def maps(self) -> torch.Tensor:
        """Coil maps ``(S, C, H, W)``: the given ones, else ESPIRiT (:func:`~.problems.coil_maps_for`)."""
        if self._maps is None:
            self._maps = self.given_maps if self.given_maps is not None else coil_maps_for(self.kspace, self.calib_mask)
        return self._maps

    @property
    def A(self):
        """The SENSE operator ``M F S`` on images ``(S, H, W)``."""
        if self._A is None:
            from operators import MultiCoilMRI

            self._A = MultiCoilMRI(self.maps, self.mask)
        return self._A

    def problem(self, prior, support: bool = True):
        """The sampler's :class:`~medrecon.sampling.InverseProblem` (see :func:`~.problems.mri_problem`)."""
        prob, _ = mri_problem(prior, self.kspace, self.mask, maps=self.maps, noise_var=self.noise_var,
                              support=support)
        return prob

    def zero_filled(self) -> torch.Tensor:
        """Root-sum-of-squares of the zero-filled coil images ``(S, H, W)``."""
        from operators import rss
        from operators.fft import ifft2c

        return rss(ifft2c(self.kspace))


@dataclass
class NonCartesianData:
    """Multi-coil non-Cartesian (radial, spiral) k-space, ready for any method: the same interface as
    :class:`MriData`, so the classical methods and the samplers need no second code path (issue 20).

    Shapes:
        kspace: ``(S, C, M)`` complex64 samples in the trajectory's order.
        trajectory: ``(M, 2)`` float32, radians per pixel (docs/noncartesian.md).
        shape: the image matrix ``(H, W)``.
        dcf: ``(M,)`` density compensation (the file's, else Pipe-Menon), for gridding and the scale.
        given_maps: ``(S, C, H, W)`` coil maps, or None (ESPIRiT on the gridded k-space centre).
        noise_var: ``(S,)`` noise variance per sample, or None (estimated from the outermost samples).
    """

    kspace: torch.Tensor
    trajectory: torch.Tensor
    shape: tuple
    dcf: torch.Tensor
    given_maps: Optional[torch.Tensor] = None
    noise_var: Optional[torch.Tensor] = None
    progress: bool = False
    z_weight: float = 0.0
    _maps: Optional[torch.Tensor] = field(default=None, init=False, repr=False)
    _A: Any = field(default=None, init=False, repr=False)

    def _operator(self, maps: torch.Tensor):
        from operators.nufft import NonCartesianMRI

        return NonCartesianMRI(maps, self.trajectory, dcf=self.dcf)

    @property
    def maps(self) -> torch.Tensor:
        """Coil maps ``(S, C, H, W)``: the given ones, else ESPIRiT on the gridded centre
        (:func:`medrecon.acquisition.noncart.noncart_coil_maps`)."""
        if self._maps is None:
            if self.given_maps is not None:
                self._maps = self.given_maps
            else:
                from medrecon.acquisition.noncart import noncart_coil_maps

                c = self.kspace.shape[-2]
                ones = torch.ones((c, *self.shape), dtype=self.kspace.dtype, device=self.kspace.device)
                self._maps = noncart_coil_maps(self._operator(ones), self.kspace)
        return self._maps

    @property
    def A(self):
        """The non-Cartesian SENSE operator on images ``(S, H, W)`` (:class:`operators.nufft.NonCartesianMRI`)."""
        if self._A is None:
            self._A = self._operator(self.maps)
        return self._A

    def problem(self, prior, support: bool = True):
        """The sampler's inverse problem (see :func:`~.problems.noncart_problem`)."""
        return noncart_problem(prior, self.A, self.kspace, noise_var=self.noise_var, support=support)

    def zero_filled(self) -> torch.Tensor:
        """Gridding: root-sum-of-squares of the density-compensated adjoint per coil ``(S, H, W)``, the
        non-Cartesian counterpart of zero filling (no coil maps needed)."""
        from operators import rss

        c = self.kspace.shape[-2]
        ones = torch.ones((c, *self.shape), dtype=self.kspace.dtype, device=self.kspace.device)
        return rss(self._operator(ones).gridding(self.kspace))


@dataclass
class CtData:
    """Line integrals and their projector.

    Shapes:
        sinogram: ``(S, views, detectors)`` float32.
    """

    sinogram: torch.Tensor
    A: Any
    mu_water: float = 0.019
    photons: float = 0.0
    progress: bool = False  # iterative methods show a progress bar
    data_term: str = "ls"  # "ls" or "pwls" (medrecon.recon.problems.ct_system)
    z_weight: float = 0.0  # volume mode: TV along the slices, relative to the in-plane TV weight (tv)

    def problem(self, prior, support: bool = True):
        """The sampler's inverse problem (see :func:`~.problems.ct_problem`); CT has no support rule."""
        return ct_problem(prior, self.A, self.sinogram, mu_water=self.mu_water, photons=self.photons or None,
                          data_term=self.data_term)

    def system(self) -> tuple:
        """``(A', y')`` of the data term for the iterative classical methods: ``(A, y)``, or the weighted pair
        of PWLS (:func:`~.problems.ct_system`)."""
        A, y, _ = ct_system(self.A, self.sinogram, self.photons or None, self.data_term)
        return A, y
