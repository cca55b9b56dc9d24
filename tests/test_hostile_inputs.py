"""Issue 7: hostile files, clear errors, no lost work, no leaked identifiers, safe weights, numerical guards.

One section per bullet of the issue. Every failure goes through the real command line
(:func:`medrecon.cli.main` in-process, or the console script in a subprocess where signals are
involved) and must end as exactly one ``medrecon: error:`` line on stderr, a non-zero exit, no
traceback, and no file left behind. Inputs are tiny synthetic files made in ``tmp_path``
(:mod:`medrecon.testing.samples`), so nothing here needs ../shared/data. Property-based and fuzz tests
are in ``tests/test_fuzz_readers.py``; the long fuzz run is ``benchmarks/fuzz.py``.

Related tests elsewhere (not repeated here): tests/test_cli.py (bad inputs, wrong-modality prior,
cuda), tests/test_batch.py (resume), tests/io/test_fastmri_io.py (atomic writes),
tests/priors/test_bundle.py (tampered weights, bad metadata).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from medrecon.cli import main as cli_main
from medrecon.errors import InputError, MedreconError, PriorError, SamplerDivergedError
from medrecon.testing import samples
from medrecon.testing.samples import PLANTED

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1",
           PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
TINY_NET = {"channels": [16, 32, 32, 32], "norm_num_groups": 8, "num_head_channels": 32}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test of this module runs with one torch thread (see tests/conftest.py)."""


# ----------------------------------------------------------------------------- helpers


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def _run(args, capfd) -> tuple[int, str, str]:
    capfd.readouterr()  # only this command's output counts
    code = cli_main([str(a) for a in args])
    out, err = capfd.readouterr()
    return code, out, err


