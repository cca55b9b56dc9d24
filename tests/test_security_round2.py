"""Regression tests for issue 23 (security and privacy, round two), one per fixed defect; each failed on the
main of 2026-12-05 before its fix. Defects 1, 9 and 10's range checks have their tests beside the code they
touch (tests/io/test_volumes.py, tests/acquisition/, tests/test_methods.py)."""

from __future__ import annotations

import shutil

import h5py
import pytest

from medrecon.cli import main
from medrecon.priors.registry import SHIPPED_DIR, resolve_prior
from medrecon.testing.samples import tiny_fastmri


def test_defect3_a_folder_in_the_working_directory_does_not_replace_a_shipped_prior(tmp_path, monkeypatch):
    fake = tmp_path / "mri-brain"
    shutil.copytree(SHIPPED_DIR / "mri-brain" / "configs", fake / "configs")
    monkeypatch.chdir(tmp_path)
    assert resolve_prior("mri-brain", "mri") == SHIPPED_DIR / "mri-brain"  # a bare name is a name
    assert resolve_prior("./mri-brain", "mri") == fake.relative_to(tmp_path) or \
        resolve_prior("./mri-brain", "mri").resolve() == fake  # a path is a path


def test_defect9_evaluate_without_json_prints_both_conventions(tmp_path, capsys):
    """`medrecon evaluate --target A --recon B` without --json exited 1 with KeyError: 'mean'."""
    (tmp_path / "t").mkdir()
    (tmp_path / "r").mkdir()
    src = tiny_fastmri(tmp_path / "t" / "vol.h5")
    with h5py.File(src, "a") as f:
        if "reconstruction_rss" not in f:
            pytest.skip("the tiny sample has no target")
    assert main(["recon", str(src), "--method", "zero-filled", "--out", str(tmp_path / "r" / "vol.h5"),
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--target", str(tmp_path / "t"), "--recon", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "1 volume(s)" in out and "fastMRI convention" in out and "per-slice" in out and "PSNR = " in out


# ----------------------------------------------------------------------------- defect 4: special output paths


def test_defect4_an_output_on_a_fifo_is_refused_and_the_fifo_kept(tmp_path, capsys):
    """`--out /dev/null` as root replaced the system's /dev/null with a regular file; a FIFO stands in for it."""
    import os
    import stat

    src = tiny_fastmri(tmp_path / "vol.h5")
    fifo = tmp_path / "pipe.h5"
    os.mkfifo(fifo)
    assert main(["recon", str(src), "--method", "zero-filled", "--out", str(fifo), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a regular file" in err[0]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert main(["simulate", "ct", "--image", str(src), "--views", "8", "--out", str(fifo)]) == 2
    assert "not a regular file" in capsys.readouterr().err
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


# ----------------------------------------------------------------------------- defect 8: what SIGKILL leaves


def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_defect8_temporaries_of_a_dead_run_are_removed_by_the_next_write(tmp_path):
    import re
    import socket

    def _host() -> str:  # the documented temporary-name rule: host name reduced to [A-Za-z0-9.], 32 chars
        return re.sub(r"[^A-Za-z0-9.]", "", socket.gethostname())[:32] or "host"

    src = tiny_fastmri(tmp_path / "vol.h5")
    out = tmp_path / "m1.nii.gz"
    dead = tmp_path / f".m1.nii.gz.tmp-{_host()}-{_dead_pid()}-0123456789ab.nii.gz"
    live = tmp_path / f".m1.nii.gz.tmp-{_host()}-{__import__('os').getpid()}-0123456789ab.nii.gz"
    other = tmp_path / ".other.h5.tmp-somehost-1-0123456789ab.h5"
    for p in (dead, live, other):
        p.write_bytes(b"partial")
    assert main(["recon", str(src), "--method", "zero-filled", "--out", str(out), "--quiet"]) == 0
    assert out.is_file() and not dead.exists()
    assert live.exists() and other.exists()  # a running process's temporary and other outputs' are left alone


def test_defect8_the_sandboxed_parser_dies_with_its_parent(tmp_path):
    """The forked parser child kept running at 100% CPU after its parent was SIGKILLed."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pid_file = tmp_path / "child.pid"
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from medrecon.io.sandbox import isolated\n"
        "def spin(p):\n"
        "    Path(p).write_text(str(os.getpid()))\n"
        "    while True:\n"
        "        pass\n"
        "isolated(spin, sys.argv[1], name='x')\n")
    env = {**os.environ, "MEDRECON_READ_TIMEOUT": "120"}
    parent = subprocess.Popen([sys.executable, "-c", script, str(pid_file)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(pid_file.read_text())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()

        def running(pid: int) -> bool:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
            except (FileNotFoundError, ProcessLookupError):
                return False

        deadline = time.monotonic() + 10
        while running(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        alive = running(child)
        if alive:
            os.kill(child, signal.SIGKILL)
        assert not alive, "the parser child outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()


# ----------------------------------------------------------------------------- defect 9: unwritable outputs


def test_defect9_an_unwritable_output_is_one_line_exit_2_before_any_work(tmp_path, capsys, monkeypatch):
    import os

    import medrecon.app.pipeline as pipeline

    src = tiny_fastmri(tmp_path / "vol.h5")

    def no_work(*a, **k):
        raise AssertionError("the input was read before the output was checked")

    monkeypatch.setattr(pipeline, "load_input", no_work)
    cases = [str(tmp_path / "missing" / "r.h5")]
    if os.path.isdir("/proc"):
        cases.append("/proc/r.h5")
    if os.geteuid() != 0:  # root writes through permission bits; /proc stands in for a read-only mount then
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        cases.append(str(ro / "r.h5"))
    for out in cases:
        assert main(["recon", str(src), "--method", "zero-filled", "--out", out, "--quiet"]) == 2, out
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("medrecon: error:") and "Traceback" not in err[0], out
    if os.path.isdir("/proc"):
        assert main(["recon", str(tmp_path), "--method", "zero-filled", "--out", "/proc/batch_out", "--quiet"]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- defect 11: minor


def test_defect11_the_error_line_starts_its_own_line_after_a_progress_bar(capsys, monkeypatch):
    from tqdm.auto import tqdm

    import importlib

    from medrecon.errors import InputError

    cli_main_module = importlib.import_module("medrecon.cli.main")

    def failing(a):
        it = iter(tqdm(range(10), desc="sampling", leave=False))
        next(it)
        next(it)
        raise InputError("planted failure")

    monkeypatch.setitem(cli_main_module.COMMANDS, "methods", failing)
    assert main(["methods"]) == 2
    err = capsys.readouterr().err
    assert "\nmedrecon: error: planted failure" in err


def test_defect11_a_hanging_file_is_parsed_once(tmp_path, capsys, monkeypatch):
    """The identifier scan of the error path parsed the hanging file again: twice the timeout."""
    import time

    import medrecon.app.pipeline as pipeline
    import medrecon.io.run_record as run_record

    src = tiny_fastmri(tmp_path / "vol.h5")

    def hang(*a, **k):
        time.sleep(60)

    monkeypatch.setenv("MEDRECON_READ_TIMEOUT", "2")
    monkeypatch.setattr(pipeline, "_read_input_guarded", hang)
    monkeypatch.setattr(run_record, "_identifiers_in_unchecked", hang)
    t0 = time.monotonic()
    assert main(["recon", str(src), "--method", "zero-filled", "--out", str(tmp_path / "r.h5"), "--quiet"]) == 2
    took = time.monotonic() - t0
    assert "did not finish within 2 s" in capsys.readouterr().err
    assert took < 3.5, f"refused after {took:.1f} s; one timeout is 2 s"


# ----------------------------------------------------------------------------- defect 6: the process's memory


def _all_fill_kspace(path, shape, fill=1 + 1j):
    """A fastMRI-layout file of a few KiB whose chunked, compressed ``kspace`` was never written: every
    sample is the fill value, so the header claims ``shape`` while the file holds almost nothing."""
    import numpy as np

    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", shape=shape, dtype=np.complex64, chunks=(1, 1) + tuple(shape[2:]),
                         compression="gzip", fillvalue=np.complex64(fill))
    return path


def test_defect6_a_reconstruction_over_the_memory_cap_is_refused_before_the_work(tmp_path, capsys, monkeypatch):
    """A crafted 1.5 KB HDF5 file claiming 1.9 GiB of k-space, within MEDRECON_MAX_GB=2, made zero-filled peak
    at 10 GB: the cap bounded the input array, not the reconstruction. Scaled down: 13 MB of k-space (within
    the 51 MiB cap) whose zero-filled reconstruction needs several times that."""
    import time

    import medrecon.app.pipeline as pipeline
    import medrecon.recon.mri as mri

    src = _all_fill_kspace(tmp_path / "crafted.h5", (2, 8, 320, 320))
    assert src.stat().st_size < 64 * 1024
    monkeypatch.setenv("MEDRECON_MAX_GB", "0.05")

    def no_work(*a, **k):
        raise AssertionError("the refused input reached the reconstruction")

    def not_here(*a, **k):  # the reader's child refuses it: the parent never holds a second copy
        raise AssertionError("the refused array was handed to the parent process")

    monkeypatch.setattr(mri, "reconstruct_kspace", no_work)
    monkeypatch.setattr(pipeline, "check_measurement", not_here)
    out = tmp_path / "o.h5"
    t0 = time.monotonic()
    assert main(["recon", str(src), "--method", "zero-filled", "--out", str(out), "--quiet"]) == 2
    took = time.monotonic() - t0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medrecon: error:"), err
    assert "MEDRECON_MAX_GB" in err[0] and "--slices" in err[0] and "GiB" in err[0]
    assert "crafted.h5" in err[0] and str(tmp_path) not in err[0]
    assert not out.exists() and not (tmp_path / "o.h5.run.json").exists()
    assert took < 60, f"refused after {took:.0f} s"


def test_defect6_reconstruct_checks_the_working_memory_itself(monkeypatch):
    """Library callers (batch workers, the benchmark) reach reconstruct() without the CLI's reader."""
    import numpy as np

    from medrecon.app.memory import estimate_working_bytes
    from medrecon.app.pipeline import reconstruct
    from medrecon.errors import InputError
    from medrecon.io.measurement import LoadedInput
    from medrecon.recon.config import ReconConfig

    k = np.ones((2, 8, 320, 320), np.complex64)
    inp = LoadedInput("mri", k, None, (320, 320))
    cfg = ReconConfig(method="zero-filled", device="cpu", progress=False)
    monkeypatch.setenv("MEDRECON_MAX_GB", "0.05")
    with pytest.raises(InputError, match="MEDRECON_MAX_GB") as exc:
        reconstruct(inp, cfg)
    assert "\n" not in str(exc.value)
    # The estimate counts the method's own needs: ESPIRiT and a network batch need far more than zero-filled.
    zf = estimate_working_bytes(inp, cfg, "cpu")
    assert zf > 5 * k.nbytes
    assert estimate_working_bytes(inp, ReconConfig(method="sense", device="cpu"), "cpu") > zf
    fast = estimate_working_bytes(inp, ReconConfig(method="fast", device="cpu"), "cpu")
    assert estimate_working_bytes(inp, ReconConfig(method="fast", device="cpu", samples=4), "cpu") > 2 * fast / 1.5
    assert estimate_working_bytes(inp, ReconConfig(method="fast", device="cpu", batch_size=1), "cpu") < fast
    monkeypatch.delenv("MEDRECON_MAX_GB")
    assert reconstruct(inp, cfg).image.shape == (2, 320, 320)  # the default 16 GiB takes it


# ----------------------------------------------------------------------------- defect 10: silent garbage


def _damaged_templates(tmp_path):
    """``{case: path}``: --like templates that cannot serve, each from a valid tiny DICOM with planted names."""
    import pydicom

    from medrecon.testing.samples import tiny_dicom

    good = tiny_dicom(tmp_path / "good.dcm", planted=True, size=32)
    data = good.read_bytes()
    (tmp_path / "text.dcm").write_text("not a DICOM file\n" * 40)
    (tmp_path / "truncated.dcm").write_bytes(data[:-300])
    (tmp_path / "header_only.dcm").write_bytes(data[:200])
    ds = pydicom.dcmread(good)
    del ds.StudyInstanceUID
    ds.save_as(tmp_path / "no_study.dcm")
    ds = pydicom.dcmread(good)
    ds.Rows = 40000
    ds.save_as(tmp_path / "rows.dcm")
    ds = pydicom.dcmread(good)
    ds.Columns = 0
    ds.save_as(tmp_path / "columns.dcm")
    empty = tmp_path / "no_dicom_here"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing")
    return {"not DICOM": tmp_path / "text.dcm", "truncated": tmp_path / "truncated.dcm",
            "header cut short": tmp_path / "header_only.dcm", "missing StudyInstanceUID": tmp_path / "no_study.dcm",
            "absurd Rows": tmp_path / "rows.dcm", "zero Columns": tmp_path / "columns.dcm",
            "folder without DICOM": empty}


def test_defect10_a_damaged_like_template_is_refused_before_the_reconstruction(tmp_path, capsys, monkeypatch):
    """A damaged --like template was read only by the DICOM writer, after the reconstruction: a truncated or
    header-less one gave a series in a new, empty study (silent garbage) or failed after the work."""
    import medrecon.app.pipeline as pipeline
    from medrecon.testing.samples import PLANTED

    src = tiny_fastmri(tmp_path / "vol.h5")
    (tmp_path / "t").mkdir()
    cases = _damaged_templates(tmp_path / "t")

    def no_work(*a, **k):
        raise AssertionError("the input was read before the template was checked")

    monkeypatch.setattr(pipeline, "load_input", no_work)
    for case, like in cases.items():
        out = tmp_path / f"out_{len(case)}"
        code = main(["recon", str(src), "--method", "zero-filled", "--out", str(out), "--format", "dicom",
                     "--like", str(like), "--quiet"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, (case, err)
        assert len(err) == 1 and err[0].startswith("medrecon: error:"), (case, err)
        assert like.name in err[0] and str(tmp_path) not in err[0], (case, err[0])
        assert not any(str(v) in err[0] for v in PLANTED.values()), (case, err[0])
        assert not out.exists(), case
    # the same template given to a batch is refused once, before any study starts
    (tmp_path / "in").mkdir()
    shutil.copy(src, tmp_path / "in" / "vol.h5")
    assert main(["recon", str(tmp_path / "in"), "--method", "zero-filled", "--out", str(tmp_path / "batch"),
                 "--format", "dicom", "--like", str(cases["truncated"]), "--quiet"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_defect10_a_valid_like_template_still_serves(tmp_path, capsys):
    import pydicom

    from medrecon.testing.samples import tiny_dicom

    src = tiny_fastmri(tmp_path / "vol.h5")
    like = tiny_dicom(tmp_path / "like.dcm", planted=True)
    out = tmp_path / "series"
    assert main(["recon", str(src), "--method", "zero-filled", "--out", str(out), "--format", "dicom",
                 "--like", str(like), "--quiet"]) == 0, capsys.readouterr().err
    first = pydicom.dcmread(min(out.iterdir()))
    assert first.StudyInstanceUID == pydicom.dcmread(like).StudyInstanceUID


def _record(out):
    import json

    return json.loads((out.parent / (out.name + ".run.json")).read_text())


def test_defect10_accel_for_an_already_undersampled_file_is_reported_not_silently_dropped(tmp_path, capsys):
    """`--accel 8` on a file with its own mask reconstructed at the file's ~2x without a word."""
    import re

    src = tiny_fastmri(tmp_path / "vol.h5")  # carries its own mask (every second column and the centre)
    out = tmp_path / "r.h5"
    assert main(["recon", str(src), "--method", "zero-filled", "--out", str(out), "--accel", "8", "--quiet"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert re.fullmatch(r"medrecon: warning: --accel is ignored: the file is already undersampled "
                        r"\(its own mask, \d+\.\dx\)", err[0]), err[0]
    mask = _record(out)["params"]["mask"]
    assert mask["kind"] == "from file" and mask["ignored"] == ["--accel"] and "--accel is ignored" in mask["warning"]
    # without the option: no warning, nothing recorded as ignored
    assert main(["recon", str(src), "--method", "zero-filled", "--out", str(tmp_path / "r2.h5"), "--quiet"]) == 0
    assert capsys.readouterr().err.strip() == ""
    assert "ignored" not in _record(tmp_path / "r2.h5")["params"]["mask"]


def test_defect10_a_mask_on_k_space_that_already_skips_lines_is_refused(tmp_path, capsys):
    """A file without a 'mask' dataset whose k-space skips columns (an ISMRMRD export, a masked npy) got a second
    mask on top with `--mask`: an unknown, stronger undersampling recorded as the requested one."""
    from medrecon.io.fastmri import write_fastmri_kspace
    from medrecon.testing.samples import tiny_kspace

    k, _, _ = tiny_kspace(slices=1, coils=2, h=32, w=32)  # every second column and the centre hold data
    src = write_fastmri_kspace(tmp_path / "masked.h5", k)
    out = tmp_path / "r.h5"
    assert main(["recon", str(src), "--method", "zero-filled", "--out", str(out), "--mask", "random", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medrecon: error:") and "already undersampled" in err[0], err
    assert not out.exists()
    assert main(["recon", str(src), "--method", "zero-filled", "--out", str(out), "--center-fraction", "0.2",
                 "--quiet"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--center-fraction is ignored: the file is already undersampled" in err[0], err
    assert _record(out)["params"]["mask"]["ignored"] == ["--center-fraction"]


def test_defect10_fully_sampled_files_keep_their_behaviour(tmp_path, capsys):
    import numpy as np

    from medrecon.io.fastmri import write_fastmri_kspace

    g = np.random.default_rng(0)
    k = (g.standard_normal((1, 2, 32, 32)) + 1j * g.standard_normal((1, 2, 32, 32))).astype(np.complex64)
    k[..., :3] = 0  # zero padding at the edges is not undersampling
    src = write_fastmri_kspace(tmp_path / "full.h5", k)
    out = tmp_path / "r.h5"
    assert main(["recon", str(src), "--method", "zero-filled", "--out", str(out), "--mask", "equispaced",
                 "--accel", "4", "--center-fraction", "0.25", "--quiet"]) == 0
    assert capsys.readouterr().err.strip() == ""
    mask = _record(out)["params"]["mask"]
    assert mask["kind"] == "equispaced" and mask["acceleration"] == 4 and "ignored" not in mask
    # --accel alone draws no mask (as before): said once, and recorded
    assert main(["recon", str(src), "--method", "zero-filled", "--out", str(tmp_path / "r2.h5"), "--accel", "4",
                 "--quiet"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medrecon: warning: --accel is ignored") and "--mask" in err[0], err
    assert _record(tmp_path / "r2.h5")["params"]["mask"]["ignored"] == ["--accel"]
