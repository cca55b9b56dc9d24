"""ISMRMRD raw data (HDF5 ``/dataset/data`` + ``/dataset/xml``): 2-D Cartesian multi-coil k-space.

Reading turns the acquisitions of the first encoding space into the fastMRI layout
``kspace[slice, coil, readout sample, phase-encode column]`` (docs/design.md, section 3), so that
``operators.fft.ifft2c`` gives the coil images exactly as for a fastMRI file; fastMRI's own files
were converted from ISMRMRD raw data this way (readout centre ``center_sample`` at ``H // 2``,
``kspace_encode_step_1`` offset by fastMRI's padding ``enc_y // 2 - encodingLimits center``).

Which acquisitions become k-space:

- noise measurements (``ACQ_IS_NOISE_MEASUREMENT``) never do; they give the coil noise covariance
  used to pre-whiten all data (Pruessmann et al., MRM 46:638, 2001: ``L^-1 y`` with
  ``Psi = L L^H``), scaled by the dwell-time ratio because noise variance grows with bandwidth;
- navigators, phase-correction, feedback (HP/RT), dummy, surface-coil-correction and
  phase-stabilisation scans are skipped: they are not samples of this image's k-space;
- parallel-imaging calibration lines ARE used (they sample the same k-space; the ACS centre
  belongs in the mask as in fastMRI files), except when the header's ``calibrationMode`` is
  ``separate`` or ``external``: then calibration-only lines may have another contrast or matrix;
- repeated averages of a line are averaged; several contrasts, phases, repetitions or sets,
  3-D encoding and non-Cartesian trajectories are refused with an :class:`InputError`.

The XML header is parsed with defusedxml only; subject fields (patient name, ID, birth date)
are never read into the result, and error messages never quote the header.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import defusedxml
import defusedxml.ElementTree as DET
import h5py
import numpy as np
import scipy.linalg

from medrecon.errors import InputError
from medrecon.io.atomic import atomic_write
from medrecon.io.fastmri import (
    FastMRIVolume,
    _default_recon_size,
    _parse_header,
    _xml_int,
    minimal_ismrmrd_header,
)
from medrecon.io.guards import check_size, memory_limit, nbytes_of, reader_errors, require_hdf5

__all__ = ["read_ismrmrd", "write_ismrmrd"]

# Non-imaging scans that are neither k-space of the image nor noise (ISMRMRD AcquisitionFlags).
_SKIP_FLAG_NAMES = (
    "ACQ_IS_NAVIGATION_DATA",
    "ACQ_IS_PHASECORR_DATA",
    "ACQ_IS_HPFEEDBACK_DATA",
    "ACQ_IS_RTFEEDBACK_DATA",
    "ACQ_IS_DUMMYSCAN_DATA",
    "ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA",
    "ACQ_IS_PHASE_STABILIZATION_REFERENCE",
    "ACQ_IS_PHASE_STABILIZATION",
)
_SEPARATE_CALIBRATION = {"separate", "external"}
_MAX_XML_BYTES = 16 * 2**20
_BLOCK = 1024  # acquisitions per HDF5 read
_NOISE_READOUT = 1024  # samples per written noise readout (long readouts: few rows)
_DEFAULT_DWELL_US = 5.0  # written when the caller gives none; only the noise/data ratio matters


def _ismrmrd() -> Any:
    """The optional ``ismrmrd`` package, or an InputError saying how to install it."""
    try:
        import ismrmrd
    except ImportError as exc:
        raise InputError("ISMRMRD files need the ismrmrd package: pip install 'medrecon[all]'") from exc
    return ismrmrd


# ----------------------------------------------------------------------------- header


@dataclass
class _Header:
    """What the reader needs from the XML header (nothing identifying)."""

    recon_size: tuple[int, int] | None
    encoded_size: tuple[int, int] | None
    padding: tuple[int, int] | None
    channels: int | None
    num_slices: int | None
    e1_center: int | None
    separate_calibration: bool
    pixel_mm: tuple[float, float] | None = None


def _header(xml: bytes, name: str) -> _Header:
    if len(xml) > _MAX_XML_BYTES:
        raise InputError(f"{name}: the ISMRMRD XML header is larger than 16 MiB; this is not an ISMRMRD file")
    try:
        root = DET.fromstring(xml)
    except (DET.ParseError, defusedxml.DefusedXmlException) as exc:
        # Only the exception type: the header may hold the subject's name.
        raise InputError(f"{name}: the ISMRMRD XML header is not valid or safe XML ({type(exc).__name__})") from exc
    sizes = _parse_header(xml, name)  # recon/encoded size and fastMRI padding, parsed as fastMRI does
    slice_max = _xml_int(root, "encoding/encodingLimits/slice/maximum")
    mode = root.find("{*}encoding/{*}parallelImaging/{*}calibrationMode")
    mode_text = (mode.text or "").strip().lower() if mode is not None else ""
    return _Header(
        recon_size=sizes["recon_size"],
        encoded_size=sizes["encoded_size"],
        padding=sizes["padding"],
        channels=_xml_int(root, "acquisitionSystemInformation/receiverChannels"),
        num_slices=slice_max + 1 if slice_max is not None and slice_max >= 0 else None,
        e1_center=_xml_int(root, "encoding/encodingLimits/kspace_encoding_step_1/center"),
        separate_calibration=mode_text in _SEPARATE_CALIBRATION,
        pixel_mm=sizes["pixel_mm"],
    )


def _read_xml(f: h5py.File, name: str) -> bytes:
    if "dataset" not in f or "xml" not in f["dataset"] or "data" not in f["dataset"]:
        raise InputError(f"{name} has no /dataset/xml and /dataset/data; it is not an ISMRMRD raw-data file")
    ds = f["dataset"]["xml"]
    if not isinstance(ds, h5py.Dataset) or ds.size > 1 or ds.dtype.kind not in "SOU":
        raise InputError(f"{name}: /dataset/xml is not a single XML string; it is not an ISMRMRD raw-data file")
    if ds.dtype.itemsize > _MAX_XML_BYTES:  # fixed-length string: refuse before reading it
        raise InputError(f"{name}: the ISMRMRD XML header is larger than 16 MiB; this is not an ISMRMRD file")
    value = ds[()]
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else b""
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


# ----------------------------------------------------------------------------- acquisitions


@dataclass
class _Lines:
    """Imaging readouts and noise samples gathered from one pass over the acquisitions."""

    lines: list[tuple[int, int, np.ndarray, int, float]] = field(default_factory=list)  # slice, e1, data, centre, dwell
    noise: list[np.ndarray] = field(default_factory=list)
    noise_dwell: float = 0.0
    skipped: int = 0


def _check_counters(acq: Any, name: str) -> None:
    idx = acq.idx
    if acq.trajectory_dimensions > 0:
        raise InputError(f"{name} holds non-Cartesian (trajectory) data; medrecon reads Cartesian k-space only")
    if idx.kspace_encode_step_2 != 0:
        raise InputError(f"{name} is 3-D encoded (kspace_encode_step_2 > 0); medrecon reads 2-D k-space")
    for counter in ("contrast", "phase", "repetition", "set"):
        if getattr(idx, counter) != 0:
            raise InputError(f"{name} holds several {counter}s; medrecon reads one 2-D image per slice")


def _acquisitions(f: h5py.File, ismrmrd: Any) -> Iterator[tuple[Any, np.ndarray]]:
    """``(ismrmrd.Acquisition header object, (channels, samples) complex64 data)`` per row.

    Rows are read from ``/dataset/data`` in blocks (one HDF5 read per block instead of two per
    acquisition as ``ismrmrd.Dataset.read_acquisition`` does), then unpacked exactly as that
    method does: the header through ``ismrmrd.Acquisition``, the data as interleaved float32.
    """
    rows = f["dataset"]["data"]
    name = Path(f.filename).name
    if not isinstance(rows, h5py.Dataset) or rows.ndim != 1 or rows.dtype.names is None \
            or not {"head", "data"} <= set(rows.dtype.names):
        raise InputError(f"{name}: /dataset/data is not a table of ISMRMRD acquisitions")
    # The table of headers alone must fit the memory cap (the samples are checked as the matrix, later).
    check_size(nbytes_of(rows.shape, rows.dtype.itemsize), f"{rows.shape[0]} acquisitions", name)
    for start in range(0, rows.shape[0], _BLOCK):
        for row in rows[start : start + _BLOCK]:
            acq = ismrmrd.Acquisition(row["head"])
            data = np.asarray(row["data"], dtype=np.float32).view(np.complex64)
            yield acq, data.reshape(acq.active_channels, acq.number_of_samples)


def _gather(f: h5py.File, ismrmrd: Any, header: _Header, name: str) -> _Lines:
    skip_flags = [getattr(ismrmrd, flag) for flag in _SKIP_FLAG_NAMES if hasattr(ismrmrd, flag)]
    out = _Lines()
    for acq, data in _acquisitions(f, ismrmrd):
        if data.size == 0:
            # Real acquisitions always hold samples; an empty one is an unwritten (fill-value) row of a
            # damaged or crafted table, and walking millions of them would look like a hang.
            raise InputError(f"{name} holds an acquisition without samples; the ISMRMRD file is damaged")
        if acq.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
            out.noise.append(data)
            out.noise_dwell = float(acq.sample_time_us)
            continue
        calibration_only = acq.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION) and not acq.is_flag_set(
            ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING
        )
        if (
            any(acq.is_flag_set(flag) for flag in skip_flags)
            or (calibration_only and header.separate_calibration)
            or acq.encoding_space_ref != 0  # a second encoding space (e.g. separate reference scan)
        ):
            out.skipped += 1
            continue
        _check_counters(acq, name)
        if acq.is_flag_set(ismrmrd.ACQ_IS_REVERSE):
            data = data[:, ::-1]  # EPI-style reversed readout: restore the k-space order
        out.lines.append((int(acq.idx.slice), int(acq.idx.kspace_encode_step_1), data, int(acq.center_sample),
                          float(acq.sample_time_us)))  # fmt: skip
    if not out.lines:
        raise InputError(f"{name} holds no imaging acquisitions (only noise or non-imaging scans)")
    return out


def _whitener(noise: list[np.ndarray], coils: int, dwell_ratio: float, name: str) -> np.ndarray | None:
    """Lower-triangular ``L`` with ``Psi = L L^H`` for the imaging data, or None (too few samples)."""
    if not noise:
        return None
    samples = np.concatenate(noise, axis=1).astype(np.complex128)
    if samples.shape[0] != coils:
        raise InputError(f"{name}: noise scans have {samples.shape[0]} channels but the data has {coils}")
    if samples.shape[1] < 2 * coils:
        return None  # a covariance from fewer samples than ~2x coils is too noisy to whiten with
    psi = samples @ samples.conj().T / samples.shape[1]
    # Noise variance per sample scales with the receiver bandwidth, i.e. with 1 / dwell time.
    psi *= dwell_ratio
    try:
        return np.linalg.cholesky(psi)
    except np.linalg.LinAlgError as exc:
        raise InputError(f"{name}: the noise covariance is singular (a dead channel?); read with whiten=False") from exc


def _readout_length(lines: _Lines, header: _Header) -> int:
    longest = max(data.shape[1] for _, _, data, _, _ in lines.lines)
    # encodedSpace x is the readout length incl. oversampling when the converter filled it in.
    if header.encoded_size is not None and header.encoded_size[0] > longest:
        return int(header.encoded_size[0])
    return int(longest)


def _assemble(lines: _Lines, header: _Header, coils: int, name: str) -> tuple[np.ndarray, np.ndarray, int]:
    h = _readout_length(lines, header)
    enc_w = header.encoded_size[1] if header.encoded_size is not None else None
    width = int(enc_w) if enc_w else max(e1 for _, e1, _, _, _ in lines.lines) + 1
    # fastMRI padding: acquired column e1 lands at enc_y // 2 - center + e1.
    left = width // 2 - header.e1_center if header.e1_center is not None else 0
    slices = max(header.num_slices or 0, max(s for s, _, _, _, _ in lines.lines) + 1)
    if min(slices, coils, h, width) < 1:
        raise InputError(f"{name}: the header gives an empty matrix ({slices} slices, {coils} coils, {h}x{width})")
    # The header's matrix size decides the allocation: check it before np.zeros, not after.
    check_size(nbytes_of((slices, coils, h, width), 8), f"k-space ({slices}, {coils}, {h}, {width})", name)
    acc = np.zeros((slices, coils, h, width), np.complex64)
    count = np.zeros((slices, width), np.int64)
    for s, e1, data, centre, _ in lines.lines:
        if data.shape[0] != coils:
            raise InputError(f"{name}: an acquisition has {data.shape[0]} channels, expected {coils}")
        n = data.shape[1]
        start = 0 if n == h else h // 2 - centre  # partial echo: put the echo centre at H // 2
        col = left + e1
        if not (0 <= start and start + n <= h and 0 <= col < width):
            raise InputError(f"{name}: a readout (slice {s}, line {e1}) falls outside the {h}x{width} encoded matrix")
        acc[s, :, start : start + n, col] += data
        count[s, col] += 1
    sampled = count > 0
    acc[:, :, :, :] /= np.maximum(count, 1)[:, None, None, :]  # average repeated lines (averages)
    return acc, sampled, int(count.max())


def read_ismrmrd(path: str | os.PathLike, whiten: bool = True) -> FastMRIVolume:
    """Read 2-D Cartesian multi-coil ISMRMRD raw data into a fastMRI-layout volume.

    Args:
        path: the ISMRMRD HDF5 file (groups ``/dataset/data`` and ``/dataset/xml``).
        whiten: pre-whiten the coils with the noise scans' covariance when there are any.

    Returns:
        A :class:`FastMRIVolume` with ``kspace`` ``(S, C, H, W)`` complex64 (``ifft2c`` gives the
        coil images), ``mask`` ``(W,)`` = columns sampled in any slice, ``target`` None, the
        header's recon/encoded sizes and fastMRI padding, and attrs ``source_format``,
        ``noise_whitened``, ``noise_samples``, ``max_averages``, ``skipped_acquisitions``.

    Shapes:
        kspace: ``(slices, coils, readout samples, encodedSpace y)``.

    Raises:
        InputError: not ISMRMRD, damaged, 3-D, non-Cartesian, several contrasts/sets, or an
            inconsistent channel count. Messages never contain header subject fields.
    """
    path = require_hdf5(path, "ISMRMRD", "an ISMRMRD .h5 raw-data file")
    name = path.name
    ismrmrd = _ismrmrd()
    with reader_errors(name, "ISMRMRD"):  # damaged HDF5, compound rows, numeric garbage in the header
        # memory_limit: acquisitions are variable-length HDF5 data whose lengths live in the file's heap;
        # a corrupted heap makes HDF5 allocate gigabytes for a file of kilobytes (found by benchmarks/fuzz.py).
        with memory_limit(), h5py.File(path, "r") as f:
            header = _header(_read_xml(f, name), name)
            lines = _gather(f, ismrmrd, header, name)
        coils = header.channels if header.channels and header.channels > 0 else lines.lines[0][2].shape[0]
        kspace, sampled, max_avg = _assemble(lines, header, coils, name)
        return _finish(kspace, sampled, max_avg, lines, header, coils, name, whiten)


def _finish(kspace: np.ndarray, sampled: np.ndarray, max_avg: int, lines: _Lines, header: _Header, coils: int,
            name: str, whiten: bool) -> FastMRIVolume:
    """Whiten (when noise scans allow) and package the assembled k-space."""
    data_dwell = lines.lines[0][4]
    ratio = lines.noise_dwell / data_dwell if lines.noise_dwell > 0 and data_dwell > 0 else 1.0
    chol = _whitener(lines.noise, coils, ratio, name) if whiten else None
    if chol is not None:
        flat = kspace.transpose(1, 0, 2, 3).reshape(coils, -1)
        flat = scipy.linalg.solve_triangular(chol.astype(np.complex64), flat, lower=True)  # y_white = L^-1 y
        kspace = flat.reshape(coils, *kspace.shape[0:1], *kspace.shape[2:]).transpose(1, 0, 2, 3)
        kspace = kspace * sampled[:, None, None, :]  # unsampled columns stay exactly 0
    h, w = kspace.shape[-2:]
    attrs = {
        "source_format": "ismrmrd",
        "noise_whitened": chol is not None,
        "noise_samples": int(sum(n.shape[1] for n in lines.noise)),
        "max_averages": max_avg,
        "skipped_acquisitions": lines.skipped,
    }
    return FastMRIVolume(
        kspace=np.ascontiguousarray(kspace, dtype=np.complex64),
        mask=sampled.any(axis=0),
        target=None,
        recon_size=header.recon_size or _default_recon_size(h, w, None),
        attrs=attrs,
        multicoil=True,
        padding=header.padding,
        encoded_size=header.encoded_size,
        pixel_mm=header.pixel_mm,
    )


# ----------------------------------------------------------------------------- writing


def _header_xml(kspace_shape: tuple[int, ...], recon_size: tuple[int, int] | None) -> bytes:
    s, c, h, w = kspace_shape
    size = recon_size or _default_recon_size(h, w, None)
    xml = minimal_ismrmrd_header((h, w), size, s)
    # receiverChannels lives in acquisitionSystemInformation, which the schema puts before
    # experimentalConditions.
    system = f"<acquisitionSystemInformation><receiverChannels>{c}</receiverChannels></acquisitionSystemInformation>"
    return xml.replace("<experimentalConditions>", system + "<experimentalConditions>", 1).encode("utf-8")


def _new_acquisition(ismrmrd: Any, data: np.ndarray, dwell_us: float, scan: int) -> Any:
    acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(data, dtype=np.complex64))
    acq.sample_time_us = dwell_us
    acq.scan_counter = scan
    acq.read_dir[:] = (1.0, 0.0, 0.0)
    acq.phase_dir[:] = (0.0, 1.0, 0.0)
    acq.slice_dir[:] = (0.0, 0.0, 1.0)
    for ch in range(data.shape[0]):
        acq.setChannelActive(ch)
    return acq


def _write_rows(group: h5py.Group, ismrmrd: Any, acqs: list[Any]) -> None:
    """All acquisitions as one ``data`` table, row by row as ``Dataset.append_acquisition`` packs
    them (header bytes, data as interleaved float32) but without resizing the table per row."""
    from ismrmrd.hdf5 import acquisition_dtype, acquisition_header_dtype

    rows = np.empty((len(acqs),), dtype=acquisition_dtype)
    for i, acq in enumerate(acqs):
        rows["head"][i] = np.frombuffer(acq.getHead(), dtype=acquisition_header_dtype)[0]
        rows["data"][i] = acq.data.view(np.float32).reshape(-1)
        rows["traj"][i] = acq.traj.view(np.float32).reshape(-1)
    group.create_dataset("data", data=rows, maxshape=(None,), chunks=True)


def _check_write_inputs(kspace: Any, mask: Any, noise: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    kspace = np.asarray(kspace)
    if kspace.ndim != 4 or not np.iscomplexobj(kspace):
        raise InputError(f"kspace has shape {kspace.shape} and dtype {kspace.dtype}; expected complex (S, C, H, W)")
    w = kspace.shape[-1]
    mask = np.ones(w, bool) if mask is None else np.asarray(mask).astype(bool)
    if mask.shape != (w,):
        raise InputError(f"mask has shape {mask.shape}; expected ({w},), one entry per k-space column")
    if noise is not None:
        noise = np.asarray(noise)
        if noise.ndim != 2 or noise.shape[0] != kspace.shape[1]:
            raise InputError(f"noise has shape {noise.shape}; expected ({kspace.shape[1]}, samples)")
    return kspace, mask, noise


def write_ismrmrd(
    path: str | os.PathLike,
    kspace: np.ndarray,
    mask: np.ndarray | None = None,
    noise: np.ndarray | None = None,
    recon_size: tuple[int, int] | None = None,
    dwell_us: float = _DEFAULT_DWELL_US,
) -> Path:
    """Write fastMRI-layout k-space as an ISMRMRD raw-data file, atomically (tests, simulation).

    Each sampled column of each slice becomes one acquisition (``idx.slice``,
    ``idx.kspace_encode_step_1`` = column, ``center_sample = H // 2``, first/last-in-slice and
    encode-step flags, last-in-measurement on the final one). Noise samples, if given, are written
    first as ``ACQ_IS_NOISE_MEASUREMENT`` readouts of up to ``max(H, 1024)`` samples. The header has the
    encoded matrix ``(H, W)``, reconSpace ``recon_size``, ``kspace_encoding_step_1`` limits
    ``0..W-1`` centre ``W // 2``, slice limits and ``receiverChannels``.

    Shapes:
        kspace: ``(S, C, H, W)`` complex; mask: ``(W,)`` or None (all columns); noise:
        ``(C, N)`` complex or None.
    """
    ismrmrd = _ismrmrd()
    kspace, mask, noise = _check_write_inputs(kspace, mask, noise)
    s_count, _, h, _ = kspace.shape
    xml = _header_xml(kspace.shape, recon_size)
    columns = np.flatnonzero(mask)
    acqs = []
    if noise is not None and noise.shape[1] > 0:
        for chunk in np.array_split(noise, -(-noise.shape[1] // max(h, _NOISE_READOUT)), axis=1):
            acq = _new_acquisition(ismrmrd, chunk, dwell_us, len(acqs))
            acq.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
            acqs.append(acq)
    for s in range(s_count):
        for j, col in enumerate(columns):
            acq = _new_acquisition(ismrmrd, kspace[s, :, :, col], dwell_us, len(acqs))
            acq.center_sample = h // 2  # fft2c puts the echo centre at H // 2
            acq.idx.slice, acq.idx.kspace_encode_step_1 = s, int(col)
            if j == 0:
                acq.set_flag(ismrmrd.ACQ_FIRST_IN_SLICE)
                acq.set_flag(ismrmrd.ACQ_FIRST_IN_ENCODE_STEP1)
            if j == len(columns) - 1:
                acq.set_flag(ismrmrd.ACQ_LAST_IN_SLICE)
                acq.set_flag(ismrmrd.ACQ_LAST_IN_ENCODE_STEP1)
                if s == s_count - 1:
                    acq.set_flag(ismrmrd.ACQ_LAST_IN_MEASUREMENT)
            acqs.append(acq)
    path = Path(path)
    with atomic_write(path) as tmp:
        with ismrmrd.Dataset(str(tmp), "dataset", mode="w") as dset:
            dset.write_xml_header(xml)
        with h5py.File(tmp, "a") as f:
            _write_rows(f["dataset"], ismrmrd, acqs)
    return path
