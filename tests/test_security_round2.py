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
