"""Run records: ``<output>.run.json`` saying how an output was made, without identifying anyone.

A record holds the medrecon version, a UTC timestamp, the command line, method, parameters,
prior (name + sha256), seeds, device, wall time, network evaluations, metrics, and the sha256 of
every input and output (file or folder). Hospital folder layouts put patient names and IDs in
paths, so only base names are stored (also inside the command line), and every string in the
record is scrubbed of identifiers found in the inputs themselves (DICOM PatientName/PatientID/
birth date, ISMRMRD ``subjectInformation``, identifying fastMRI attrs) plus any the caller plants.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from medrecon.errors import InputError
from medrecon.io.atomic import atomic_write
from medrecon.io.fastmri import is_identifying_attr
from medrecon.io.privacy import REMOVED

__all__ = ["RECORD_SUFFIX", "arg_basename", "identifiers_in", "record_path", "scrub_identifiers", "sha256_path", "write_run_record"]

RECORD_SUFFIX = ".run.json"
#: The run record's ``replay`` field: the command keeps base names only (folders often name a patient).
REPLAY_NOTE = ("command paths are base names (folders may name a patient): to replay, put each input's "
               "full path back (inputs[].sha256 identifies the file) and run with the same medrecon version, "
               "seeds and prior sha256")
_MIN_PLANTED = 3  # shorter strings ("J", "12") would blank out unrelated text
_CHUNK = 1 << 20


# ----------------------------------------------------------------------------- hashing


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def sha256_path(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a folder as the sha256 of its ``sha256sum``-style manifest.

    The manifest lists ``<sha256>  <relative posix path>`` for every file below the folder,
    sorted by path, so the digest depends on names and contents but not on timestamps or the
    order the file system lists them in.
    """
    path = Path(path)
    if path.is_file():
        return _sha256_file(path)
    if not path.is_dir():
        raise InputError(f"cannot hash {path.name}: it does not exist")
    files = sorted((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.relative_to(path).as_posix())
    manifest = "".join(f"{_sha256_file(p)}  {p.relative_to(path).as_posix()}\n" for p in files)
    return hashlib.sha256(manifest.encode("utf-8")).hexdigest()


def _describe(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise InputError(f"run record: {path.name} does not exist; record only files that were read or written")
    entry: dict[str, Any] = {"file": path.name, "kind": "folder" if path.is_dir() else "file"}
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file()]
        entry["files"], entry["bytes"] = len(files), sum(p.stat().st_size for p in files)
    else:
        entry["bytes"] = path.stat().st_size
    entry["sha256"] = sha256_path(path)
    return entry


# ----------------------------------------------------------------------------- identifiers


def _identifiers_in(path: str | os.PathLike) -> list[str]:
    """Patient identifiers stored in an input (DICOM, ISMRMRD/fastMRI HDF5), to scrub them."""
    from medrecon.io.sandbox import isolated

    path = Path(path)
    try:
        # Isolated like the readers: this also runs on the error path, on the very file that failed.
        found = isolated(_identifiers_in_unchecked, path, name=path.name, what="input")
        return [str(v) for v in found] if isinstance(found, list) else []
    except Exception:  # noqa: BLE001 - an unreadable input has no identifiers we could know of
        return []


def _identifiers_in_unchecked(path: Path) -> list[str]:
    from medrecon.io import formats
    from medrecon.io.formats.hdf5 import hdf5_identifiers

    probe = formats.Probe(path)
    try:
        spec = formats.detect(path, probe)
    except InputError:
        # Not a file medrecon reads; an HDF5 file of another layout may still carry identifying attrs.
        return hdf5_identifiers(path) if probe.is_file and probe.is_hdf5 else []
    return spec.identifiers(path) if spec.identifiers else []


def identifiers_in(path: str | os.PathLike) -> list[str]:
    """Patient identifiers (names and their parts, IDs, birth dates) stored in an input file or folder.

    DICOM PatientName/PatientID/birth date/other IDs/accession number, ISMRMRD ``subjectInformation``
    and identifying fastMRI attrs. Unreadable inputs give ``[]``. Used to scrub run records and,
    by the CLI, any error or warning text before it is printed.
    """
    return _identifiers_in(path)


def _planted_pattern(planted: Iterable[str]) -> re.Pattern[str] | None:
    values = sorted({str(p) for p in planted if len(str(p).strip()) >= _MIN_PLANTED}, key=len, reverse=True)
    if not values:
        return None
    return re.compile("|".join(re.escape(v) for v in values), re.IGNORECASE)  # longest first


def _scrub(obj: Any, pattern: re.Pattern[str] | None, drop_keys: bool) -> Any:
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            key = str(key)
            if drop_keys and is_identifying_attr(key):
                continue
            out[_scrub(key, pattern, False)] = _scrub(value, pattern, drop_keys)
        return out
    if isinstance(obj, (list, tuple, set)):
        return [_scrub(v, pattern, drop_keys) for v in obj]
    if isinstance(obj, np.ndarray):
        return _scrub(obj.tolist(), pattern, drop_keys)
    if isinstance(obj, np.generic):
        return _scrub(obj.item(), pattern, drop_keys)
    if isinstance(obj, bool) or obj is None or isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None  # JSON has no NaN/Inf
    if isinstance(obj, os.PathLike):
        obj = Path(obj).name  # a path may name the patient's folder: keep the base name only
    text = obj if isinstance(obj, str) else str(obj)
    return pattern.sub(REMOVED, text) if pattern is not None else text


def scrub_identifiers(obj: Any, planted: Iterable[str] = ()) -> Any:
    """A JSON-ready copy of ``obj`` without identifying keys or planted strings.

    Keys that look identifying (:func:`medrecon.io.fastmri.is_identifying_attr`: anything with
    patient, name, birth, dob, accession, mrn, subject, ... in it) are dropped with their values,
    at any depth. Every occurrence of a ``planted`` string (case-insensitive; strings shorter than
    3 characters are ignored) in keys and values is replaced by ``"[removed]"``. Paths become
    their base names, numpy values plain Python, NaN/Inf None, other objects their ``str``.
    """
    return _scrub(obj, _planted_pattern(planted), drop_keys=True)


# ----------------------------------------------------------------------------- record


def arg_basename(arg: str) -> str:
    """``/data/Doe_John/x.h5`` -> ``x.h5``; ``--out=/a/b.h5`` -> ``--out=b.h5``; others unchanged."""
    head, sep, value = arg.partition("=") if arg.startswith("-") else ("", "", arg)
    if "/" in value or "\\" in value:
        value = re.split(r"[\\/]+", value.rstrip("\\/"))[-1]
    return f"{head}{sep}{value}"


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": sys.platform}
    for package in ("torch", "numpy", "monai"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return out


def _prior_entry(prior: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if prior is None:
        return None
    # The prior's own "name" is not a person's name: keep whitelisted fields, not key-scrubbed.
    keep = ("name", "sha256", "version", "modality", "scale_warning")  # the warning is our own text: sizes in mm
    return {k: (Path(v).name if isinstance(v, os.PathLike) else v) for k, v in prior.items() if k in keep}


def record_path(output_path: str | os.PathLike) -> Path:
    """``out/recon.h5`` -> ``out/recon.h5.run.json`` (a folder output gets a sibling file)."""
    path = Path(output_path)
    return path.with_name(path.name + RECORD_SUFFIX)


def write_run_record(
    output_path: str | os.PathLike,
    *,
    command: list[str],
    inputs: list[str | os.PathLike],
    outputs: list[str | os.PathLike],
    method: str,
    params: Mapping[str, Any],
    prior: Mapping[str, Any] | None,
    seeds: Mapping[str, Any],
    device: str,
    seconds: float,
    nfe: int | None = None,
    metrics: Mapping[str, Any] | None = None,
    planted: Iterable[str] = (),
    data_misfit: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``<output_path>.run.json`` atomically and return its path.

    Args:
        output_path: the main output (file or folder); the record is written next to it.
        command: the command line (``sys.argv``); path arguments are reduced to base names.
        inputs, outputs: files or folders read / written; stored as base name, kind, size and
            sha256 (folders: :func:`sha256_path`). They must exist.
        method: sampler or baseline name (``"dps"``, ``"dds"``, ``"sense-cg"``, ...).
        params: method parameters; identifying keys are dropped (:func:`scrub_identifiers`).
        prior: ``{"name", "sha256"[, "version", "modality", "scale_warning"]}`` or None for non-learned methods.
        seeds: every seed used (docs/design.md: the run record stores the seeds).
        device: e.g. ``"cuda:0 (NVIDIA H100)"`` or ``"cpu"``.
        seconds: wall time. nfe: network evaluations, or None. metrics: optional metric values.
        planted: extra strings to remove everywhere (e.g. known patient names).
        data_misfit: how well the output explains its own measurement
            (:func:`medrecon.recon.result.misfit_record`), or None where the method's output cannot be put
            through the forward operator (MRI classical methods return magnitudes).

    Returns:
        The record's path.
    """
    import medrecon

    from medrecon.io import privacy

    found = [s for p in inputs for s in _identifiers_in(p)]
    # every identifier read in this run, not only this study's: a batch names its other studies' folders too
    pattern = _planted_pattern([*planted, *found, *privacy.known()])
    record = {
        "medrecon_version": medrecon.__version__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "output": Path(output_path).name,
        "command": [arg_basename(str(a)) for a in command],
        # Issue 25: say why the command cannot be pasted back as it stands, and what replays it.
        "replay": REPLAY_NOTE,
        "method": method,
        "params": scrub_identifiers(params),
        "prior": _prior_entry(prior),
        "seeds": scrub_identifiers(seeds),
        "device": device,
        "seconds": float(seconds),
        "nfe": None if nfe is None else int(nfe),
        "metrics": None if metrics is None else scrub_identifiers(metrics),
        "data_misfit": None if data_misfit is None else scrub_identifiers(data_misfit),
        "environment": _versions(),
    }
    record = _scrub(record, pattern, drop_keys=False)  # planted strings anywhere, incl. names and command
    # Hashes are added after scrubbing: a hex digest is not text to redact.
    record["inputs"] = [_with_hash(_describe(p), pattern) for p in inputs]
    record["outputs"] = [_with_hash(_describe(p), pattern) for p in outputs]
    text = json.dumps(record, indent=2, allow_nan=False, ensure_ascii=False) + "\n"
    path = record_path(output_path)
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _with_hash(entry: dict[str, Any], pattern: re.Pattern[str] | None) -> dict[str, Any]:
    digest = entry.pop("sha256")
    entry = _scrub(entry, pattern, drop_keys=False)
    entry["sha256"] = digest
    return entry
