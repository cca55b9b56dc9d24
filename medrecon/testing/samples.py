"""Tiny valid files of every format medrecon reads: seeds for the hostile-input tests and the fuzzer.

Each writer makes a small (a few KiB), fully valid file that the matching reader accepts, so that a
fuzzer can truncate or mutate it and check that the reader either still succeeds or fails with
:class:`~medrecon.errors.MedreconError`. Files can carry planted patient identifiers
(:data:`PLANTED`) to test that no identifier leaks into logs, errors or run records.

Every function takes the output path and returns the path the reader should be given.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = [
    "PLANTED",
    "SEEDS",
    "tiny_bart",
    "tiny_dicom",
    "tiny_fastmri",
    "tiny_ismrmrd",
    "tiny_kspace",
    "tiny_nifti",
    "tiny_npy",
    "tiny_npz",
    "tiny_nrrd",
    "tiny_sinogram",
]

#: Identifiers planted in test files; none of these strings may appear in any output but DICOM files.
PLANTED = {
    "name": "Zyxwvut^Qponmlk",
    "id": "PID-73519-XQ",
    "birth": "19230417",
    "accession": "ACC-88412-ZZ",
}


def tiny_kspace(slices: int = 1, coils: int = 2, h: int = 16, w: int = 16, seed: int = 0) -> tuple:
    """``(kspace, mask, target)``: centred k-space of a smooth disc seen by ``coils`` smooth coils.

    The mask keeps the 8 central columns and every second other column (enough for ESPIRiT and SENSE).
    """
    import torch

    from operators.fft import fft2c

    g = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    img = ((xx**2 + yy**2) < 0.5).astype(np.float32) * (1.0 + 0.1 * g.standard_normal((h, w)).astype(np.float32))
    phases = [np.exp(1j * (k * xx + (k % 2) * yy)) * (1.2 + np.cos(xx + k) * 0.2) for k in range(coils)]
    coil_imgs = np.stack([img * p for p in phases]).astype(np.complex64)
    k = fft2c(torch.from_numpy(np.broadcast_to(coil_imgs, (slices, coils, h, w)).copy())).numpy()
    mask = np.zeros(w, bool)
    mask[::2] = True
    mask[w // 2 - 4 : w // 2 + 4] = True
    target = np.sqrt((np.abs(coil_imgs) ** 2).sum(0))[None].repeat(slices, 0).astype(np.float32)
    return (k * mask).astype(np.complex64), mask, target


def _ismrmrd_header_with_subject(h: int, w: int, slices: int) -> bytes:
    from medrecon.io.fastmri import minimal_ismrmrd_header

    xml = minimal_ismrmrd_header((h, w), (h, w), slices)
    subject = (f"<subjectInformation><patientName>{PLANTED['name']}</patientName>"
               f"<patientID>{PLANTED['id']}</patientID><patientBirthdate>1923-04-17</patientBirthdate>"
               "</subjectInformation>")
    # subjectInformation comes first in the ISMRMRD schema's sequence.
    return xml.replace('<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">',
                       '<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">' + subject, 1).encode()


def tiny_fastmri(path: str | os.PathLike, planted: bool = False, **kw) -> Path:
    """A fastMRI multicoil file (kspace, mask, reconstruction_rss, header); ``planted`` adds identifiers."""
    import h5py

    from medrecon.io.fastmri import write_fastmri_kspace

    k, mask, target = tiny_kspace(**kw)
    path = Path(path)
    header = _ismrmrd_header_with_subject(k.shape[-2], k.shape[-1], k.shape[0]) if planted else None
    write_fastmri_kspace(path, k, target=target, mask=mask, header_xml=header)
    if planted:  # the writer refuses identifying attrs (rightly); a hospital's converter may not
        with h5py.File(path, "a") as f:
            f.attrs["patient_id"] = PLANTED["id"]
            f.attrs["patient_name"] = PLANTED["name"]
            f.attrs["patient_birth_date"] = PLANTED["birth"]
    return path


def tiny_ismrmrd(path: str | os.PathLike, planted: bool = False, **kw) -> Path:
    """An ISMRMRD raw-data file (one acquisition per sampled column); ``planted`` adds subjectInformation."""
    import h5py

    from medrecon.io.ismrmrd_io import write_ismrmrd

    k, mask, _ = tiny_kspace(**kw)
    path = write_ismrmrd(path, k, mask=mask)
    if planted:
        with h5py.File(path, "r") as f:
            xml = bytes(np.asarray(f["dataset/xml"][()]).reshape(-1)[0])
        subject = (f"<subjectInformation><patientName>{PLANTED['name']}</patientName>"
                   f"<patientID>{PLANTED['id']}</patientID><patientBirthdate>1923-04-17</patientBirthdate>"
                   "</subjectInformation>").encode()
        start = xml.index(b">", xml.index(b"<ismrmrdHeader")) + 1
        xml = xml[:start] + subject + xml[start:]
        with h5py.File(path, "a") as f:
            del f["dataset/xml"]
            f.create_dataset("dataset/xml", data=[xml], dtype=h5py.string_dtype())
    return Path(path)


def tiny_bart(path: str | os.PathLike, **kw) -> Path:
    """A BART ``.hdr``/``.cfl`` pair of 2-D multi-coil k-space ``(H, W, 1, C)``; returns the base path."""
    from medrecon.io.bart import write_cfl

    k, _, _ = tiny_kspace(**kw)
    base = Path(path)
    base = base.with_suffix("") if base.suffix in (".cfl", ".hdr") else base
    write_cfl(base, np.moveaxis(k[0], 0, -1)[:, :, None, :])
    return base


def tiny_npy(path: str | os.PathLike, **kw) -> Path:
    """k-space ``(S, C, H, W)`` as ``.npy`` (read with ``--axes SCHW``)."""
    k, _, _ = tiny_kspace(**kw)
    np.save(path, k)
    return Path(path)


def tiny_npz(path: str | os.PathLike, **kw) -> Path:
    """k-space and its column mask as a compressed ``.npz`` (read with ``--axes SCHW``)."""
    k, mask, _ = tiny_kspace(**kw)
    np.savez_compressed(path, kspace=k, mask=mask)
    return Path(path)


def tiny_sinogram(path: str | os.PathLike, size: int = 16, views: int = 8) -> Path:
    """A parallel-beam sinogram file of a disc, ``size x size`` pixels and ``views`` angles."""
    import torch

    from medrecon.io.sinogram import write_sinogram
    from medrecon.simulate import simulate_sinogram
    from operators import ParallelBeamCT

    yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    hu = np.where(xx**2 + yy**2 < 0.5, 40.0, -1000.0).astype(np.float32)[None]
    A = ParallelBeamCT((size, size), views)
    sino = simulate_sinogram(torch.from_numpy(hu), A, 0, None, 0.019)
    return write_sinogram(path, sino.numpy(), A.geometry(), 0.019, 0.0, 0, target_hu=hu)


def tiny_dicom(path: str | os.PathLike, planted: bool = True, size: int = 16, z: float = 0.0,
               transfer_syntax: str | None = None, series_uid: str | None = None) -> Path:
    """One CT slice (int16 HU via RescaleIntercept) with a patient module; optionally compressed.

    Args:
        path: the ``.dcm`` file.
        planted: fill PatientName/ID/BirthDate/AccessionNumber with :data:`PLANTED` (else blank).
        size: rows and columns.
        z: ImagePositionPatient z (mm), to build series.
        transfer_syntax: ``None`` (explicit VR little endian), ``"rle"`` or ``"jpeg2000"``.
        series_uid: shared SeriesInstanceUID for series; a new one by default.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless, generate_uid

    yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    pixels = np.where(xx**2 + yy**2 < 0.5, 1040, 24).astype(np.int16)  # HU = stored - 1024
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.PatientName = PLANTED["name"] if planted else ""
    ds.PatientID = PLANTED["id"] if planted else ""
    ds.PatientBirthDate = PLANTED["birth"] if planted else ""
    ds.AccessionNumber = PLANTED["accession"] if planted else ""
    ds.Modality = "CT"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.InstanceNumber = round(z) + 1
    ds.ImagePositionPatient = [0.0, 0.0, float(z)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [1.0, 1.0]
    ds.SliceThickness = 1.0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = pixels.tobytes()
    if transfer_syntax == "rle":
        ds.compress(RLELossless)
    elif transfer_syntax == "jpeg2000":
        ds.compress(JPEG2000Lossless)
    path = Path(path)
    ds.save_as(path, enforce_file_format=True)
    return path


def tiny_nifti(path: str | os.PathLike, shape: tuple[int, int, int] = (16, 16, 2)) -> Path:
    """A float32 NIfTI-1 volume (``.nii`` or ``.nii.gz`` from the name)."""
    import nibabel as nib

    data = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) % 97
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), str(path))
    return Path(path)


