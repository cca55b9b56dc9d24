"""fastMRI HDF5 files: k-space input files, reconstruction (submission) files, simulated files.

Layout (docs/design.md, section 3): ``kspace`` complex64 ``(slices, coils, H, W)`` (single-coil files:
``(slices, H, W)``), targets ``reconstruction_rss`` (multicoil) / ``reconstruction_esc``
(single-coil) float32 ``(slices, h, w)``, optional boolean ``mask`` ``(W,)`` in test files, the
XML ``ismrmrd_header`` and attrs (``acquisition``, ``max``, ``norm``, ``patient_id``,
``acceleration``, ``num_low_frequency``). A submission holds one dataset ``reconstruction``.

Identifying attrs (``patient_id`` and anything else that looks like a name, ID or birth date)
are never returned or written. Shapes and dtypes are checked before any array is read.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import defusedxml
import defusedxml.ElementTree as DET
import h5py
import numpy as np

from medrecon.errors import InputError
from medrecon.io.atomic import atomic_write
from medrecon.io.guards import check_size, memory_limit, nbytes_of, reader_errors, require_finite, require_hdf5

__all__ = [
    "FastMRIVolume",
    "is_identifying_attr",
    "minimal_ismrmrd_header",
    "read_fastmri",
    "write_fastmri_kspace",
    "write_reconstruction",
]

TARGET_KEYS = {True: "reconstruction_rss", False: "reconstruction_esc"}  # by multicoil
MAPS_KEYS = ("sens_maps", "coil_maps")  # optional precomputed coil sensitivities, as some fastMRI derivatives store
_RESERVED = {"kspace", "mask", "ismrmrd_header", "reconstruction_rss", "reconstruction_esc", "reconstruction",
             *MAPS_KEYS}
_IDENTIFYING = re.compile(r"patient|name|birth|dob|accession|mrn|subject|ssn|address|phone", re.IGNORECASE)
_MAX_HEADER_BYTES = 16 * 2**20


def is_identifying_attr(key: str) -> bool:
    """True for attr names that may carry patient identity (``patient_id``, ``*name*``, ...)."""
    return bool(_IDENTIFYING.search(key))


def _is_extra_key(key: str) -> bool:
    """Geometry/provenance datasets carried through simulate -> reconstruct unchanged, and a simulation's
    ``true_maps`` (used only by ``recon --maps true``)."""
    return key.startswith("source_") or key in ("slice_indices", "true_maps")


@dataclass(repr=False)
class FastMRIVolume:
    """One fastMRI k-space file, read into memory.

    Shapes:
        kspace: ``(slices, coils, H, W)`` complex64 (single-coil files get ``coils == 1``).
        mask: ``(W,)`` bool, or None (only test files carry one).
        target: ``(slices, h, w)`` float32, or None.

    Attributes:
        recon_size: ``(h, w)`` crop size: ``encoding/reconSpace/matrixSize`` (x, y) of the header;
            else the target's shape; else ``(320, 320)`` when ``H, W >= 320``; else ``(H, W)``.
        attrs: non-identifying file attrs (``acquisition``, ``max``, ``norm``, ``acceleration``,
            ``num_low_frequency``, ...); ``patient_id`` is dropped.
        extra: ``source_*`` / ``slice_indices`` / ``true_maps`` datasets and ``source_*`` attrs, if present.
        multicoil: whether ``kspace`` had a coil axis in the file.
        padding: ``(left, right)`` phase-encode columns holding data, computed as fastMRI does from
            ``encodingLimits/kspace_encoding_step_1``: ``left = enc_y // 2 - center``,
            ``right = left + maximum + 1``; None without those header fields.
        encoded_size: ``encoding/encodedSpace/matrixSize`` (x, y), or None.
        target_key: the dataset the target came from, or None.
        maps: precomputed coil sensitivities ``(slices, coils, H, W)`` complex64 from a ``sens_maps`` /
            ``coil_maps`` dataset, or None (then ESPIRiT estimates them from the calibration region).
        pixel_mm: in-plane pixel size ``(x, y)`` of the reconstructed image in mm
            (``reconSpace`` field of view / matrix size), or None without those header fields.
    """

    kspace: np.ndarray
    mask: np.ndarray | None
    target: np.ndarray | None
    recon_size: tuple[int, int]
    attrs: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    multicoil: bool = True
    padding: tuple[int, int] | None = None
    encoded_size: tuple[int, int] | None = None
    target_key: str | None = None
    maps: np.ndarray | None = None
    pixel_mm: tuple[float, float] | None = None

    @property
    def num_slices(self) -> int:
        return int(self.kspace.shape[0])

    @property
    def num_coils(self) -> int:
        return int(self.kspace.shape[1])

    def __repr__(self) -> str:
        target = None if self.target is None else tuple(self.target.shape)
        mask = None if self.mask is None else f"{int(self.mask.sum())}/{self.mask.size} lines"
        return (
            f"FastMRIVolume(kspace={tuple(self.kspace.shape)} {self.kspace.dtype}, mask={mask}, "
            f"target={target}, recon_size={self.recon_size}, multicoil={self.multicoil}, "
            f"padding={self.padding}, attrs={self.attrs}, extra={sorted(self.extra)})"
        )


# ----------------------------------------------------------------------------- reading


def _plain(value: Any) -> Any:
    """h5py attr/dataset value -> plain Python (bytes decoded, numpy scalars unwrapped)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, np.ndarray) and value.dtype.kind in "SO":
        return [_plain(v) for v in value.tolist()]
    return value