def assert_one_error(code: int, out: str, err: str, needle: str | None = None) -> str:
    """Exactly one ``medrecon: error:`` line on stderr, a non-zero exit, no traceback anywhere."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0, (out, err)
    assert len(lines) == 1 and lines[0].startswith("medrecon: error: "), err
    assert "Traceback" not in out + err
    if needle is not None:
        assert needle.lower() in lines[0].lower(), lines[0]
    return lines[0]


def assert_fails_cleanly(args, capfd, folder: Path, needle: str | None = None) -> str:
    """Run ``args``; it must fail with one error line and leave ``folder`` exactly as it was."""
    before = _files(folder)
    line = assert_one_error(*_run(args, capfd), needle=needle)
    assert _files(folder) == before, "the failed command left files behind"
    return line


def _fastmri(path: Path, **changes) -> Path:
    """A tiny valid fastMRI file, then datasets replaced/added/removed as ``changes`` say (None deletes)."""
    samples.tiny_fastmri(path)
    with h5py.File(path, "a") as f:
        for key, value in changes.items():
            if key in f:
                del f[key]
            if value is not None:
                f[key] = value
    return path


def _recon(inp, out, *extra):
    return ["recon", inp, "--method", "zero-filled", "--out", out, "--quiet", *extra]


# ============================================================================ 1. one error path

K, MASK, TARGET = samples.tiny_kspace()


def _bad_inputs(d: Path) -> dict:
    """name -> (input path, CLI extra args, a word the error line must contain)."""
    text = d / "notes.h5"
    text.write_text("hello, not a scan\n")
    trunc = samples.tiny_fastmri(d / "trunc_src.h5")
    (d / "truncated.h5").write_bytes(trunc.read_bytes()[: trunc.stat().st_size // 2])
    trunc.unlink()
    bart = samples.tiny_bart(d / "bart")
    (d / "bart.cfl").write_bytes((d / "bart.cfl").read_bytes()[:-8])
    huge = d / "huge.h5"
    with h5py.File(huge, "w") as f:  # declares 8 TiB of k-space; chunked and unwritten, so the file is tiny
        f.create_dataset("kspace", shape=(1000, 64, 4096, 4096), dtype=np.complex64, chunks=(1, 1, 64, 64))
    nan = K.copy()
    nan[0, 0, 3, 3] = np.nan
    inf = K.copy()
    inf[0, 1, 0, 0] = np.inf
    return {
        "missing file": (d / "missing.h5", [], "no such file"),
        "not a recognised format": (text, [], "not a recognised"),
        "random bytes named .dcm": (_write(d / "x.dcm", os.urandom(600)), [], "not a recognised"),
        "truncated HDF5": (d / "truncated.h5", [], "truncated"),
        "truncated BART cfl": (bart, [], "truncated"),
        "missing kspace dataset": (_fastmri(d / "nok.h5", kspace=None), [], "kspace"),
        "missing sinogram geometry": (_sinogram_without_geometry(d / "sino.h5"), [], "geometry"),
        "wrong number of dimensions": (_fastmri(d / "ndim.h5", kspace=K[0, 0]), [], "dimensions"),
        "coil maps that do not match": (_fastmri(d / "maps.h5", sens_maps=np.ones((1, 3, 16, 16), np.complex64)),
                                        [], "coil maps"),
        "NaN k-space": (_fastmri(d / "nan.h5", kspace=nan), [], "NaN"),
        "Inf k-space": (_fastmri(d / "inf.h5", kspace=inf), [], "Inf"),
        "all-zero k-space": (_fastmri(d / "zero.h5", kspace=np.zeros_like(K)), [], "all zeros"),
        "mask with no samples": (_fastmri(d / "nomask.h5", mask=np.zeros(16, bool)), [], "no k-space samples"),
        "mask of the wrong length": (_fastmri(d / "badmask.h5", mask=np.ones(5, bool)), [], "mask"),
        "matrix too large for memory": (huge, [], "MEDRECON_MAX_GB"),
        "numpy k-space without --axes": (_npy(d / "k.npy"), [], "--axes"),
    }


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _npy(path: Path) -> Path:
    np.save(path, K)
    return path


def _sinogram_without_geometry(path: Path) -> Path:
    samples.tiny_sinogram(path)
    with h5py.File(path, "a") as f:
        del f.attrs["geometry"]
    return path


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    return d, _bad_inputs(d)


BAD_CASES = ["missing file", "not a recognised format", "random bytes named .dcm", "truncated HDF5",
             "truncated BART cfl", "missing kspace dataset", "missing sinogram geometry", "wrong number of dimensions",
             "coil maps that do not match", "NaN k-space", "Inf k-space", "all-zero k-space", "mask with no samples",
             "mask of the wrong length", "matrix too large for memory", "numpy k-space without --axes"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_every_bad_input_gives_one_error_line(case, bad_inputs, tmp_path, capfd):
    folder, cases = bad_inputs
    assert sorted(cases) == sorted(BAD_CASES)
    path, extra, needle = cases[case]
    t0 = time.perf_counter()
    assert_fails_cleanly(_recon(path, tmp_path / "out.h5", *extra), capfd, tmp_path, needle)
    assert_fails_cleanly(_recon(path, tmp_path / "out.h5", *extra), capfd, folder)  # inputs untouched too
    assert time.perf_counter() - t0 < 20  # the 8 TiB header is refused before anything is read


def test_unreadable_file(tmp_path, capfd):
    if os.geteuid() != 0:
        locked = samples.tiny_fastmri(tmp_path / "locked.h5")
        locked.chmod(0)
        try:
            assert_fails_cleanly(_recon(locked, tmp_path / "o.h5"), capfd, tmp_path, "cannot read")
        finally:
            locked.chmod(0o600)
    # Root reads any file, so also use one whose read fails with an I/O error for everybody.
    if Path("/proc/self/mem").exists():
        link = tmp_path / "scan.h5"
        link.symlink_to("/proc/self/mem")
        assert_fails_cleanly(_recon(link, tmp_path / "o.h5"), capfd, tmp_path, "cannot read")


def test_memory_cap_comes_from_the_environment(tmp_path, capfd, monkeypatch):
    good = samples.tiny_fastmri(tmp_path / "good.h5")
    monkeypatch.setenv("MEDRECON_MAX_GB", "1e-7")  # ~107 bytes: even the tiny file is over
    line = assert_fails_cleanly(_recon(good, tmp_path / "o.h5"), capfd, tmp_path, "MEDRECON_MAX_GB")
    assert "GiB" in line
    monkeypatch.setenv("MEDRECON_MAX_GB", "lots")
    assert_fails_cleanly(_recon(good, tmp_path / "o.h5"), capfd, tmp_path, "positive number")
    monkeypatch.delenv("MEDRECON_MAX_GB")
    code, _, err = _run(_recon(good, tmp_path / "o.h5"), capfd)
    assert code == 0, err


def test_cuda_without_gpu_and_wrong_modality_prior(tmp_path, capfd):
    good = samples.tiny_fastmri(tmp_path / "good.h5")
    if not torch.cuda.is_available():
        assert_fails_cleanly(_recon(good, tmp_path / "o.h5", "--device", "cuda"), capfd, tmp_path, "no CUDA GPU")
    args = ["recon", good, "--method", "fast", "--prior", "ct-body", "--out", tmp_path / "o.h5", "--quiet"]
    assert_fails_cleanly(args, capfd, tmp_path, "CT prior")


def test_bad_arguments_are_one_line_too(tmp_path, capfd):
    with pytest.raises(SystemExit) as exc:
        cli_main(["recon", str(tmp_path / "x.h5"), "--method", "no-such-method", "--out", "o.h5"])
    out, err = capfd.readouterr()
    assert_one_error(exc.value.code, out, err, "invalid choice")


def test_debug_shows_the_traceback(bad_inputs, tmp_path):
    _, cases = bad_inputs
    with pytest.raises(InputError, match="all zeros"):
        cli_main(["--debug", *map(str, _recon(cases["all-zero k-space"][0], tmp_path / "o.h5"))])


def test_hostile_images_through_simulate(tmp_path, capfd):
    """DICOM and NIfTI inputs (``simulate``), truncated or crafted, fail with one line as well."""
    dcm = samples.tiny_dicom(tmp_path / "ct.dcm")
    (tmp_path / "trunc.dcm").write_bytes(dcm.read_bytes()[:-200])
    nii = samples.tiny_nifti(tmp_path / "t.nii")
    (tmp_path / "trunc.nii").write_bytes(nii.read_bytes()[:400])
    for image, needle in ((tmp_path / "trunc.dcm", "DICOM"), (tmp_path / "trunc.nii", "NIfTI")):
        for kind in ("ct", "mri"):
            args = ["simulate", kind, "--image", image, "--out", tmp_path / "sim.h5"]
            assert_fails_cleanly(args, capfd, tmp_path, needle)


def test_batch_reports_each_broken_file_and_continues(tmp_path, capfd):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        samples.tiny_fastmri(src / f"good{i}.h5", seed=i)
    broken = {"text.h5": b"not hdf5", "trunc.h5": samples.tiny_fastmri(tmp_path / "t.h5").read_bytes()[:3000]}
    for name, data in broken.items():
        (src / name).write_bytes(data)
    _fastmri(src / "zeros.h5", kspace=np.zeros_like(K))
    _fastmri(src / "nan.h5", kspace=np.full_like(K, np.nan))
    out = tmp_path / "out"
    code, stdout, err = _run(["recon", src, "--method", "zero-filled", "--out", out, "--quiet"], capfd)
    assert code != 0 and "Traceback" not in stdout + err
    lines = err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("medrecon: error: ") for line in lines), err
    assert {line.split(":")[2].strip() for line in lines} == {"text.h5", "trunc.h5", "zeros.h5", "nan.h5"}
    written = sorted(p.name for p in out.iterdir() if not p.name.startswith(".") and "manifest" not in p.name)
    assert written == ["good0.h5", "good0.h5.run.json", "good1.h5", "good1.h5.run.json"]
    # Resume: the finished files are skipped; the broken ones still make the exit status non-zero.
    code, stdout, err = _run(["recon", src, "--method", "zero-filled", "--out", out, "--quiet"], capfd)
    assert code != 0 and "2 already done" in stdout and "Traceback" not in stdout + err


# ============================================================================ 2. parsing defenses


def test_sizes_are_checked_from_headers_before_reading(tmp_path):
    """Crafted headers that claim huge arrays are refused from the header alone, in well under a second."""
    from medrecon.io.bart import read_cfl
    from medrecon.io.fastmri import read_fastmri
    from medrecon.io.ismrmrd_io import read_ismrmrd
    from medrecon.io.numpy_kspace import read_numpy_kspace
    from medrecon.io.volumes import load_volume

    cases = []
    # fastMRI: 8 TiB of unwritten chunked k-space.
    with h5py.File(tmp_path / "huge.h5", "w") as f:
        f.create_dataset("kspace", shape=(1000, 64, 4096, 4096), dtype=np.complex64, chunks=(1, 1, 64, 64))
    cases.append((read_fastmri, tmp_path / "huge.h5"))
    # ISMRMRD: a header whose encoded matrix is 100000 x 100000 over 2 coils.
    pytest.importorskip("ismrmrd")
    ism = samples.tiny_ismrmrd(tmp_path / "ism.h5")
    _replace_xml(ism, lambda x: re.sub(rb"<encodedSpace><matrixSize><x>\d+</x><y>\d+</y>",
                                       b"<encodedSpace><matrixSize><x>100000</x><y>100000</y>", x))
    cases.append((read_ismrmrd, ism))
    # DICOM: Rows x Columns of 65535 x 65535 (32 GiB as float64) over 1.4 KB of pixel data.
    import pydicom

    ds = pydicom.dcmread(samples.tiny_dicom(tmp_path / "big.dcm"))
    ds.Rows = ds.Columns = 65535
    ds.save_as(tmp_path / "big.dcm")
    cases.append((load_volume, tmp_path / "big.dcm"))
    # Enhanced multi-frame header claiming 2^31 - 1 frames: refused before the per-frame loop.
    ds = pydicom.dcmread(samples.tiny_dicom(tmp_path / "frames.dcm"))
    ds.NumberOfFrames = 2**31 - 1
    ds.save_as(tmp_path / "frames.dcm")
    cases.append((load_volume, tmp_path / "frames.dcm"))
    # NIfTI: dims 30000^3 in the header, 2 KB of data.
    nii = samples.tiny_nifti(tmp_path / "n.nii")
    raw = bytearray(nii.read_bytes())
    raw[42:48] = np.array([30000, 30000, 30000], "<i2").tobytes()
    (tmp_path / "n.nii").write_bytes(bytes(raw))
    cases.append((load_volume, tmp_path / "n.nii"))
    # BART: dims of 2^40 x 2^40 (the product overflows int64 without care).
    base = samples.tiny_bart(tmp_path / "b")
    (tmp_path / "b.hdr").write_text(f"# Dimensions\n{2**40} {2**40} 1 2\n")
    cases.append((read_cfl, base))
    # npz: a member whose .npy header claims (10^6, 10^6) complex64 (compressed members can expand).
    cases.append((lambda p: read_numpy_kspace(p, "HW"), _npz_claiming(tmp_path / "k.npz", (10**6, 10**6))))
    for reader, path in cases:
        t0 = time.perf_counter()
        with pytest.raises(InputError, match="MEDRECON_MAX_GB|truncated|does not fit|NumberOfFrames"):
            reader(path)
        assert time.perf_counter() - t0 < 5, path.name


def _replace_xml(path: Path, change) -> None:
    with h5py.File(path, "r") as f:
        xml = bytes(np.asarray(f["dataset/xml"][()]).reshape(-1)[0])
    with h5py.File(path, "a") as f:
        del f["dataset/xml"]
        f.create_dataset("dataset/xml", data=[change(xml)], dtype=h5py.string_dtype())


def _npz_claiming(path: Path, shape) -> Path:
    import io
    import zipfile

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<c8", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("kspace.npy", buf.getvalue() + b"\0" * 64)
    return path


BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                             for i in range(1, 10))
                  + b']><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">&lol9;</ismrmrdHeader>')
XXE = (b'<?xml version="1.0"?><!DOCTYPE h [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
       b'<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><version>&x;</version></ismrmrdHeader>')


@pytest.mark.parametrize("xml", [BILLION_LAUGHS, XXE], ids=["billion-laughs", "external-entity"])
def test_xml_headers_are_parsed_with_defusedxml(xml, tmp_path, capfd):
    fm = _fastmri(tmp_path / "f.h5", ismrmrd_header=np.bytes_(xml))
    assert_fails_cleanly(_recon(fm, tmp_path / "o.h5"), capfd, tmp_path, "not valid or safe XML")
    pytest.importorskip("ismrmrd")
    ism = samples.tiny_ismrmrd(tmp_path / "i.h5")
    _replace_xml(ism, lambda _: xml)
    assert_fails_cleanly(_recon(ism, tmp_path / "o.h5"), capfd, tmp_path, "not valid or safe XML")


def test_truncated_jpeg2000_dicom_fails_inside_the_error_path(tmp_path, capfd):
    """pydicom reads compressed files lazily; the failure comes from pixel decoding, and is still one line."""
    from medrecon.io.volumes import load_volume

    dcm = samples.tiny_dicom(tmp_path / "j2k.dcm", size=32, transfer_syntax="jpeg2000")
    raw = dcm.read_bytes()
    for cut in (len(raw) - 40, len(raw) - 400):
        (tmp_path / "cut.dcm").write_bytes(raw[:cut])
        with pytest.raises(InputError, match="j2k|cut.dcm"):
            load_volume(tmp_path / "cut.dcm")
    assert_fails_cleanly(["simulate", "ct", "--image", tmp_path / "cut.dcm", "--out", tmp_path / "s.h5"], capfd,
                         tmp_path)


# The installed package (everything that reads user files, bundles or configs) and the benchmark scripts.
SOURCE_DIRS = ("medrecon", "operators", "benchmarks")
FORBIDDEN = {
    r"\byaml\.(load|load_all|full_load|unsafe_load)\s*\(": "read YAML with yaml.safe_load",
    r"Loader\s*=\s*yaml\.(Loader|UnsafeLoader|FullLoader)": "read YAML with yaml.safe_load",
    r"\bpickle\.loads?\s*\(": "never unpickle files",
    r"allow_pickle\s*=\s*True": "numpy files are read with allow_pickle=False",
    r"(?<![\w.])(eval|exec)\s*\(": "configs are data, never evaluated",
    r"^\s*(import|from)\s+(xml\.(etree|dom|sax)|lxml)\b": "parse XML with defusedxml",
}


def test_source_uses_only_safe_parsers():
    """Static guard: YAML via safe_load, XML via defusedxml, no pickle, no eval, torch.load weights_only."""
    problems = []
    for top in SOURCE_DIRS:
        for path in sorted((REPO / top).rglob("*.py")):
            text = path.read_text(encoding="utf-8", errors="replace")
            for n, line in enumerate(text.splitlines(), 1):
                code = line.split("#", 1)[0]
                for pattern, rule in FORBIDDEN.items():
                    if re.search(pattern, code):
                        problems.append(f"{path.relative_to(REPO)}:{n}: {rule}: {line.strip()}")
                if "torch.load(" in code and "weights_only=True" not in code:
                    problems.append(f"{path.relative_to(REPO)}:{n}: torch.load needs weights_only=True")
    assert not problems, "\n".join(problems)


def _sleep_forever() -> None:
    import time as _time

    while True:
        _time.sleep(1)


def _segfault() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def _allocate_terabyte() -> None:
    np.ones(2**40, np.uint8)


def test_parsers_run_isolated_so_library_hangs_crashes_and_bombs_become_one_error(tmp_path, monkeypatch):
    """The forked parser (medrecon.io.sandbox): a hang is killed at MEDRECON_READ_TIMEOUT, a crash or a memory
    bomb in a C library ends the child, not medrecon; each is one InputError and no child is left."""
    from medrecon.io.sandbox import isolated

    monkeypatch.setenv("MEDRECON_READ_TIMEOUT", "2")
    monkeypatch.setenv("MEDRECON_MAX_GB", "0.25")
    for fn, needle in ((_sleep_forever, "did not finish within 2 s"), (_segfault, "crashed (SIGSEGV)"),
                       (_allocate_terabyte, "memory")):
        t0 = time.perf_counter()
        with pytest.raises(InputError, match=re.escape(needle)):
            isolated(fn, name="x.h5")
        assert time.perf_counter() - t0 < 10
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # every child was reaped


def test_hdf5_file_that_hangs_libhdf5_is_refused(tmp_path, capfd, monkeypatch):
    """Regression: fuzzing found an 18 KB ISMRMRD file (a digit run in the global heap rewritten) on which
    libhdf5 3.16's heap parser loops forever. The isolated reader refuses it after MEDRECON_READ_TIMEOUT."""
    pytest.importorskip("ismrmrd")
    import importlib.util

    spec = importlib.util.spec_from_file_location("medrecon_fuzz", REPO / "benchmarks" / "fuzz.py")
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    (tmp_path / "seed").mkdir()
    seed = samples.tiny_ismrmrd(tmp_path / "seed" / "x.h5")
    desc, contents = fuzz._example(seed, [seed], 233, [], 1)  # the example as benchmarks/fuzz.py --seed 1 ran it
    assert desc.startswith("text_numbers")
    bad = tmp_path / "hang.h5"
    bad.write_bytes(contents["x.h5"])
    monkeypatch.setenv("MEDRECON_READ_TIMEOUT", "3")
    t0 = time.perf_counter()
    assert_fails_cleanly(_recon(bad, tmp_path / "o.h5"), capfd, tmp_path)
    assert time.perf_counter() - t0 < 30


