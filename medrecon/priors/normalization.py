"""Normalization rules between physical images and a prior's network space (docs/design.md, section 3).

A rule is stored in the prior's metadata as a plain dict and rebuilt with :func:`rule_from_dict`,
so the sampler never hard-codes a scaling:

* MRI (``"complex-percentile"``): complex image divided by the ``percentile``-th percentile of its
  magnitude (per slice), packed as two real channels (real, imaginary).
* CT (``"hu-window"``): Hounsfield units mapped linearly so ``[low, high]`` -> ``[-1, 1]``; one channel.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Union

import torch

__all__ = ["ComplexPercentile", "HUWindow", "NormalizationRule", "rule_from_dict", "pack_complex", "unpack_complex"]


def pack_complex(x: torch.Tensor) -> torch.Tensor:
    """Complex ``(..., H, W)`` -> real ``(..., 2, H, W)`` (real, imaginary) for the network."""
    return torch.stack([x.real, x.imag], dim=-3)


def unpack_complex(x: torch.Tensor) -> torch.Tensor:
    """Real ``(..., 2, H, W)`` -> complex ``(..., H, W)``."""
    return torch.complex(x[..., 0, :, :].float(), x[..., 1, :, :].float())


@dataclass(frozen=True)
class ComplexPercentile:
    """Divide a complex image by a robust magnitude percentile (per slice)."""

    percentile: float = 99.0
    kind: str = "complex-percentile"

    channels = 2

    def scale_of(self, image: torch.Tensor) -> torch.Tensor:
        """Per-slice scale: the ``percentile`` of ``|image|``. Shapes: ``(..., H, W)`` -> ``(..., 1, 1)``."""
        mag = image.abs().flatten(-2).float()
        q = torch.quantile(mag, self.percentile / 100.0, dim=-1)
        return q.clamp_min(torch.finfo(torch.float32).tiny)[..., None, None]

    def to_network(self, image: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Complex ``(..., H, W)`` -> network tensor ``(..., 2, H, W)``."""
        return pack_complex(image / scale)

    def from_network(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Network tensor ``(..., 2, H, W)`` -> complex image ``(..., H, W)``."""
        return unpack_complex(x) * scale

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class HUWindow:
    """Map Hounsfield units ``[low, high]`` linearly to ``[-1, 1]`` (no clipping)."""

    low: float = -1000.0
    high: float = 2000.0
    kind: str = "hu-window"

    channels = 1

    @property
    def center(self) -> float:
        return 0.5 * (self.low + self.high)

    @property
    def half_width(self) -> float:
        return 0.5 * (self.high - self.low)

    def scale_of(self, image: torch.Tensor) -> torch.Tensor:
        """The window is fixed; returns ones ``(..., 1, 1)`` for a uniform interface."""
        return torch.ones(image.shape[:-2] + (1, 1), dtype=torch.float32, device=image.device)

    def to_network(self, image: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """HU ``(..., H, W)`` -> ``(..., 1, H, W)``."""
        return ((image - self.center) / self.half_width).unsqueeze(-3)

    def from_network(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """``(..., 1, H, W)`` -> HU ``(..., H, W)``."""
        return x[..., 0, :, :].float() * self.half_width + self.center

    def to_dict(self) -> dict:
        return asdict(self)


NormalizationRule = Union[ComplexPercentile, HUWindow]


def rule_from_dict(d: dict) -> NormalizationRule:
    """Rebuild a rule from its metadata dict (data only, never evaluated)."""
    kind = d.get("kind")
    if kind == "complex-percentile":
        return ComplexPercentile(percentile=float(d.get("percentile", 99.0)))
    if kind == "hu-window":
        return HUWindow(low=float(d["low"]), high=float(d["high"]))
    raise ValueError(f"unknown normalization rule {kind!r}")
