"""What the HDF5 formats (fastMRI, ISMRMRD, medrecon sinograms) share: image reading and identifier fields.

All three are recognised by their dataset names (:meth:`~.base.Probe.h5_names`), never by the ``.h5``
suffix. Identifiers: attributes whose names say they identify someone (``patient_id`` and the like,
:func:`medrecon.io.fastmri.is_identifying_attr`) and the ISMRMRD XML header's ``subjectInformation``
(in ``/dataset/xml`` for raw data, ``ismrmrd_header`` in fastMRI files).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medrecon.errors import InputError

from .base import name_parts

__all__ = ["hdf5_identifiers", "read_h5_image", "ismrmrd_subject"]

_MAX_XML = 16 * 2**20
# subjectInformation's fields plus studyInformation's accessionNumber (ISMRMRD schema; fastMRI headers use it too)
_ISMRMRD_ID_TAGS = ("patientName", "patientID", "patientBirthdate", "accessionNumber", "referringPhysicianName")
_H5_IMAGE_KEYS = ("reconstruction", "reconstruction_rss", "reconstruction_esc")


def read_h5_image(path: Path, modality: str | None):
    """A fastMRI-layout reconstruction or target ``(slices, h, w)`` as a :class:`~medrecon.io.volumes.Volume`."""
    import h5py

    from medrecon.io.guards import check_size, memory_limit, nbytes_of
    from medrecon.io.volumes import Volume, volume_kind

    try:
        with memory_limit(), h5py.File(path, "r") as f:
            key = next((k for k in _H5_IMAGE_KEYS if k in f), None)
            if key is None:
                hint = "it holds k-space: reconstruct it first" if "kspace" in f else "no image dataset found"
                raise InputError(f"{path.name} has no {'/'.join(_H5_IMAGE_KEYS)} dataset; {hint}")
            ds = f[key]
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 3 or ds.dtype.kind not in "fiu":
                raise InputError(f"{path.name}:{key} has shape {getattr(ds, 'shape', None)}; expected real "
                                 "(slices, h, w)")
            check_size(nbytes_of(ds.shape, 4), f"{key} {ds.shape}", path.name)
            data = np.asarray(ds.astype(np.float32)[()])
    except OSError as exc:
        raise InputError(f"cannot read {path.name}; the HDF5 file is damaged or truncated") from exc
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise InputError(f"cannot read {path.name} ({type(exc).__name__}); the HDF5 file is damaged") from exc
    meta = {"format": "hdf5", "dataset": key}
    return Volume(data, np.eye(4), (1.0, 1.0, 1.0), modality, volume_kind(modality), meta, path, None)


def hdf5_identifiers(path: Path) -> list[str]:
    """Identifying attributes and ISMRMRD subject fields of an HDF5 file (``[]`` if it cannot be read)."""
    import h5py

    from medrecon.io.fastmri import is_identifying_attr
    from medrecon.io.guards import memory_limit

    found: list[str] = []
    xmls: list[bytes] = []
    try:
        with memory_limit(), h5py.File(path, "r") as f:
            for key, value in f.attrs.items():
                if is_identifying_attr(key) and isinstance(value, (str, bytes)):
                    found += name_parts(value.decode("utf-8", "replace") if isinstance(value, bytes) else value)
            # ISMRMRD raw data keeps its header in /dataset/xml; fastMRI files keep the same XML (with
            # subjectInformation when a converter kept it) in ismrmrd_header.
            for key in ("dataset/xml", "ismrmrd_header"):
                text = _xml_text(f, key)
                if text:
                    xmls.append(text)
    except Exception:  # noqa: BLE001 - unreadable input: nothing (more) to collect; the reader reports it
        return found
    for xml in xmls:
        found += ismrmrd_subject(xml)
    return found


def _xml_text(f, key: str) -> bytes | None:
    import h5py

    from medrecon.io.fastmri import scalar_string_bytes

    ds = f.get(key)
    if not isinstance(ds, h5py.Dataset) or ds.size != 1 or ds.dtype.kind not in "SOU" or ds.dtype.itemsize > _MAX_XML:
        return None
    value = scalar_string_bytes(ds)
    return value if len(value) <= _MAX_XML else None


def ismrmrd_subject(xml: bytes) -> list[str]:
    """Identifying fields (patientName, patientID, patientBirthdate, accessionNumber, ...) of an ISMRMRD XML header."""
    import defusedxml.ElementTree as DET

    try:
        root = DET.fromstring(xml)
    except Exception:  # noqa: BLE001 - a broken or unsafe header holds nothing we could parse out
        return []
    found: list[str] = []
    for node in root.iter():
        if isinstance(node.tag, str) and node.tag.rsplit("}", 1)[-1] in _ISMRMRD_ID_TAGS and node.text \
                and node.text.strip():
            found += name_parts(node.text.strip())
    return found