# ============================================================================ 4. no lost work

SLOW_WRITER = r"""
import signal, sys, time
from pathlib import Path
# A shell without job control starts background jobs with SIGINT ignored, and Python then installs no
# KeyboardInterrupt handler (so CI run in the background would ignore our Ctrl-C). Press Ctrl-C for real:
signal.signal(signal.SIGINT, signal.default_int_handler)
import medrecon.io.fastmri as fm
marker = Path(sys.argv[1])
def slow(*a, **k):
    marker.write_text("writing")   # the temporary output exists and is half written now
    time.sleep(60)
fm._write_attrs = slow                  # h5: called inside atomic_write, after the dataset is written
import nibabel                          # NIfTI: the temporary is fully saved, the rename not yet done
orig_save = nibabel.save
def slow_save(img, name):
    orig_save(img, name)
    slow()
nibabel.save = slow_save
from medrecon.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("sig,suffix", [(signal.SIGINT, ".h5"), (signal.SIGTERM, ".nii.gz")],
                         ids=["ctrl-c-h5", "sigterm-nifti"])
def test_interrupt_mid_write_leaves_no_partial_file(sig, suffix, tmp_path):
    src = samples.tiny_fastmri(tmp_path / "in.h5")
    outdir = tmp_path / "out"
    outdir.mkdir()
    marker = tmp_path / "marker"
    script = tmp_path / "slow.py"
    script.write_text(SLOW_WRITER)
    args = [sys.executable, str(script), str(marker), *map(str, _recon(src, outdir / f"recon{suffix}"))]
    proc = subprocess.Popen(args, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.monotonic()
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() - t0 < 120, "the writer was never reached"
            time.sleep(0.1)
        assert any(p.name.startswith(".") for p in outdir.iterdir())  # the temporary is there mid-write
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, (proc.returncode, err)
    assert_one_error(proc.returncode, out, err)
    assert sorted(outdir.iterdir()) == [], "a partial output or temporary file was left behind"


# ============================================================================ 5. identifiers


def _no_identifiers(*texts: str) -> None:
    values = [PLANTED["name"], *PLANTED["name"].split("^"), PLANTED["id"], PLANTED["birth"], "1923-04-17",
              PLANTED["accession"]]
    for text in texts:
        for v in values:
            assert v.lower() not in text.lower(), f"identifier {v!r} leaked into: {text[:300]}"


@pytest.mark.parametrize("fmt", ["fastmri", "ismrmrd"])
def test_planted_identifiers_never_reach_output_logs_or_run_record(fmt, tmp_path, capfd):
    if fmt == "ismrmrd":
        pytest.importorskip("ismrmrd")
    src = getattr(samples, f"tiny_{fmt}")(tmp_path / "in.h5", planted=True)
    raw = src.read_bytes()
    assert PLANTED["id"].encode() in raw and PLANTED["name"].encode() in raw  # the identifiers are really there
    out = tmp_path / "recon.h5"
    code, stdout, err = _run(["recon", src, "--method", "sense", "--out", out], capfd)  # progress bars on
    assert code == 0, err
    record = (tmp_path / "recon.h5.run.json").read_text()
    _no_identifiers(stdout, err, record, out.read_bytes().decode("latin-1"))
    assert json.loads(record)["inputs"][0]["file"] == "in.h5"


def test_planted_identifiers_never_reach_error_messages(tmp_path, capfd, monkeypatch):
    """A damaged file with identifiers fails without quoting them; and any message that would quote one
    (here: a reader made to do so) is scrubbed by the CLI before it is printed."""
    pytest.importorskip("ismrmrd")
    src = samples.tiny_ismrmrd(tmp_path / "in.h5", planted=True)
    bad = tmp_path / "bad.h5"
    bad.write_bytes(src.read_bytes()[:-3000])
    _no_identifiers(assert_fails_cleanly(_recon(bad, tmp_path / "o.h5"), capfd, tmp_path))

    from medrecon.app import pipeline

    def leaky(path, slices, axes):
        raise InputError(f"could not parse patient {PLANTED['name']} ({PLANTED['id']}, born {PLANTED['birth']})")

    monkeypatch.setattr(pipeline, "_read_input", leaky)
    line = assert_fails_cleanly(_recon(src, tmp_path / "o.h5"), capfd, tmp_path)
    _no_identifiers(line)
    assert "[removed]" in line
    dcm = samples.tiny_dicom(tmp_path / "ct.dcm")  # a DICOM named on the command line (--like) is scanned too
    line = assert_fails_cleanly([*_recon(src, tmp_path / "o.h5"), "--like", dcm], capfd, tmp_path)
    _no_identifiers(line)


def test_dicom_outputs_keep_the_patient_module_but_nothing_else_does(tmp_path, capfd):
    """The output series belongs to the source patient (README: Security and privacy); logs and records do not."""
    import pydicom

    series = tmp_path / "series"
    series.mkdir()
    uid = pydicom.uid.generate_uid()
    for z in range(2):
        samples.tiny_dicom(series / f"{z}.dcm", z=float(z), series_uid=uid)
    sino = tmp_path / "sino.h5"
    code, stdout, err = _run(["simulate", "ct", "--image", series, "--views", "8", "--out", sino], capfd)
    assert code == 0, err
    _no_identifiers(stdout, err, sino.read_bytes().decode("latin-1"))
    out = tmp_path / "recon_dicom"
    code, stdout, err = _run(["recon", sino, "--method", "fbp", "--format", "dicom", "--like", series,
                              "--out", out], capfd)
    assert code == 0, err
    _no_identifiers(stdout, err, (tmp_path / "recon_dicom.run.json").read_text())
    written = sorted(out.iterdir())
    assert len(written) == 2
    ds = pydicom.dcmread(written[0])
    assert str(ds.PatientName) == PLANTED["name"] and ds.PatientID == PLANTED["id"]
    assert ds.PatientBirthDate == PLANTED["birth"] and ds.SeriesInstanceUID != uid


# ============================================================================ 6. weights


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    from medrecon.priors import DiffusionPrior, save_bundle

    torch.manual_seed(0)
    prior = DiffusionPrior("mri", TINY_NET, name="tiny-mri")
    return save_bundle(prior, tmp_path_factory.mktemp("bundle") / "tiny-mri")


def _copy_bundle(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _set_meta(bundle: Path, **changes) -> dict:
    from medrecon.priors.bundle import METADATA

    meta = json.loads((bundle / METADATA).read_text())
    for key, value in changes.items():
        meta[key] = value
    (bundle / METADATA).write_text(json.dumps(meta))
    return meta


class _Payload:
    """Unpickling this runs code: it creates the marker file. A safe loader never does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_tampered_weights_are_refused_through_the_cli(tiny_bundle, tmp_path, capfd):
    from medrecon.priors.bundle import WEIGHTS

    src = samples.tiny_fastmri(tmp_path / "in.h5")
    bundle = _copy_bundle(tiny_bundle, tmp_path / "b")
    raw = bytearray((bundle / WEIGHTS).read_bytes())
    raw[-1] ^= 0xFF  # one bit pattern changed in the last weight
    (bundle / WEIGHTS).write_bytes(bytes(raw))
    args = ["recon", src, "--method", "fast", "--steps", "2", "--prior", bundle, "--out", tmp_path / "o.h5", "--quiet"]
    assert_fails_cleanly(args, capfd, tmp_path, "sha256")


