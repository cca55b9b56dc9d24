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

**Non-Cartesian data** (issue 20; :func:`read_ismrmrd_noncartesian`, :func:`write_ismrmrd_noncartesian`):
a file whose imaging acquisitions carry a trajectory (``trajectory_dimensions == 2``, ``traj``
``(samples, 2)`` per acquisition; header ``encoding/trajectory`` radial, goldenangle or spiral) is read
as ``(S, C, M)`` k-space with one ``(M, 2)`` trajectory (:func:`has_trajectory` decides; the Cartesian
path above is unchanged). One acquisition is one spoke or interleave; within a slice (``idx.slice``) they
are concatenated in file order, and every slice must have the same trajectory. Trajectory column 0
(ISMRMRD ``kx``, the readout/encoded ``x`` axis) is along H, column 1 (``ky``) along W, as the Cartesian
path puts the readout along H; the matrix is ``encodedSpace/matrixSize`` ``(x, y)`` = ``(H, W)``. The
``traj`` values are read as cycles per pixel (``[-0.5, 0.5]``, Gadgetron's normalisation) unless the
header's ``userParameters`` has the string parameter ``trajectory_convention`` (``radians`` or
``cycles``), which the writer always sets. Noise scans pre-whiten the data as for Cartesian files; the
same acquisitions are skipped; several contrasts/phases/repetitions/sets, 3-D encoding and
3-D trajectories are refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:  # the annotation only: medrecon.io.noncartesian is imported where it is used
    from medrecon.io.noncartesian import NonCartesianKspace

__all__ = ["has_trajectory", "read_ismrmrd", "read_ismrmrd_noncartesian", "write_ismrmrd",
           "write_ismrmrd_noncartesian"]

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


def _rows(f: h5py.File) -> h5py.Dataset:
    """``/dataset/data``, checked to be a table of acquisitions whose headers fit the memory cap."""
    rows = f["dataset"]["data"]
    name = Path(f.filename).name
    if not isinstance(rows, h5py.Dataset) or rows.ndim != 1 or rows.dtype.names is None \
            or not {"head", "data"} <= set(rows.dtype.names):
        raise InputError(f"{name}: /dataset/data is not a table of ISMRMRD acquisitions")
    # The table of headers alone must fit the memory cap (the samples are checked as the matrix, later).
    check_size(nbytes_of(rows.shape, rows.dtype.itemsize), f"{rows.shape[0]} acquisitions", name)
    return rows


def _acquisitions(f: h5py.File, ismrmrd: Any) -> Iterator[tuple[Any, np.ndarray, Any]]:
    """``(ismrmrd.Acquisition header object, (channels, samples) complex64 data, the raw row)`` per row (the row
    gives non-Cartesian readers the acquisition's ``traj``).

    Rows are read from ``/dataset/data`` in blocks (one HDF5 read per block instead of two per
    acquisition as ``ismrmrd.Dataset.read_acquisition`` does), then unpacked exactly as that
    method does: the header through ``ismrmrd.Acquisition``, the data as interleaved float32.
    """
    rows = _rows(f)
    for start in range(0, rows.shape[0], _BLOCK):
        for row in rows[start : start + _BLOCK]:
            acq = ismrmrd.Acquisition(row["head"])
            data = np.asarray(row["data"], dtype=np.float32).view(np.complex64)
            yield acq, data.reshape(acq.active_channels, acq.number_of_samples), row


def _imaging(acq: Any, data: np.ndarray, out: _Lines, ismrmrd: Any, skip_flags: list, separate_calibration: bool,
             name: str) -> bool:
    """Whether an acquisition is imaging data; noise scans go to ``out.noise``, skipped scans are counted (the rule
    the Cartesian and non-Cartesian readers share)."""
    if data.size == 0:
        # Real acquisitions always hold samples; an empty one is an unwritten (fill-value) row of a
        # damaged or crafted table, and walking millions of them would look like a hang.
        raise InputError(f"{name} holds an acquisition without samples; the ISMRMRD file is damaged")
    if acq.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
        out.noise.append(data)
        out.noise_dwell = float(acq.sample_time_us)
        return False
    calibration_only = acq.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION) and not acq.is_flag_set(
        ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING
    )
    if (
        any(acq.is_flag_set(flag) for flag in skip_flags)
        or (calibration_only and separate_calibration)
        or acq.encoding_space_ref != 0  # a second encoding space (e.g. separate reference scan)
    ):
        out.skipped += 1
        return False
    return True


