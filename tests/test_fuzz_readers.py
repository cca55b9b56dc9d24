"""Property-based and fuzz tests of every reader (issue 7): hostile bytes give MedreconError or a valid result.

For random bytes behind each format's magic, truncations of tiny valid files, random HDF5 shapes and
dtypes, random numpy arrays and axis orders, random DICOM/NIfTI/BART headers and random CT geometry,
the reader a user reaches (:func:`medrecon.testing.fuzzing.exercise`: ``load_input`` plus a zero-filled or
FBP reconstruction, or ``load_volume``) must either return a valid, finite result or raise
:class:`~medrecon.errors.MedreconError`: never another exception type, and never a hang (each
example runs under :func:`medrecon.testing.fuzzing.time_limit`). Examples are derandomized so CI is
repeatable; ``benchmarks/fuzz.py`` explores randomly for longer (see docs/security.md).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medrecon.errors import MedreconError
from medrecon.testing import samples
from medrecon.testing.fuzzing import exercise, fuzz_environment, make_seed, seed_files, time_limit, truncations
from medrecon.testing.samples import SEEDS

EXAMPLE_SECONDS = 20  # generous: a hang is minutes; a slow CI core is a few seconds at worst
FUZZ = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def _one_thread_small_cap():
    """One thread, a 0.25 GiB cap, and in-process parsing (forking per example is ~10x slower; the forked
    isolation itself is tested in tests/test_hostile_inputs.py and used by benchmarks/fuzz.py)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with fuzz_environment(0.25, read_timeout=0):
        yield
    torch.set_num_threads(n)


def clean(fn, *args):
    """``fn(*args)`` or None when it refused with MedreconError; anything else propagates (a bug)."""
    with time_limit(EXAMPLE_SECONDS):
        try:
            return fn(*args)
        except MedreconError as exc:
            assert str(exc).strip() and "\n" not in str(exc).strip(), repr(exc)  # one-line message
            return None


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    root = tmp_path_factory.mktemp("seeds")
    return {kind: make_seed(kind, root / kind) for kind in SEEDS}


# ----------------------------------------------------------------------------- truncations


@pytest.mark.parametrize("kind", list(SEEDS))
def test_truncation_at_dense_points_of_every_seed(kind, seeds, tmp_path):
    """Every byte of the first 256 (magic and headers) and 300 more points spread over each file.

    (``benchmarks/fuzz.py`` cuts at every byte.) The untruncated seed must be accepted.
    """
    seed = seeds[kind]
    reader_kind = SEEDS[kind][1]
    assert clean(exercise, seed, reader_kind) is not None, "the seed itself must be valid"
    for f in seed_files(seed):
        data = f.read_bytes()
        for cut in truncations(len(data), dense_head=256, n_tail=300):
            case = tmp_path / f"{f.name}-cut{cut}"
            case.mkdir()
            for g in seed_files(seed):
                (case / g.name).write_bytes(data[:cut] if g.name == f.name else g.read_bytes())
            clean(exercise, case / seed.name, reader_kind)


# ----------------------------------------------------------------------------- random bytes

MAGICS = {
    "x.h5": b"\x89HDF\r\n\x1a\n",
    "x.dcm": b"\0" * 128 + b"DICM",
    "x.nii": b"\x5c\x01\0\0" + b"\0" * 340 + b"n+1\0",
    "x.nii.gz": b"\x1f\x8b\x08\x00",
    "x.nrrd": b"NRRD0004\n",
    "x.npy": b"\x93NUMPY\x01\x00",
    "x.npz": b"PK\x03\x04",
    "x.bin": b"",
}


@FUZZ
@given(name=st.sampled_from(sorted(MAGICS)), body=st.binary(max_size=2048))
def test_random_bytes_behind_every_magic(name, body):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_bytes(MAGICS[name] + body)
        clean(exercise, path, "measurement")
        clean(exercise, path, "image")


