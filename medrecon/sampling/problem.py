"""An inverse problem as the samplers see it: measurements, operator, and the map to network space.

The operator ``A`` acts on the *physical* variable ``p`` (a complex MRI image, or linear
attenuation ``mu`` for CT). The prior lives in network space ``x`` (real, ``(B, channels, H, W)``).
The two are related by the affine bijection ``p = offset + gain * x`` (complex packing for MRI), so
residuals can be measured in network units, which makes DPS's step size dimensionless, and the
prior's Gaussian width in network units converts to physical units exactly (docs/design.md, section 4).

An optional ``support`` says where the measurement sees the image at all (MRI: where the coil maps
do not vanish, :func:`operators.coils.coil_support`). Outside it the data term is flat, so a sampler
would keep whatever the prior guesses there (measured: the fast sampler's invented background, see
docs/robustness.md). :meth:`InverseProblem.constrain` makes the image physically empty there
(``p = 0``: no MR signal, no attenuation), which every sampler applies to its clean-image estimates.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import torch

from operators.base import LinearOperator

from .zcouple import ZCoupling

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
        support: ``(B, H, W)`` bool, where the measurement has sensitivity; None: everywhere.
        zcouple: the rows are the contiguous slices of a volume, coupled by TV along z
            (:class:`~.zcouple.ZCoupling`, volume mode); None: every row alone.
        linearize: a likelihood that is not Gaussian, as the weighted least squares that matches it at an estimate:
            ``linearize(p) -> (A', y', noise_var)`` (CT's pre-log Poisson likelihood,
            :class:`medrecon.recon.problems.PoissonLinearization`); None: ``(A, y, noise_var)`` hold at every step.
            The samplers with a CG data step re-expand it at every step (:meth:`linearized`).
    """

    A: LinearOperator
    y: torch.Tensor
    gain: torch.Tensor
    offset: torch.Tensor
    noise_var: torch.Tensor
    is_complex: bool
    support: Optional[torch.Tensor] = None
    zcouple: Optional[ZCoupling] = None
    linearize: Optional[object] = None

    def linearized(self, p: torch.Tensor) -> "InverseProblem":
        """The problem whose data term is the likelihood's quadratic expansion at the physical images ``p``
        ``(B, H, W)``; ``self`` when the likelihood is Gaussian (no ``linearize``)."""
        if self.linearize is None:
            return self
        A, y, noise_var = self.linearize(p)
        return replace(self, A=A, y=y, noise_var=noise_var, linearize=None)

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

    def constrain(self, x: torch.Tensor) -> torch.Tensor:
        """Network-space ``x`` ``(B, ch, H, W)`` with every pixel outside the support set to ``p = 0``.

        Differentiable (DPS backpropagates through it); the identity when ``support`` is None.
        """
        if self.support is None:
            return x
        zero = torch.zeros_like(self.offset, dtype=torch.complex64 if self.is_complex else self.offset.dtype)
        empty = self.to_net(zero).to(device=x.device, dtype=x.dtype)  # (B, ch, 1, 1): network value of p = 0
        keep = self.support[:, None].to(x.device)
        return torch.where(keep, x, empty)

    def couple(self, x: torch.Tensor, r: torch.Tensor | float, joint_dc: bool = False) -> torch.Tensor:
        """Clean-image estimates ``x`` ``(B, ch, H, W)`` (network space) coupled across the volume's slices, with
        ``r`` the estimates' error std in network units (:class:`~.zcouple.ZCoupling`); the identity for
        slice-by-slice problems. Every sampler applies it where it applies :meth:`constrain`.

        ``joint_dc``: the caller's data step is :meth:`dc_solve`; with a joint coupling (``solve="admm"``) the
        slices are coupled there instead, and this is the identity."""
        if self.zcouple is None or (joint_dc and self.zcouple.joint):
            return x
        return self.constrain(self.zcouple(x, r))

    def dc_solve(self, A: LinearOperator, rhs: torch.Tensor, lam: torch.Tensor, p0: torch.Tensor, cg_iters: int,
                 r: torch.Tensor | float, state: Optional[dict] = None) -> torch.Tensor:
        """The samplers' data-consistency solve ``(A^H A + lam I) p = rhs`` from ``p0`` (``cg_iters`` CG steps),
        jointly with TV along z when the volume's coupling is joint (:meth:`.zcouple.ZCoupling.dc_solve`).

        Shapes: rhs, p0 ``(B, H, W)`` physical; lam ``(B,)``; ``r`` the estimate's error std (network units).
        ``A`` is this step's operator (``self.A``, or a linearized likelihood's). ``state``: a dict the sampler
        keeps for the whole chain (the ADMM variables of ``solve="admm-carry"``)."""
        if self.zcouple is not None and self.zcouple.joint:
            return self.zcouple.dc_solve(A, rhs, lam, p0, cg_iters, r, self.gain.to(p0.device), state)
        from .cg import cg_normal  # cg imports this module (batched_dot)

        return cg_normal(A, rhs, lam, p0, cg_iters)

    def support_fraction(self) -> Optional[float]:
        """Fraction of pixels inside the support (None without one), for run records."""
        return None if self.support is None else float(self.support.float().mean())

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """``y - A(to_phys(x))``, shape ``(B, *A.out_shape)``."""
        return self.y - self.A(self.to_phys(x))

    def repeat(self, k: int) -> "InverseProblem":
        """Each slice repeated ``k`` times along dim 0, slice-major (posterior samples of one slice adjacent)."""
        r = lambda t: t.repeat_interleave(k, dim=0)  # noqa: E731
        return replace(self, A=self.A.batch_repeat(k), y=r(self.y), gain=r(self.gain), offset=r(self.offset),
                       noise_var=r(self.noise_var), support=None if self.support is None else r(self.support),
                       zcouple=None if self.zcouple is None else self.zcouple.with_k(k),
                       linearize=None if self.linearize is None else self.linearize.repeat(k))

    def select(self, idx: slice) -> "InverseProblem":
        """A sub-batch of rows."""
        return replace(self, A=self.A.batch_select(idx), y=self.y[idx], gain=self.gain[idx], offset=self.offset[idx],
                       noise_var=self.noise_var[idx], support=None if self.support is None else self.support[idx],
                       linearize=None if self.linearize is None else self.linearize.select(idx))


def batched_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Real part of ``<a, b>`` per leading batch element: ``(B, ...) -> (B,)``."""
    prod = a.conj() * b if a.is_complex() else a * b
    return prod.reshape(a.shape[0], -1).sum(dim=1).real