def _gather(f: h5py.File, ismrmrd: Any, header: _Header, name: str) -> _Lines:
    skip_flags = [getattr(ismrmrd, flag) for flag in _SKIP_FLAG_NAMES if hasattr(ismrmrd, flag)]
    out = _Lines()
    for acq, data, _ in _acquisitions(f, ismrmrd):
        if not _imaging(acq, data, out, ismrmrd, skip_flags, header.separate_calibration, name):
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


def _new_acquisition(ismrmrd: Any, data: np.ndarray, dwell_us: float, scan: int,
                     trajectory: np.ndarray | None = None) -> Any:
    acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(data, dtype=np.complex64), trajectory)
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


# ----------------------------------------------------------------------------- non-Cartesian

_TRAJECTORY_TYPES = ("radial", "goldenangle", "spiral", "other", "cartesian", "epi")  # the schema's trajectoryType
_TRAJ_CONVENTIONS = ("cycles", "radians")
_CONVENTION_PARAMETER = "trajectory_convention"


def _flag_bit(ismrmrd: Any, flag: str) -> int:
    return 1 << (int(getattr(ismrmrd, flag)) - 1)  # ISMRMRD flags are 1-based bit numbers


def has_trajectory(path: str | os.PathLike) -> bool:
    """Whether an ISMRMRD file's imaging acquisitions carry a trajectory (``trajectory_dimensions > 0``).

    Reads only the acquisition headers. Noise scans, the non-imaging scans the readers skip and a second
    encoding space do not count, so a Cartesian file with a navigator that has a trajectory stays Cartesian.

    Raises:
        InputError: not an ISMRMRD raw-data file, or damaged.
    """
    path = require_hdf5(path, "ISMRMRD", "an ISMRMRD .h5 raw-data file")
    ismrmrd = _ismrmrd()
    ignore = _flag_bit(ismrmrd, "ACQ_IS_NOISE_MEASUREMENT")
    for flag in _SKIP_FLAG_NAMES:
        if hasattr(ismrmrd, flag):
            ignore |= _flag_bit(ismrmrd, flag)
    with reader_errors(path.name, "ISMRMRD"), memory_limit(), h5py.File(path, "r") as f:
        _read_xml(f, path.name)  # the same "not ISMRMRD" errors as the readers
        rows = _rows(f)
        heads = rows.fields("head")
        for start in range(0, rows.shape[0], _BLOCK):
            h = heads[start : start + _BLOCK]
            imaging = ((h["flags"] & np.uint64(ignore)) == 0) & (h["encoding_space_ref"] == 0)
            if np.any(h["trajectory_dimensions"][imaging] > 0):
                return True
    return False


@dataclass
class _NonCartHeader:
    """What the non-Cartesian reader needs from the XML header (nothing identifying)."""

    matrix: tuple[int, int] | None
    trajectory: str
    convention: str
    pixel_mm: float | None
    separate_calibration: bool


def _noncart_header(xml: bytes, name: str) -> _NonCartHeader:
    header = _header(xml, name)  # size and safety checks, as for Cartesian files
    root = DET.fromstring(xml)
    kind = root.find("{*}encoding/{*}trajectory")
    trajectory = (kind.text or "").strip().lower() if kind is not None else ""
    convention = "cycles"  # Gadgetron's normalisation, when the file does not say
    for param in root.findall("{*}userParameters/{*}userParameterString"):
        pname, value = param.find("{*}name"), param.find("{*}value")
        if pname is not None and (pname.text or "").strip() == _CONVENTION_PARAMETER:
            convention = (value.text or "").strip().lower() if value is not None else ""
            if convention not in _TRAJ_CONVENTIONS:
                raise InputError(f"{name}: the userParameter {_CONVENTION_PARAMETER} must be one of "
                                 f"{', '.join(_TRAJ_CONVENTIONS)}")
    pixel = None
    if header.encoded_size is not None:
        fx = _xml_float_safe(root, "encoding/encodedSpace/fieldOfView_mm/x")
        fy = _xml_float_safe(root, "encoding/encodedSpace/fieldOfView_mm/y")
        if fx and fy and fx > 0 and fy > 0:
            pixel = float(min(fx / header.encoded_size[0], fy / header.encoded_size[1]))
    return _NonCartHeader(header.encoded_size, trajectory or "other", convention, pixel, header.separate_calibration)