def scalar_string_bytes(ds: h5py.Dataset) -> bytes:
    """The bytes of a one-element string dataset (fixed-length, variable-length or object, any shape)."""
    value = ds[()]
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0]
    if isinstance(value, str):
        value = value.encode("utf-8")
    return bytes(value)


def _header_text(f: h5py.File, name: str) -> bytes | None:
    if "ismrmrd_header" not in f:
        return None
    ds = f["ismrmrd_header"]
    if not isinstance(ds, h5py.Dataset) or ds.size != 1 or ds.dtype.kind not in "SOU":
        raise InputError(f"{name}: ismrmrd_header is not a single XML string; rewrite the file's header")
    if ds.dtype.itemsize > _MAX_HEADER_BYTES:  # fixed-length strings: the size is known before reading
        raise InputError(f"{name}: ismrmrd_header is larger than 16 MiB; this is not a fastMRI header")
    value = scalar_string_bytes(ds)
    if len(value) > _MAX_HEADER_BYTES:
        raise InputError(f"{name}: ismrmrd_header is larger than 16 MiB; this is not a fastMRI header")
    return value


def _xml_float(root: Any, path: str) -> float | None:
    node = root.find("/".join("{*}" + part for part in path.split("/")))
    if node is None or node.text is None:
        return None
    try:
        v = float(node.text.strip())
    except ValueError:  # "abc": treat the field as absent, like "nan" and "inf" below
        return None
    return v if np.isfinite(v) else None


def _xml_int(root: Any, path: str) -> int | None:
    v = _xml_float(root, path)
    return None if v is None else int(v)


