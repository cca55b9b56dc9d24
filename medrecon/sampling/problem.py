"""An inverse problem as the samplers see it: measurements, operator, and the map to network space.

The operator ``A`` acts on the *physical* variable ``p`` (a complex MRI image, or linear
attenuation ``mu`` for CT). The prior lives in network space ``x`` (real, ``(B, channels, H, W)``).
The two are related by the affine bijection ``p = offset + gain * x`` (complex packing for MRI), so
residuals can be measured in network units, which makes DPS's step size dimensionless, and the
prior's Gaussian width in network units converts to physical units exactly (DESIGN.md section 4).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from operators.base import LinearOperator

__all__ = ["InverseProblem", "batched_dot"]


@dataclass
class InverseProblem:
    """Measurements ``y = A p + n``, with ``p = offset + gain * x``.

    Attributes:
        A: the physical forward operator, ``(..., *in_shape) -> (..., *out_shape)``.
        y: measurements ``(B, *A.out_shape)``.
        gain: ``(B, 1, 1)`` real, physical units per network unit.
        offset: ``(B, 1, 1)`` real (0 for MRI; the HU-window centre as attenuation for CT).
        noise_var: ``(B,)`` measurement-noise variance per sample ``E|n|^2`` (0 if noiseless).
        is_complex: MRI (2 network channels, complex ``p``) or CT (1 channel, real ``p``).
    """

    A: LinearOperator
    y: torch.Tensor
    gain: torch.Tensor
    offset: torch.Tensor
    noise_var: torch.Tensor
    is_complex: bool

    @property
    def channels(self) -> int:
        return 2 if self.is_complex else 1

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.A.in_shape[-2:])

    @property
    def batch(self) -> int:
        return int(self.y.shape[0])

    def to_phys(self, x: torch.Tensor) -> torch.Tensor:
        """Network ``(B, ch, H, W)`` -> physical ``(B, H, W)``."""
        z = torch.complex(x[:, 0].float(), x[:, 1].float()) if self.is_complex else x[:, 0].float()
        return self.offset + self.gain * z

    def to_net(self, p: torch.Tensor) -> torch.Tensor:
        """Physical ``(B, H, W)`` -> network ``(B, ch, H, W)``."""
        z = (p - self.offset) / self.gain
        return torch.stack([z.real, z.imag], dim=1) if self.is_complex else z[:, None]

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """``y - A(to_phys(x))``, shape ``(B, *A.out_shape)``."""
        return self.y - self.A(self.to_phys(x))

    def repeat(self, k: int) -> "InverseProblem":
        """Each slice repeated ``k`` times along dim 0, slice-major (posterior samples of one slice adjacent)."""
        r = lambda t: t.repeat_interleave(k, dim=0)  # noqa: E731
        return replace(self, A=self.A.batch_repeat(k), y=r(self.y), gain=r(self.gain), offset=r(self.offset),
                       noise_var=r(self.noise_var))

    def select(self, idx: slice) -> "InverseProblem":
        """A sub-batch of rows."""
        return replace(self, A=self.A.batch_select(idx), y=self.y[idx], gain=self.gain[idx], offset=self.offset[idx],
                       noise_var=self.noise_var[idx])


def batched_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Real part of ``<a, b>`` per leading batch element: ``(B, ...) -> (B,)``."""
    prod = a.conj() * b if a.is_complex() else a * b
    return prod.reshape(a.shape[0], -1).sum(dim=1).real