def _xml_float_safe(root: Any, path: str) -> float | None:
    from medrecon.io.fastmri import _xml_float

    v = _xml_float(root, path)
    return v if v is not None and np.isfinite(v) else None


def _gather_noncart(f: h5py.File, ismrmrd: Any, separate_calibration: bool, name: str) -> tuple[dict, _Lines, float]:
    """``({slice: [(data (C, n), traj (n, 2))]}, noise and skip count, imaging dwell time)`` from one pass
    over the acquisitions (``_Lines.lines`` stays empty: the spokes are in the dict)."""
    skip_flags = [getattr(ismrmrd, flag) for flag in _SKIP_FLAG_NAMES if hasattr(ismrmrd, flag)]
    per_slice: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    out = _Lines()
    data_dwell = 0.0
    for acq, data, row in _acquisitions(f, ismrmrd):
        if _imaging(acq, data, out, ismrmrd, skip_flags, separate_calibration, name):
            dims = int(acq.trajectory_dimensions)
            if dims == 0:
                raise InputError(f"{name} mixes Cartesian acquisitions with non-Cartesian ones (with a trajectory)")
            if dims != 2:
                raise InputError(f"{name}: acquisitions have {dims}-D trajectories; medrecon reads 2-D (kx, ky)")
            _check_noncart_counters(acq, name)
            if "traj" not in (row.dtype.names or ()):
                raise InputError(f"{name}: the acquisition table has no 'traj' field; the ISMRMRD file is damaged")
            traj = np.asarray(row["traj"], dtype=np.float32)
            if traj.size != data.shape[1] * 2:
                raise InputError(f"{name}: an acquisition has {traj.size // 2} trajectory points for "
                                 f"{data.shape[1]} samples; the ISMRMRD file is damaged")
            per_slice.setdefault(int(acq.idx.slice), []).append((data, traj.reshape(data.shape[1], 2)))
            data_dwell = data_dwell or float(acq.sample_time_us)
    if not per_slice:
        raise InputError(f"{name} holds no imaging acquisitions (only noise or non-imaging scans)")
    return per_slice, out, data_dwell


def _check_noncart_counters(acq: Any, name: str) -> None:
    idx = acq.idx
    if idx.kspace_encode_step_2 != 0:
        raise InputError(f"{name} is 3-D encoded (kspace_encode_step_2 > 0); medrecon reads 2-D k-space")
    for counter in ("contrast", "phase", "repetition", "set"):
        if getattr(idx, counter) != 0:
            raise InputError(f"{name} holds several {counter}s; medrecon reads one 2-D image per slice")