def test_pickled_weights_are_never_unpickled(tiny_bundle, tmp_path):
    """A pickle in place of the safetensors file, with a matching sha256 in the metadata, is refused unread."""
    import pickle

    from medrecon.priors import load_bundle
    from medrecon.priors.bundle import WEIGHTS, sha256_file

    bundle = _copy_bundle(tiny_bundle, tmp_path / "b")
    marker = tmp_path / "pwned"
    (bundle / WEIGHTS).write_bytes(pickle.dumps(_Payload(marker)))
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    _set_meta(bundle, weights={**meta["weights"], "sha256": sha256_file(bundle / WEIGHTS)})
    with pytest.raises(PriorError, match="safetensors"):
        load_bundle(bundle)
    assert not marker.exists()


def test_configs_are_data_and_mismatched_networks_are_refused(tiny_bundle, tmp_path):
    from medrecon.priors import load_bundle

    marker = tmp_path / "pwned"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    bundle = _copy_bundle(tiny_bundle, tmp_path / "code")
    meta = _set_meta(bundle, name=code, version=code)
    prior = load_bundle(bundle)  # strings are just strings
    assert prior.name == code and not marker.exists()
    for i, network in enumerate([{**meta["network"], "channels": code}, {**meta["network"], "channels": [10**6] * 4},
                                 {**meta["network"], "channels": [16, 32, 32, 64]}, "import os"]):
        bad = _copy_bundle(tiny_bundle, tmp_path / f"net{i}")
        _set_meta(bad, network=network)
        t0 = time.perf_counter()
        with pytest.raises(PriorError):
            load_bundle(bad)  # a million channels is refused from shapes alone: no allocation
        assert time.perf_counter() - t0 < 30 and not marker.exists()
    escape = _copy_bundle(tiny_bundle, tmp_path / "escape")
    _set_meta(escape, weights={**meta["weights"], "file": "../../elsewhere.safetensors"})
    with pytest.raises(PriorError, match="outside the bundle"):
        load_bundle(escape)