def _parse_header(xml: bytes, name: str) -> dict[str, Any]:
    """Recon size, encoded size, padding and recon pixel size from an ISMRMRD XML header (defusedxml-parsed)."""
    try:
        root = DET.fromstring(xml)
    except (DET.ParseError, defusedxml.DefusedXmlException) as exc:
        raise InputError(f"{name}: ismrmrd_header is not valid or safe XML ({type(exc).__name__})") from exc
    rx, ry = _xml_int(root, "encoding/reconSpace/matrixSize/x"), _xml_int(root, "encoding/reconSpace/matrixSize/y")
    ex, ey = _xml_int(root, "encoding/encodedSpace/matrixSize/x"), _xml_int(root, "encoding/encodedSpace/matrixSize/y")
    center = _xml_int(root, "encoding/encodingLimits/kspace_encoding_step_1/center")
    maximum = _xml_int(root, "encoding/encodingLimits/kspace_encoding_step_1/maximum")
    out: dict[str, Any] = {"recon_size": None, "encoded_size": None, "padding": None, "pixel_mm": None}
    if rx and ry and rx > 0 and ry > 0:
        out["recon_size"] = (rx, ry)
        fx = _xml_float(root, "encoding/reconSpace/fieldOfView_mm/x")
        fy = _xml_float(root, "encoding/reconSpace/fieldOfView_mm/y")
        if fx and fy and fx > 0 and fy > 0:
            out["pixel_mm"] = (fx / rx, fy / ry)
    if ex and ey and ex > 0 and ey > 0:
        out["encoded_size"] = (ex, ey)
    if ey and center is not None and maximum is not None:
        left = ey // 2 - center  # fastMRI mri_data.py: padding_left = enc_size[1] // 2 - enc_limits_center
        out["padding"] = (left, left + maximum + 1)
    return out


def _check_kspace(f: h5py.File, name: str) -> h5py.Dataset:
    if "kspace" not in f or not isinstance(f["kspace"], h5py.Dataset):
        raise InputError(f"{name} has no 'kspace' dataset; give a fastMRI k-space file (not a target or submission)")
    ds = f["kspace"]
    if ds.ndim not in (3, 4):
        raise InputError(f"{name}: kspace has {ds.ndim} dimensions (shape {ds.shape}); expected (slices, coils, H, W) "
                         "or (slices, H, W)")
    if ds.dtype.kind != "c":
        raise InputError(f"{name}: kspace has dtype {ds.dtype}; expected complex k-space")
    if min(ds.shape) < 1:
        raise InputError(f"{name}: kspace has an empty axis {ds.shape}")
    return ds


def _selected(n: int, sel: slice) -> int:
    """How many of ``n`` slices ``sel`` keeps (for the memory check before reading)."""
    return len(range(*sel.indices(n)))


def _check_read_size(ds: h5py.Dataset, sel: slice, itemsize: int, what: str, name: str) -> None:
    shape = (_selected(int(ds.shape[0]), sel), *ds.shape[1:]) if ds.ndim else ()
    check_size(nbytes_of(shape, itemsize), f"{what} {tuple(ds.shape)}", name)


def _read_mask(f: h5py.File, name: str, width: int) -> np.ndarray | None:
    if "mask" not in f:
        return None
    ds = f["mask"]
    if not isinstance(ds, h5py.Dataset) or ds.shape != (width,):
        shape = getattr(ds, "shape", None)
        raise InputError(f"{name}: mask has shape {shape}; expected ({width},), one entry per k-space column")
    if ds.dtype.kind not in "biuf":
        raise InputError(f"{name}: mask has dtype {ds.dtype}; expected booleans or numbers (1 = sampled column)")
    return np.asarray(ds[()]) != 0


def _read_target(f: h5py.File, name: str, multicoil: bool, num_slices: int, sel: slice) -> tuple:
    order = ["reconstruction_rss", "reconstruction_esc"] if multicoil else ["reconstruction_esc", "reconstruction_rss"]
    for key in order:
        if key in f:
            ds = f[key]
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 3 or ds.shape[0] != num_slices:
                raise InputError(f"{name}: {key} has shape {getattr(ds, 'shape', None)}; expected ({num_slices}, h, w)")
            if ds.dtype.kind not in "fiu":
                raise InputError(f"{name}: {key} has dtype {ds.dtype}; expected a real image")
            _check_read_size(ds, sel, 4, key, name)
            # astype: HDF5 converts while reading, so memory is float32-sized whatever the stored type.
            return np.asarray(ds.astype(np.float32)[sel]), key
    return None, None


