"""MRI forward models: coil sensitivities, Cartesian sampling, single- and multi-coil SENSE.

The multi-coil model (Pruessmann et al., 1999) maps an image ``x`` to k-space
``y_c = M * F(S_c * x)`` with ``S_c`` the coil maps, ``F`` the centered unitary FFT and ``M`` a
binary sampling mask. Following SigPy, it is built by composition:
``MultiCoilMRI = Sample(mask) @ FFT2C @ CoilExpand(maps)``.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .base import Composition, LinearOperator, OperatorShapeError
from .fft import FFT2C

__all__ = ["CoilExpand", "Sample", "MultiCoilMRI", "SingleCoilMRI", "as_mask_2d"]


def as_mask_2d(mask: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Broadcast a sampling mask to an ``(H, W)`` float tensor.

    A 1-D mask of length ``W`` is a column (phase-encode) mask, as in fastMRI.

    Shapes:
        mask: ``(W,)``, ``(1, W)``, ``(H, 1)`` or ``(H, W)``; bool or real.
        returns: ``(H, W)`` float32 with values in {0, 1} (or weights).
    """
    h, w = int(shape[0]), int(shape[1])
    mask = torch.as_tensor(mask)
    if mask.dim() == 1:
        if mask.shape[0] != w:
            raise OperatorShapeError(f"column mask has {mask.shape[0]} entries but k-space has {w} columns")
        mask = mask[None, :]
    if mask.dim() != 2:
        raise OperatorShapeError(f"mask must be 1-D (W,) or 2-D (H, W), got shape {tuple(mask.shape)}")
    try:
        mask = torch.broadcast_to(mask, (h, w))
    except RuntimeError as exc:
        raise OperatorShapeError(f"mask of shape {tuple(mask.shape)} does not broadcast to ({h}, {w})") from exc
    if mask.is_complex():
        raise OperatorShapeError("mask must be real or boolean")
    return mask.to(torch.float32).contiguous()


class CoilExpand(LinearOperator):
    """Multiply an image by each coil map: ``(..., H, W) -> (..., C, H, W)``.

    Args:
        coil_maps: complex ``(C, H, W)`` sensitivities, or ``(B, C, H, W)`` with one set per slice; the
            leading dims then broadcast against the image's batch dims.
    """

    def __init__(self, coil_maps: torch.Tensor) -> None:
        if coil_maps.dim() < 3 or not coil_maps.is_complex():
            raise OperatorShapeError(f"coil_maps must be complex (..., C, H, W), got {tuple(coil_maps.shape)} {coil_maps.dtype}")
        c, h, w = coil_maps.shape[-3:]
        super().__init__((h, w), (c, h, w), True, True)
        self.register_buffer("coil_maps", coil_maps)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(-3) * self.coil_maps

    def batch_repeat(self, k: int) -> "CoilExpand":
        if self.coil_maps.dim() == 3 or k == 1:
            return self
        return CoilExpand(self.coil_maps.repeat_interleave(k, dim=0))

    def batch_select(self, idx: slice) -> "CoilExpand":
        return self if self.coil_maps.dim() == 3 else CoilExpand(self.coil_maps[idx])

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return (y * self.coil_maps.conj()).sum(dim=-3)

    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        return x * (self.coil_maps.abs() ** 2).sum(dim=-3)


class Sample(LinearOperator):
    """Cartesian sampling: multiply k-space by a binary mask (self-adjoint, idempotent).

    The mask is applied as ``k * mask + 0.0`` (fastMRI's idiom, avoiding ``-0.0``).

    Args:
        mask: broadcastable to ``(H, W)``; see :func:`as_mask_2d`.
        shape: ``(H, W)`` of the k-space.
        n_coils: if given, the operator acts on ``(..., C, H, W)``; else on ``(..., H, W)``.
    """

    def __init__(self, mask: torch.Tensor, shape: Sequence[int], n_coils: int | None = None) -> None:
        shape = tuple(int(s) for s in shape)
        full = (n_coils, *shape) if n_coils is not None else shape
        super().__init__(full, full, True, True)
        self.register_buffer("mask", as_mask_2d(mask, shape))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask + 0.0

    _adjoint = _forward
    _normal = _forward


class _MaskedFourier(Composition):
    """What the Cartesian MRI operators share: their class name, and ``A^H A`` applied as ``A^H (A x)`` (the
    mask is idempotent, ``M^H M = M``, so nothing cheaper is needed)."""

    @property
    def name(self) -> str:
        return type(self).__name__

    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        return self._adjoint(self._forward(x))


class MultiCoilMRI(_MaskedFourier):
    """Multi-coil Cartesian MRI: ``y = mask * fft2c(coil_maps * x)``.

    Args:
        coil_maps: complex ``(C, H, W)``, or ``(B, C, H, W)`` per-slice maps (see :class:`CoilExpand`).
        mask: broadcastable to ``(H, W)`` (a ``(W,)`` column mask works).

    Shapes:
        forward: ``(..., H, W)`` complex -> ``(..., C, H, W)`` complex.
        adjoint: ``(..., C, H, W)`` -> ``(..., H, W)``.
    """

    def __init__(self, coil_maps: torch.Tensor, mask: torch.Tensor) -> None:
        expand = CoilExpand(coil_maps)
        c, h, w = coil_maps.shape[-3:]
        sample = Sample(mask.to(coil_maps.device) if isinstance(mask, torch.Tensor) else mask, (h, w), n_coils=c)
        super().__init__(Composition(sample, FFT2C((c, h, w))), expand)


    @property
    def coil_maps(self) -> torch.Tensor:
        return self.inner.coil_maps

    def batch_repeat(self, k: int) -> "MultiCoilMRI":
        if self.coil_maps.dim() == 3 or k == 1:
            return self
        return MultiCoilMRI(self.coil_maps.repeat_interleave(k, dim=0), self.mask)

    def batch_select(self, idx: slice) -> "MultiCoilMRI":
        return self if self.coil_maps.dim() == 3 else MultiCoilMRI(self.coil_maps[idx], self.mask)

    @property
    def mask(self) -> torch.Tensor:
        return self.outer.outer.mask



class SingleCoilMRI(_MaskedFourier):
    """Single-coil Cartesian MRI: ``y = mask * fft2c(x)`` on ``(..., H, W)`` complex images.

    Args:
        mask: broadcastable to ``(H, W)``.
        shape: ``(H, W)``.
    """

    def __init__(self, mask: torch.Tensor, shape: Sequence[int]) -> None:
        shape = tuple(int(s) for s in shape)
        super().__init__(Sample(mask, shape), FFT2C(shape))

    @property
    def mask(self) -> torch.Tensor:
        return self.outer.mask