def tiny_nrrd(path: str | os.PathLike, shape: tuple[int, int, int] = (2, 16, 16)) -> Path:
    """An attached, raw, little-endian int16 NRRD volume with LPS space directions."""
    data = (np.arange(int(np.prod(shape))) % 300).astype("<i2").reshape(shape)
    sizes = " ".join(str(s) for s in shape[::-1])
    header = ("NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\n"
              f"sizes: {sizes}\nspace directions: (1,0,0) (0,1,0) (0,0,2)\nspace origin: (0,0,0)\n"
              "endian: little\nencoding: raw\n\n")
    Path(path).write_bytes(header.encode() + data.tobytes())
    return Path(path)


#: name -> (writer, reader kind) for the fuzzer: "measurement" files go through
#: :func:`medrecon.pipeline.load_input`, "image" files through :func:`medrecon.io.volumes.load_volume`.
SEEDS: dict[str, tuple[Callable[[Path], Path], str, str]] = {
    "fastmri": (tiny_fastmri, "measurement", "x.h5"),
    "ismrmrd": (tiny_ismrmrd, "measurement", "x.h5"),
    "bart": (tiny_bart, "measurement", "x"),
    "npy": (tiny_npy, "measurement", "x.npy"),
    "npz": (tiny_npz, "measurement", "x.npz"),
    "sinogram": (tiny_sinogram, "measurement", "x.h5"),
    "dicom": (lambda p: tiny_dicom(p, planted=True), "image", "x.dcm"),
    "dicom-rle": (lambda p: tiny_dicom(p, transfer_syntax="rle"), "image", "x.dcm"),
    # OpenJPEG's default 6 wavelet levels need at least 32x32 pixels.
    "dicom-j2k": (lambda p: tiny_dicom(p, size=32, transfer_syntax="jpeg2000"), "image", "x.dcm"),
    "nifti": (tiny_nifti, "image", "x.nii"),
    "nifti-gz": (tiny_nifti, "image", "x.nii.gz"),
    "nrrd": (tiny_nrrd, "image", "x.nrrd"),
}
