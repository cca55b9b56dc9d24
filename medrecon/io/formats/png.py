"""PNG figures of a reconstruction (output only: medrecon never reads PNG).

Duties: written atomically; the figure's title holds the method only, never a file name or header field.
"""

from __future__ import annotations

from pathlib import Path

from . import register
from .base import FormatSpec, Output, Probe

__all__ = ["SPEC"]


def _never(p: Probe) -> bool:
    return False


def write(out: Path, o: Output) -> list[Path]:
    """One figure: the slices (and the std map) side by side."""
    from medrecon.io.png import write_png

    return [write_png(out, o.image, o.std, o.modality, f"medrecon {o.method}")]


SPEC = register(FormatSpec(
    "png", _never, order=1000, output="png", write=write, out_names=(".png",), out_suffix=".png",
    duties="output only, written atomically; the title names the method, never the input"))
