"""medrecon's physics layer: linear forward operators for MRI and CT in pure PyTorch.

This package never imports ``medrecon``.
"""

from .base import Composition, Identity, LinearOperator, OperatorShapeError, ScalarMultiply
from .fft import FFT2C, fft2c, ifft2c
from .mri import CoilExpand, MultiCoilMRI, Sample, SingleCoilMRI

__all__ = [
    "LinearOperator", "Composition", "Identity", "ScalarMultiply", "OperatorShapeError",
    "FFT2C", "fft2c", "ifft2c", "CoilExpand", "Sample", "MultiCoilMRI", "SingleCoilMRI",
]