def read_ismrmrd_noncartesian(path: str | os.PathLike, whiten: bool = True) -> "NonCartesianKspace":
    """Read 2-D non-Cartesian multi-coil ISMRMRD raw data (module docstring for the conventions).

    Args:
        path: the ISMRMRD HDF5 file.
        whiten: pre-whiten the coils with the noise scans' covariance when there are any.

    Returns:
        :class:`medrecon.io.noncartesian.NonCartesianKspace`: ``kspace`` ``(S, C, M)`` complex64 (the
        acquisitions of each slice concatenated in file order), ``traj`` ``(M, 2)`` float32 radians,
        ``matrix`` = encodedSpace ``(x, y)`` = ``(H, W)``, attrs ``trajectory`` (the header's name),
        ``traj_convention``, ``noise_whitened``, ``noise_samples``, ``skipped_acquisitions``.

    Raises:
        InputError: not ISMRMRD, damaged, no encodedSpace matrix, Cartesian acquisitions among the
            non-Cartesian ones, 3-D, several contrasts/sets, slices with different trajectories or
            channel counts, a bad trajectory (NaN/Inf, out of range).
    """
    from medrecon.io.noncartesian import NonCartesianKspace, checked_kspace, checked_matrix, checked_trajectory

    path = require_hdf5(path, "ISMRMRD", "an ISMRMRD .h5 raw-data file")
    name = path.name
    ismrmrd = _ismrmrd()
    with reader_errors(name, "ISMRMRD"):
        with memory_limit(), h5py.File(path, "r") as f:
            xml = _read_xml(f, name)
            header = _noncart_header(xml, name)
            per_slice, lines, data_dwell = _gather_noncart(f, ismrmrd, header.separate_calibration, name)
        if header.matrix is None:
            raise InputError(f"{name}: the header has no encodedSpace matrixSize; non-Cartesian data needs the "
                             "image matrix")
        matrix = checked_matrix(header.matrix, name)
        slices = max(per_slice) + 1
        missing = [s for s in range(slices) if s not in per_slice]
        if missing:
            raise InputError(f"{name}: slice(s) {missing[:5]} have no acquisitions; slices must be 0..{slices - 1}")
        trajs = [np.concatenate([t for _, t in per_slice[s]]) for s in range(slices)]
        if any(t.shape != trajs[0].shape or not np.array_equal(t, trajs[0]) for t in trajs[1:]):
            raise InputError(f"{name}: the slices have different trajectories; medrecon reads one trajectory "
                             "shared by all slices")
        coils = {d.shape[0] for s in range(slices) for d, _ in per_slice[s]}
        if len(coils) != 1:
            raise InputError(f"{name}: acquisitions have {sorted(coils)} channels; expected one channel count")
        (c,) = coils
        check_size(nbytes_of((slices, c, trajs[0].shape[0]), 8), f"k-space ({slices}, {c}, {trajs[0].shape[0]})",
                   name)
        kspace = np.stack([np.concatenate([d for d, _ in per_slice[s]], axis=1) for s in range(slices)])
        traj = checked_trajectory(trajs[0], header.convention, matrix, name)
        ratio = lines.noise_dwell / data_dwell if lines.noise_dwell > 0 and data_dwell > 0 else 1.0
        chol = _whitener(lines.noise, c, ratio, name) if whiten else None
        if chol is not None:
            # y_white = L^-1 y on all samples of all slices at once: (C, S*M)
            flat = kspace.transpose(1, 0, 2).reshape(c, -1)
            flat = scipy.linalg.solve_triangular(chol.astype(np.complex64), flat, lower=True)
            kspace = flat.reshape(c, slices, -1).transpose(1, 0, 2)
        attrs = {"source_format": "ismrmrd", "trajectory": header.trajectory, "traj_convention": header.convention,
                 "noise_whitened": chol is not None, "noise_samples": int(sum(n.shape[1] for n in lines.noise)),
                 "skipped_acquisitions": lines.skipped}
        return NonCartesianKspace(kspace=checked_kspace(kspace, name), traj=traj, matrix=matrix, attrs=attrs,
                                  pixel_mm=header.pixel_mm)


def _noncart_header_xml(slices: int, coils: int, spokes: int, matrix: tuple[int, int], trajectory: str,
                        convention: str) -> bytes:
    """A schema-valid ISMRMRD header for non-Cartesian data: encoded = recon matrix ``(x, y) = (H, W)``,
    ``kspace_encoding_step_1`` = spoke ``0..spokes-1``, slices, receiverChannels, the trajectory type and the
    ``trajectory_convention`` user parameter."""
    h, w = matrix

    def limit(name: str, maximum: int) -> str:
        return f"<{name}><minimum>0</minimum><maximum>{maximum}</maximum><center>{(maximum + 1) // 2}</center></{name}>"

    def space(tag: str) -> str:
        return (f"<{tag}><matrixSize><x>{h}</x><y>{w}</y><z>1</z></matrixSize>"
                f"<fieldOfView_mm><x>{h}</x><y>{w}</y><z>1</z></fieldOfView_mm></{tag}>")

    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
        f"<acquisitionSystemInformation><receiverChannels>{coils}</receiverChannels></acquisitionSystemInformation>"
        "<experimentalConditions><H1resonanceFrequency_Hz>0</H1resonanceFrequency_Hz></experimentalConditions>"
        f"<encoding>{space('encodedSpace')}{space('reconSpace')}<encodingLimits>"
        f"{limit('kspace_encoding_step_1', spokes - 1)}{limit('kspace_encoding_step_2', 0)}"
        f"{limit('slice', max(slices - 1, 0))}</encodingLimits><trajectory>{trajectory}</trajectory></encoding>"
        f"<userParameters><userParameterString><name>{_CONVENTION_PARAMETER}</name><value>{convention}</value>"
        "</userParameterString></userParameters></ismrmrdHeader>"
    ).encode("utf-8")


