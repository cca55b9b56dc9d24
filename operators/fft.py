"""Centered orthonormal 2-D FFT, exactly fastMRI's ``fft2c`` / ``ifft2c`` convention.

``fft2c(x) = fftshift(fft2(ifftshift(x), norm="ortho"))`` over the last two axes, so the DC
sample sits at index ``(H // 2, W // 2)`` and Parseval holds (the transform is unitary).
"""

from __future__ import annotations

from typing import Sequence

import torch

from .base import LinearOperator

__all__ = ["fft2c", "ifft2c", "FFT2C"]

_DIMS = (-2, -1)


def _centered(transform, x: torch.Tensor) -> torch.Tensor:
    """``fftshift(transform(ifftshift(x)))`` over the last two axes, orthonormal: the centre of the array is the
    origin in both domains."""
    return torch.fft.fftshift(transform(torch.fft.ifftshift(x, dim=_DIMS), dim=_DIMS, norm="ortho"), dim=_DIMS)


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centered, orthonormal 2-D FFT over the last two axes.

    Shapes:
        x: ``(..., H, W)`` complex -> ``(..., H, W)`` complex.
    """
    return _centered(torch.fft.fft2, x)


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Centered, orthonormal inverse 2-D FFT over the last two axes (the adjoint of :func:`fft2c`).

    Shapes:
        k: ``(..., H, W)`` complex -> ``(..., H, W)`` complex.
    """
    return _centered(torch.fft.ifft2, k)


class FFT2C(LinearOperator):
    """Unitary centered 2-D Fourier transform as an operator on ``(..., H, W)`` complex images."""

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__(shape, shape, True, True)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return fft2c(x)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return ifft2c(y)

    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        return x