# ============================================================================ 7. numerical guards


@pytest.mark.parametrize("method,bad", [("fast", "nan"), ("dps", "nan"), ("dps", "explode")])
def test_diverging_sampler_stops_with_a_clear_error_and_writes_nothing(method, bad, tiny_bundle, tmp_path, capfd,
                                                                      monkeypatch):
    from medrecon.priors.prior import DiffusionPrior

    calls = []

    def broken_eps(self, x_t, t):
        calls.append(1)
        value = float("nan") if bad == "nan" else 1e30
        return torch.full_like(x_t, value) + 0 * x_t

    monkeypatch.setattr(DiffusionPrior, "eps", broken_eps)
    src = samples.tiny_fastmri(tmp_path / "in.h5")
    args = ["recon", src, "--method", method, "--steps", "50", "--prior", tiny_bundle, "--out", tmp_path / "o.h5",
            "--quiet"]
    line = assert_fails_cleanly(args, capfd, tmp_path, "diverged")
    assert "step 1/50" in line  # stopped at the first check, not after all 50 steps
    assert len(calls) == 1


def test_healthy_samplers_pass_the_guard(tiny_bundle, tmp_path, capfd):
    src = samples.tiny_fastmri(tmp_path / "in.h5")
    for method in ("fast", "dps"):
        out = tmp_path / f"{method}.h5"
        code, _, err = _run(["recon", src, "--method", method, "--steps", "12", "--prior", tiny_bundle,
                             "--out", out, "--quiet"], capfd)
        assert code == 0, err
        with h5py.File(out, "r") as f:
            assert np.isfinite(f["reconstruction"][()]).all()