def write_ismrmrd_noncartesian(
    path: str | os.PathLike,
    kspace: np.ndarray,
    traj: np.ndarray,
    matrix: tuple[int, int],
    trajectory_name: str = "radial",
    convention: str = "cycles",
    noise: np.ndarray | None = None,
    dwell_us: float = _DEFAULT_DWELL_US,
) -> Path:
    """Write non-Cartesian k-space as an ISMRMRD raw-data file, atomically: one acquisition per spoke.

    Acquisition ``(s, i)`` holds ``kspace[s, :, i*R:(i+1)*R]`` with ``traj[i]`` (``trajectory_dimensions``
    2, ``idx.slice = s``, ``idx.kspace_encode_step_1 = i``, ``center_sample = R // 2``, first/last-in-slice
    flags). The trajectory is stored in ``convention`` (cycles by default, as Gadgetron normalises it; the
    header's ``trajectory_convention`` user parameter says which), the header has encoded = recon matrix
    ``(x, y) = (H, W)`` and ``trajectory`` = ``trajectory_name``. Noise, if given, is written first as
    ``ACQ_IS_NOISE_MEASUREMENT`` readouts.

    Shapes:
        kspace: ``(S, C, spokes * R)`` (or ``(C, M)``) complex; traj: ``(spokes, R, 2)`` radians per pixel;
        noise: ``(C, N)`` complex or None.

    Raises:
        InputError: bad shapes or values, a sample-count mismatch, an unknown trajectory name or convention.
    """
    from medrecon.io.noncartesian import check_sample_count, checked_kspace, checked_matrix, checked_trajectory

    ismrmrd = _ismrmrd()
    path = Path(path)
    name = path.name
    k = checked_kspace(kspace, name)
    hw = checked_matrix(matrix, name)
    t = np.asarray(traj)
    if t.ndim != 3 or t.shape[-1] != 2 or t.dtype.kind not in "iuf":
        raise InputError(f"{name}: the trajectory must be real (spokes, readout, 2) radians, got {t.dtype} {t.shape}")
    radians = checked_trajectory(t.reshape(-1, 2), "radians", hw, name).reshape(t.shape)
    check_sample_count(radians.shape[0] * radians.shape[1], k.shape[-1], name)
    if trajectory_name not in _TRAJECTORY_TYPES:
        raise InputError(f"{name}: trajectory_name must be one of {', '.join(_TRAJECTORY_TYPES)}")
    if convention not in _TRAJ_CONVENTIONS:
        raise InputError(f"{name}: convention must be one of {', '.join(_TRAJ_CONVENTIONS)}")
    stored = radians / np.float32(2 * np.pi) if convention == "cycles" else radians
    slices, coils = k.shape[:2]
    spokes, readout = radians.shape[:2]
    acqs = []
    if noise is not None:
        noise = np.asarray(noise)
        if noise.ndim != 2 or noise.shape[0] != coils or noise.dtype.kind != "c":
            raise InputError(f"noise has shape {noise.shape}; expected complex ({coils}, samples)")
        for chunk in np.array_split(noise, -(-noise.shape[1] // max(readout, _NOISE_READOUT)), axis=1):
            acq = _new_acquisition(ismrmrd, chunk, dwell_us, len(acqs))
            acq.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
            acqs.append(acq)
    for s in range(slices):
        for i in range(spokes):
            data = k[s, :, i * readout : (i + 1) * readout]
            acq = _new_acquisition(ismrmrd, data, dwell_us, len(acqs), np.ascontiguousarray(stored[i], np.float32))
            acq.center_sample = readout // 2
            acq.idx.slice, acq.idx.kspace_encode_step_1 = s, i
            if i == 0:
                acq.set_flag(ismrmrd.ACQ_FIRST_IN_SLICE)
            if i == spokes - 1:
                acq.set_flag(ismrmrd.ACQ_LAST_IN_SLICE)
                if s == slices - 1:
                    acq.set_flag(ismrmrd.ACQ_LAST_IN_MEASUREMENT)
            acqs.append(acq)
    xml = _noncart_header_xml(slices, coils, spokes, hw, trajectory_name, convention)
    with atomic_write(path) as tmp:
        with ismrmrd.Dataset(str(tmp), "dataset", mode="w") as dset:
            dset.write_xml_header(xml)
        with h5py.File(tmp, "a") as f:
            _write_rows(f["dataset"], ismrmrd, acqs)
    return path
