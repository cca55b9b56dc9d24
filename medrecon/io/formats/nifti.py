"""NIfTI-1/2 images (``.nii``, ``.nii.gz``, ``.hdr``/``.img`` pairs), by magic, plain or gzip-compressed.

Duties: ``dim`` x ``bitpix`` from the header bound the data before it is read, and the gzip stream is read
only up to that size (:mod:`medrecon.io.volumes`); parsed in the sandbox; NIfTI holds no identifying
fields (``descrip``/``aux_file`` are not read).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from . import register
from .base import FormatSpec, Output, Probe, Sample

__all__ = ["SPEC", "tiny_nifti"]


def _magic(head: bytes) -> bool:
    # NIfTI-1: magic "n+1\0"/"ni1\0" at byte 344; NIfTI-2: "n+2\0"/"ni2\0" at byte 4.
    return head[344:348] in (b"n+1\0", b"ni1\0") or head[4:8] in (b"n+2\0", b"ni2\0")


def sniff(p: Probe) -> bool:
    return p.is_file and (_magic(p.head()) or (p.head(2) == b"\x1f\x8b" and _magic(p.gunzip_head())))


def read_image(path: Path, modality: Optional[str] = None):
    from medrecon.io.volumes import load_nifti

    return load_nifti(path, modality)


def tiny_nifti(path, shape: tuple[int, int, int] = (16, 16, 2)) -> Path:
    """A float32 NIfTI-1 volume (``.nii`` or ``.nii.gz`` from the name)."""
    import nibabel as nib

    data = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) % 97
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), str(path))
    return Path(path)


def write(out: Path, o: Output) -> list[Path]:
    """The image (and ``<stem>_std.nii.gz``) with the input's affine; identity and no space when it has none."""
    from medrecon.io.nifti_writer import write_nifti

    aff = o.affine if o.affine is not None else np.eye(4)
    space = o.space if o.affine is not None else None
    written = [write_nifti(out, o.image, aff, space)]
    if o.std is not None:
        stem = out.name[:-7] if out.name.endswith(".nii.gz") else out.stem
        written.append(write_nifti(out.with_name(stem + "_std.nii.gz"), o.std, aff, space))
    return written


SPEC = register(FormatSpec(
    "nifti", sniff, order=50, read_image=read_image,
    samples={"nifti": Sample(tiny_nifti, "x.nii"), "nifti-gz": Sample(tiny_nifti, "x.nii.gz")},
    output="nifti", write=write, out_names=(".nii", ".nii.gz"), out_suffix=".nii.gz",
    duties="dim x bitpix bound the data (and the gzip read) before reading; sandboxed parse; no identifying "
           "fields read"))