@FUZZ
@given(dims=st.lists(st.one_of(st.integers(-3, 70), st.sampled_from([2**31, 2**40, 2**63])), min_size=0, max_size=6),
       garbage=st.sampled_from(["", " x", "\n# Dimensions\n1 2", "\x00"]), size=st.integers(0, 4096))
def test_random_bart_headers(dims, garbage, size):
    with tempfile.TemporaryDirectory() as d:
        base = Path(d) / "k"
        (base.with_suffix(".hdr")).write_text("# Dimensions\n" + " ".join(map(str, dims)) + garbage + "\n")
        (base.with_suffix(".cfl")).write_bytes(np.random.default_rng(size).standard_normal(size // 4, np.float32)
                                               .tobytes())
        clean(exercise, base, "measurement")


# ----------------------------------------------------------------------------- random shapes and dtypes

DTYPES = ["complex64", "complex128", "float32", "float64", "int16", "uint8", "bool", "S4"]
shapes = st.lists(st.integers(0, 9), min_size=0, max_size=5).map(tuple)


def _array(shape, dtype: str, seed: int) -> np.ndarray:
    g = np.random.default_rng(seed)
    real = g.standard_normal(shape) * 10
    if dtype.startswith("complex"):
        return (real + 1j * g.standard_normal(shape)).astype(dtype)
    if dtype == "S4":
        return np.full(shape, b"abcd", dtype="S4")
    return real.astype(dtype)


@FUZZ
@given(k_shape=shapes, k_dtype=st.sampled_from(DTYPES), mask=st.one_of(st.none(), st.tuples(shapes, st.sampled_from(DTYPES))),
       maps=st.one_of(st.none(), st.tuples(shapes, st.sampled_from(DTYPES))), seed=st.integers(0, 3))
def test_random_fastmri_shapes_and_dtypes(k_shape, k_dtype, mask, maps, seed):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.h5"
        with h5py.File(path, "w") as f:
            f["kspace"] = _array(k_shape, k_dtype, seed)
            if mask is not None:
                f["mask"] = _array(mask[0], mask[1], seed + 1)
            if maps is not None:
                f["sens_maps"] = _array(maps[0], maps[1], seed + 2)
        res = clean(exercise, path, "measurement")
        if res is not None:
            assert res.image.shape[0] == k_shape[0] and np.isfinite(res.image).all()


@FUZZ
@given(shape=shapes, dtype=st.sampled_from(DTYPES), axes=st.sampled_from(["SCHW", "HW", "HWC", "CHW", "SHW", "WH",
                                                                           "SCHWX", "HH", ""]),
       seed=st.integers(0, 3), compressed=st.booleans())
def test_random_numpy_kspace(shape, dtype, axes, seed, compressed):
    from medrecon.app.pipeline import load_input

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / ("k.npz" if compressed else "k.npy")
        arr = _array(shape, dtype, seed)
        (np.savez_compressed(path, kspace=arr) if compressed else np.save(path, arr))
        inp = clean(load_input, path, None, axes)
        if inp is not None:
            assert inp.data.ndim == 4 and inp.data.dtype == np.complex64 and np.isfinite(inp.data).all()


BOUNDARY = [0, 1, 2, 3, 7, 8, 12, 16, 32, 64, 65535, 2**31 - 1]


@FUZZ
@given(rows=st.sampled_from(BOUNDARY), cols=st.sampled_from(BOUNDARY), bits=st.sampled_from([1, 8, 12, 16, 32, 64]),
       signed=st.booleans(), spp=st.sampled_from([1, 3]), frames=st.sampled_from([None, 0, 1, 2, 3, 2**31 - 1, "x"]),
       n_bytes=st.integers(0, 3000), slope=st.sampled_from([None, "0", "1e308", "nan", "abc", "2"]),
       syntax=st.sampled_from([None, "rle", "jpeg2000"]))
def test_random_dicom_headers(rows, cols, bits, signed, spp, frames, n_bytes, slope, syntax):
    import pydicom

    with tempfile.TemporaryDirectory() as d:
        path = samples.tiny_dicom(Path(d) / "x.dcm", size=32, transfer_syntax=syntax)
        ds = pydicom.dcmread(path)
        ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored = rows % 65536, cols % 65536, bits, min(bits, 16)
        ds.PixelRepresentation, ds.SamplesPerPixel = int(signed), spp
        # Placeholders of 10 characters, replaced below by the raw (possibly invalid) strings, as a broken
        # scanner or a hostile file would hold them (pydicom refuses to set invalid IS/DS values itself).
        if frames is not None:
            ds.NumberOfFrames = "1234567891"
        if slope is not None:
            ds.RescaleSlope = "2.12345678"
        if syntax is None:
            ds.PixelData = np.random.default_rng(n_bytes).integers(0, 255, n_bytes, np.uint8).tobytes()
        ds.save_as(path)
        raw = path.read_bytes()
        for placeholder, value in ((b"1234567891", frames), (b"2.12345678", slope)):
            if value is not None:
                raw = raw.replace(placeholder, str(value).encode().ljust(10)[:10])
        path.write_bytes(raw)
        clean(exercise, path, "image")


NIFTI_FIELDS = {  # byte offset, numpy type of header fields that size, type or scale the data
    "dim0": (40, "<i2"), "dim1": (42, "<i2"), "dim3": (46, "<i2"), "datatype": (70, "<i2"), "bitpix": (72, "<i2"),
    "pixdim1": (80, "<f4"), "vox_offset": (108, "<f4"), "scl_slope": (112, "<f4"), "srow_x0": (280, "<f4"),
    "sform_code": (254, "<i2"),
}


@FUZZ
@given(field=st.sampled_from(sorted(NIFTI_FIELDS)),
       value=st.sampled_from([0, 1, -1, 7, 16, 64, 255, 512, 1024, 32767, -32768, 1e30, float("nan"), float("inf")]),
       gz=st.booleans())
def test_random_nifti_header_fields(field, value, gz):
    import gzip

    offset, dtype = NIFTI_FIELDS[field]
    with tempfile.TemporaryDirectory() as d:
        nii = samples.tiny_nifti(Path(d) / "x.nii")
        raw = bytearray(nii.read_bytes())
        kind = np.dtype(dtype)
        v = value if kind.kind == "f" else int(np.clip(value, -32768, 32767)) if np.isfinite(value) else 0
        raw[offset : offset + kind.itemsize] = np.array([v], dtype).tobytes()
        target = Path(d) / ("y.nii.gz" if gz else "y.nii")
        target.write_bytes(gzip.compress(bytes(raw)) if gz else bytes(raw))
        clean(exercise, target, "image")


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40),
                                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8)),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                        max_size=4), max_leaves=12)


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(["type", "image_shape", "angles", "n_detectors", "pixel_size",
                                                "detector_spacing", "source_distance", "detector_distance"]),
                               json_values, max_size=3),
       replace_all=st.one_of(st.none(), json_values))
def test_random_ct_geometry(changes, replace_all, seeds):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.h5"
        path.write_bytes(seeds["sinogram"].read_bytes())
        with h5py.File(path, "a") as f:
            geometry = json.loads(f.attrs["geometry"])
            geometry.update(changes)
            f.attrs["geometry"] = json.dumps(replace_all if replace_all is not None else geometry)
        clean(exercise, path, "measurement")


def test_fuzz_runner_smoke(tmp_path):
    """``benchmarks/fuzz.py`` runs end to end and reports no findings (a few seconds on one reader)."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(repo))
    proc = subprocess.run([sys.executable, str(repo / "benchmarks" / "fuzz.py"), "--reader", "bart", "--minutes",
                           "0.1", "--out", str(tmp_path)], capture_output=True, text=True, env=env, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    row = summary["readers"][0]
    assert row["reader"] == "bart" and row["examples"] > 10 and row["bug"] == row["hang"] == 0