def test_writers_never_write_nan_images(tmp_path):
    from medrecon.io.dicom_writer import write_dicom_series
    from medrecon.io.fastmri import write_reconstruction
    from medrecon.io.nifti_writer import write_nifti
    from medrecon.io.png import write_png

    img = np.ones((1, 8, 8), np.float32)
    img[0, 2, 2] = np.nan
    writers = [lambda: write_reconstruction(tmp_path / "r.h5", img),
               lambda: write_reconstruction(tmp_path / "r.h5", np.ones_like(img), std=img),
               lambda: write_nifti(tmp_path / "r.nii.gz", img, np.eye(4)),
               lambda: write_png(tmp_path / "r.png", img),
               lambda: write_dicom_series(tmp_path / "dcm", img, None, "MR", None, "d", "d")]
    for write in writers:
        with pytest.raises(MedreconError, match="NaN"):
            write()
    assert _files(tmp_path) == set()


def test_diverged_result_is_never_written(tmp_path, capfd, monkeypatch):
    """The last guard: whatever the method, a non-finite image stops the pipeline before any writer runs."""
    from medrecon.recon import mri

    real = mri.reconstruct_kspace

    def nan_result(*a, **k):
        res = real(*a, **k)
        res.image[...] = np.nan
        return res

    monkeypatch.setattr(mri, "reconstruct_kspace", nan_result)
    src = samples.tiny_fastmri(tmp_path / "in.h5")
    line = assert_fails_cleanly(_recon(src, tmp_path / "o.nii.gz"), capfd, tmp_path, "NaN")
    assert isinstance(SamplerDivergedError("x"), MedreconError) and "nothing was" in line
