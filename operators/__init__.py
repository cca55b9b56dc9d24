"""medrecon's physics layer: linear forward operators for MRI and CT in pure PyTorch.

This package never imports ``medrecon``.
"""

from .base import Composition, Identity, LinearOperator, OperatorShapeError, RowWeighted, ScalarMultiply
from .coils import birdcage_maps, coil_support, espirit_maps, rss, sense_combine
from .ct import ParallelBeamCT, counts_to_line_integrals, hu_to_mu, mu_to_hu, transmission_counts, transmission_noise
from .ct_fan import FanBeamCT, FanBeamCurvedCT, FanTruncationWarning, parker_weights
from .fft import FFT2C, fft2c, ifft2c
from .masks import MASK_KINDS, cartesian_mask, poisson_disc_mask
from .mri import CoilExpand, MultiCoilMRI, Sample, SingleCoilMRI
from .nufft import NUFFT, NonCartesianMRI, ndft_matrix
from .trajectories import (
    TrajectoryError,
    check_trajectory,
    golden_radial,
    pipe_menon_dcf,
    radial,
    radial_dcf,
    spiral,
    to_radians,
)

__all__ = [
    "LinearOperator", "Composition", "Identity", "ScalarMultiply", "OperatorShapeError", "RowWeighted",
    "FFT2C", "fft2c", "ifft2c", "CoilExpand", "Sample", "MultiCoilMRI", "SingleCoilMRI",
    "ParallelBeamCT", "FanBeamCT", "FanBeamCurvedCT", "FanTruncationWarning", "parker_weights",
    "hu_to_mu", "mu_to_hu", "transmission_noise", "transmission_counts",
    "counts_to_line_integrals",
    "MASK_KINDS", "cartesian_mask", "poisson_disc_mask",
    "rss", "sense_combine", "birdcage_maps", "espirit_maps", "coil_support",
    "NUFFT", "NonCartesianMRI", "ndft_matrix",
    "TrajectoryError", "check_trajectory", "to_radians", "radial", "golden_radial", "spiral", "radial_dcf",
    "pipe_menon_dcf",
]