def _read_maps(f: h5py.File, name: str, kspace_shape: tuple[int, ...], sel: slice) -> np.ndarray | None:
    """Precomputed coil maps, which must match the k-space's coils and matrix (checked before reading)."""
    key = next((k for k in MAPS_KEYS if k in f), None)
    if key is None:
        return None
    ds = f[key]
    s, c, h, w = kspace_shape
    shape = getattr(ds, "shape", None)
    if not isinstance(ds, h5py.Dataset) or shape not in ((s, c, h, w), (c, h, w)):
        raise InputError(f"{name}: coil maps '{key}' have shape {shape} but the k-space is {kspace_shape} "
                         f"(slices, coils, H, W); the maps must be ({c}, {h}, {w}) or ({s}, {c}, {h}, {w}): "
                         f"recompute them for this k-space or delete the '{key}' dataset")
    if ds.dtype.kind != "c":
        raise InputError(f"{name}: coil maps '{key}' have dtype {ds.dtype}; expected complex sensitivities")
    if ds.ndim == 3:
        check_size(nbytes_of((c, h, w), 8), f"coil maps {shape}", name)
        maps = np.asarray(ds[()], dtype=np.complex64)
        return np.ascontiguousarray(np.broadcast_to(maps, (_selected(s, sel), c, h, w)))
    _check_read_size(ds, sel, 8, "coil maps", name)
    return np.asarray(ds.astype(np.complex64)[sel])


