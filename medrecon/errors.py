"""The one error type users see.

Library code raises :class:`MedreconError` (or a subclass) for anything caused by the user's
input or environment; the CLI prints it as a single ``medrecon: error: ...`` line and exits
non-zero. Messages say what is wrong and what to do, and never contain patient identifiers.
"""

from __future__ import annotations

__all__ = ["MedreconError", "InputError", "PriorError", "DeviceError", "SamplerDivergedError"]


class MedreconError(Exception):
    """A user-facing failure with a one-line message."""


class InputError(MedreconError):
    """An input file or argument is missing, unreadable or inconsistent."""


class PriorError(MedreconError):
    """A prior bundle is missing, tampered with, or of the wrong modality."""


class DeviceError(MedreconError):
    """The requested device is not available."""


class SamplerDivergedError(MedreconError):
    """A sampler produced NaN/Inf or an exploding residual."""