def _read_attrs_extra(f: h5py.File, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    attrs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in f.attrs.items():
        if is_identifying_attr(key):
            continue  # patient_id & co never leave this function
        (extra if key.startswith("source_") else attrs)[key] = _plain(value)
    for key, obj in f.items():
        if _is_extra_key(key) and isinstance(obj, h5py.Dataset):
            check_size(nbytes_of(obj.shape, obj.dtype.itemsize), f"dataset {key!r} {obj.shape}", name)
            value = obj[()]
            extra[key] = _plain(value) if not isinstance(value, np.ndarray) or value.dtype.kind in "SO" else value
    return attrs, extra


def _default_recon_size(h: int, w: int, target: np.ndarray | None) -> tuple[int, int]:
    if target is not None:
        return int(target.shape[-2]), int(target.shape[-1])
    if h >= 320 and w >= 320:
        return 320, 320
    return h, w


def read_fastmri(path: str | os.PathLike, slices: slice | None = None) -> FastMRIVolume:
    """Read a fastMRI k-space file (multicoil or single-coil; train/val/test).

    Every array's size is computed from its HDF5 shape and checked against ``MEDRECON_MAX_GB``
    (:func:`medrecon.io.guards.check_size`) before it is read.

    Args:
        path: the ``.h5`` file.
        slices: optional slice selection applied to kspace, target and coil maps (default: all).

    Raises:
        InputError: not HDF5, truncated, no/invalid ``kspace``, bad mask/target/maps/header, or an
            array larger than the memory cap.
    """
    path = require_hdf5(path, "fastMRI", "a fastMRI .h5 k-space file")
    name = path.name
    sel = slice(None) if slices is None else slices
    # memory_limit: a corrupted variable-length heap (header string, attrs) makes HDF5 itself allocate
    # whatever size the file claims; the limit turns that into a failed read instead of an exhausted machine.
    with reader_errors(name, "fastMRI HDF5"), memory_limit():
        try:
            with h5py.File(path, "r") as f:
                ds = _check_kspace(f, name)
                multicoil = ds.ndim == 4
                h, w = int(ds.shape[-2]), int(ds.shape[-1])
                _check_read_size(ds, sel, 8, "kspace", name)  # stored as complex64 in memory
                mask = _read_mask(f, name, w)
                header = _header_text(f, name)
                hdr = _parse_header(header, name) if header is not None else {}
                target, target_key = _read_target(f, name, multicoil, int(ds.shape[0]), sel)
                full = tuple(int(d) for d in ds.shape) if multicoil else (int(ds.shape[0]), 1, h, w)
                maps = _read_maps(f, name, full, sel)
                attrs, extra = _read_attrs_extra(f, name)
                kspace = np.asarray(ds.astype(np.complex64)[sel])
        except (OSError, KeyError, TypeError) as exc:  # h5py: damaged/truncated files, broken links
            raise InputError(f"cannot read {name}; the HDF5 file is damaged or truncated "
                             f"({type(exc).__name__})") from exc
    if not multicoil:
        kspace = kspace[:, None]
    recon_size = hdr.get("recon_size") or _default_recon_size(h, w, target)
    return FastMRIVolume(
        kspace=kspace,
        mask=mask,
        target=target,
        recon_size=recon_size,
        attrs=attrs,
        extra=extra,
        multicoil=multicoil,
        padding=hdr.get("padding"),
        encoded_size=hdr.get("encoded_size"),
        target_key=target_key,
        maps=maps,
        pixel_mm=hdr.get("pixel_mm"),
    )


# ----------------------------------------------------------------------------- writing


def _check_attrs(attrs: dict[str, Any] | None) -> dict[str, Any]:
    attrs = dict(attrs or {})
    for key in attrs:
        if is_identifying_attr(key):
            raise InputError(f"attr '{key}' may identify a patient; medrecon does not write such attrs")
    return attrs


def _write_attrs(f: h5py.File, attrs: dict[str, Any]) -> None:
    from medrecon.io.privacy import scrub_text

    for key, value in attrs.items():
        if value is None:
            continue
        # text attrs (a source file name) pass the privacy layer: a file name may repeat a patient's ID
        f.attrs[key] = scrub_text(value) if isinstance(value, str) else value


def write_reconstruction(
    path: str | os.PathLike,
    recon: np.ndarray,
    std: np.ndarray | None = None,
    attrs: dict[str, Any] | None = None,
) -> Path:
    """Write a fastMRI submission file atomically: dataset ``reconstruction`` (+ optional ``std``).

    Shapes:
        recon, std: ``(slices, h, w)`` real; stored as float32.
    """
    recon = np.asarray(recon)
    if recon.ndim != 3 or np.iscomplexobj(recon):
        raise InputError(
            f"reconstruction has shape {recon.shape} and dtype {recon.dtype}; expected real (slices, h, w)"
        )
    if std is not None:
        std = np.asarray(std)
        if std.shape != recon.shape or np.iscomplexobj(std):
            raise InputError(f"std has shape {std.shape}; expected the reconstruction's shape {recon.shape}")
    require_finite(recon, "the reconstruction")
    if std is not None:
        require_finite(std, "the posterior std map")
    attrs = _check_attrs(attrs)
    path = Path(path)
    with atomic_write(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("reconstruction", data=recon.astype(np.float32, copy=False))
        if std is not None:
            f.create_dataset("std", data=std.astype(np.float32, copy=False))
        _write_attrs(f, attrs)
    return path


def minimal_ismrmrd_header(kspace_hw: tuple[int, int], recon_size: tuple[int, int], num_slices: int = 1) -> str:
    """A minimal ISMRMRD XML header with the fields fastMRI reads.

    encodedSpace matrixSize = ``(H, W, 1)``, reconSpace matrixSize = ``(h, w, 1)``, Cartesian
    trajectory, ``kspace_encoding_step_1`` limits ``0..W-1`` with centre ``W // 2`` (so the
    fastMRI padding is ``(0, W)``). Field of view is given as 1 mm per sample and the resonance
    frequency as 0 (unknown): the schema requires both.
    """
    ex, ey = (int(v) for v in kspace_hw)
    rx, ry = (int(v) for v in recon_size)

    def limit(name: str, maximum: int) -> str:
        return f"<{name}><minimum>0</minimum><maximum>{maximum}</maximum><center>{(maximum + 1) // 2}</center></{name}>"

    def space(tag: str, x: int, y: int) -> str:
        return (
            f"<{tag}><matrixSize><x>{x}</x><y>{y}</y><z>1</z></matrixSize>"
            f"<fieldOfView_mm><x>{x}</x><y>{y}</y><z>1</z></fieldOfView_mm></{tag}>"
        )

    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
        "<experimentalConditions><H1resonanceFrequency_Hz>0</H1resonanceFrequency_Hz></experimentalConditions>"
        "<encoding>"
        f"{space('encodedSpace', ex, ey)}{space('reconSpace', rx, ry)}"
        "<encodingLimits>"
        f"{limit('kspace_encoding_step_1', ey - 1)}{limit('kspace_encoding_step_2', 0)}"
        f"{limit('slice', max(int(num_slices) - 1, 0))}"
        "</encodingLimits><trajectory>cartesian</trajectory></encoding></ismrmrdHeader>"
    )


def _validate_kspace_inputs(kspace, target, mask, extra) -> tuple:
    kspace = np.asarray(kspace)
    if kspace.ndim not in (3, 4) or not np.iscomplexobj(kspace):
        raise InputError(
            f"kspace has shape {kspace.shape} and dtype {kspace.dtype}; expected complex (slices, [coils,] H, W)"
        )
    s, w = kspace.shape[0], kspace.shape[-1]
    if target is not None:
        target = np.asarray(target)
        if target.ndim != 3 or target.shape[0] != s or np.iscomplexobj(target):
            raise InputError(f"target has shape {target.shape}; expected real ({s}, h, w)")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != (w,):
            raise InputError(f"mask has shape {mask.shape}; expected ({w},), one entry per k-space column")
    extra = dict(extra or {})
    for key in extra:
        if not _is_extra_key(key) or key in _RESERVED:
            raise InputError(f"extra dataset '{key}' must be named source_*, slice_indices or true_maps")
    return kspace, target, mask, extra


def write_fastmri_kspace(
    path: str | os.PathLike,
    kspace: np.ndarray,
    target: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    header_xml: str | bytes | None = None,
    attrs: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    recon_size: tuple[int, int] | None = None,
) -> Path:
    """Write a fastMRI-layout k-space file atomically (used by ``simulate`` and tests).

    The target is stored as ``reconstruction_rss`` for multicoil k-space (4-D) and as
    ``reconstruction_esc`` for single-coil k-space (3-D), as fastMRI does. Without
    ``header_xml`` a :func:`minimal_ismrmrd_header` is written whose reconSpace is
    ``recon_size``, else the target's shape, else the :class:`FastMRIVolume` default.

    Shapes:
        kspace: ``(slices, coils, H, W)`` or ``(slices, H, W)`` complex; stored as complex64.
        target: ``(slices, h, w)`` real; stored as float32. mask: ``(W,)``; stored as bool.
    """
    kspace, target, mask, extra = _validate_kspace_inputs(kspace, target, mask, extra)
    attrs = _check_attrs(attrs)
    h, w = kspace.shape[-2:]
    if header_xml is None:
        size = recon_size or _default_recon_size(h, w, target)
        header_xml = minimal_ismrmrd_header((h, w), size, kspace.shape[0])
    if isinstance(header_xml, str):
        header_xml = header_xml.encode("utf-8")
    path = Path(path)
    with atomic_write(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("kspace", data=kspace.astype(np.complex64, copy=False))
        if target is not None:
            key = TARGET_KEYS[kspace.ndim == 4]
            f.create_dataset(key, data=target.astype(np.float32, copy=False))
        if mask is not None:
            f.create_dataset("mask", data=mask != 0)
        f.create_dataset("ismrmrd_header", data=np.bytes_(header_xml))
        for key, value in extra.items():
            f.create_dataset(key, data=value)
        _write_attrs(f, attrs)
    return path
