"""End-to-end tests of the ``medrecon`` command line.

The real console script runs in a subprocess for the main paths (help, simulate, one recon per kind
of input, evaluate, one error). Other calls go through :func:`medrecon.cli.main` in-process, which is
the same code path minus the interpreter start (~3-7 s each on a 2-core machine); they still check
the exit code, the single ``medrecon: error:`` line, the absence of tracebacks and of output files.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from medrecon.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
# Run this checkout's code through the console script (another checkout may be the pip-installed one), with
# one OpenMP thread (spinning threads contend badly on a shared 2-core machine).
ENV = dict(os.environ, OMP_NUM_THREADS="1",
           PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))


def _sub(args, cwd=None, timeout=300):
    return subprocess.run(["medrecon", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=ENV,
                          timeout=timeout, check=False)


def _inproc(args, capfd):
    code = cli_main([str(a) for a in args])
    out, err = capfd.readouterr()
    return code, out, err


def _assert_one_error(code, out, err):
    lines = err.strip().splitlines()
    assert code != 0, (out, err)
    assert len(lines) == 1 and lines[0].startswith("medrecon: error:"), err
    assert "Traceback" not in out + err


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test of this module runs with one torch thread (see tests/conftest.py)."""


# ----------------------------------------------------------------------------- no shared data needed
def test_help_lists_the_commands():
    proc = _sub(["--help"])
    assert proc.returncode == 0, proc.stderr
    for cmd in ("recon", "simulate", "evaluate", "train-prior", "priors", "demo"):
        assert cmd in proc.stdout
    assert proc.stderr == ""


def test_priors_list_table(capfd):
    code, out, err = _inproc(["priors", "list"], capfd)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].split()[:2] == ["name", "modality"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["mri-brain"][1] == "mri" and rows["ct-body"][1] == "ct"


@pytest.fixture(scope="module")
def tiny_kspace(tmp_path_factory):
    """A 1-slice, 4-coil, 32x32 fastMRI-layout k-space file (equispaced, 16 centre lines) with its target.

    (With only 8 centre lines ESPIRiT's 24x8 calibration block is too small for 6x6 kernels over 4
    coils and the maps come out zero over most of the object.)
    """
    from medrecon.io.fastmri import write_fastmri_kspace
    from medrecon.acquisition.mri import simulate_kspace
    from operators import birdcage_maps

    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    img = (((xx ** 2 + yy ** 2) < 0.6).float() + 0.5 * (((xx - 0.3) ** 2 + yy ** 2) < 0.05).float())[None]
    sim = simulate_kspace(img, 4, "equispaced", 4, 0.5, seed=0, maps=birdcage_maps(4, (32, 32)))
    folder = tmp_path_factory.mktemp("tiny")
    path = write_fastmri_kspace(folder / "tiny.h5", sim["kspace"].numpy(), target=sim["target"].numpy(),
                                mask=sim["mask"].numpy(), recon_size=(32, 32))
    return path


def test_recon_tiny_fastmri_file(tiny_kspace, tmp_path, capfd):
    out_zf = tmp_path / "zf.h5"
    proc = _sub(["recon", tiny_kspace, "--method", "zero-filled", "--out", out_zf, "--quiet"])
    assert proc.returncode == 0, proc.stderr
    assert "zero-filled: 1 slice(s)" in proc.stdout and "PSNR" in proc.stdout
    out_sense = tmp_path / "sense.h5"
    code, _, err = _inproc(["recon", tiny_kspace, "--method", "sense", "--out", out_sense, "--quiet"], capfd)
    assert code == 0, err
    psnr = {}
    for path, method in ((out_zf, "zero-filled"), (out_sense, "sense")):
        with h5py.File(path, "r") as f:
            rec = f["reconstruction"][()]
        assert rec.shape == (1, 32, 32) and rec.dtype == np.float32 and np.isfinite(rec).all()
        record = json.loads(Path(str(path) + ".run.json").read_text())
        assert record["method"] == method and record["device"] == "cpu"
        assert record["outputs"][0]["file"] == path.name and record["inputs"][0]["file"] == "tiny.h5"
        psnr[method] = record["metrics"]["psnr"]
    assert psnr["sense"] > psnr["zero-filled"]


def test_fast_recon_warns_when_pixels_are_finer_than_the_prior_saw(tiny_kspace, tmp_path, capfd):
    """A header saying 0.5 mm pixels: the brain prior (0.9-1.8 mm) warns once, and the run record keeps it."""
    from medrecon.io.fastmri import minimal_ismrmrd_header, read_fastmri, write_fastmri_kspace

    v = read_fastmri(tiny_kspace)
    xml = minimal_ismrmrd_header(v.kspace.shape[-2:], (32, 32)).replace(
        "<reconSpace><matrixSize><x>32</x><y>32</y><z>1</z></matrixSize><fieldOfView_mm><x>32</x><y>32</y>",
        "<reconSpace><matrixSize><x>32</x><y>32</y><z>1</z></matrixSize><fieldOfView_mm><x>16</x><y>16</y>")
    fine = write_fastmri_kspace(tmp_path / "fine.h5", v.kspace, target=v.target, mask=v.mask, header_xml=xml)
    out = tmp_path / "fast.h5"
    code, _, err = _inproc(["recon", fine, "--method", "fast", "--steps", "2", "--out", out, "--quiet"], capfd)
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if "warning" in ln]
    assert lines == ["medrecon: warning: the image has 0.50 mm pixels, finer than the 0.9-1.8 mm the prior "
                     "'mri-brain' was trained on; expect lower quality (train or choose a prior for this resolution)"]
    record = json.loads(Path(str(out) + ".run.json").read_text())
    assert "0.50 mm pixels" in record["prior"]["scale_warning"]
    # The file written by the fixture says 1 mm pixels (its header's default): no warning.
    code, _, err = _inproc(["recon", tiny_kspace, "--method", "fast", "--steps", "2", "--out", tmp_path / "b.h5",
                            "--quiet"], capfd)
    assert code == 0 and "warning" not in err, err


def _h5_without_kspace(path):
    with h5py.File(path, "w") as f:
        f["reconstruction_rss"] = np.zeros((1, 8, 8), np.float32)
    return path


BAD_INPUTS = {
    "missing file": lambda d, k: (["recon", d / "missing.h5", "--method", "zero-filled"], "no such file"),
    "text renamed .h5": lambda d, k: ((d / "notes.h5").write_text("hello\n") and
                                      ["recon", d / "notes.h5", "--method", "zero-filled"], "not a recognised"),
    "h5 without kspace": lambda d, k: (["recon", _h5_without_kspace(d / "rss.h5"), "--method", "zero-filled"],
                                       "kspace"),
    "method of the wrong modality": lambda d, k: (["recon", k, "--method", "fbp"], "does not apply to MRI"),
    "prior of the wrong modality": lambda d, k: (["recon", k, "--method", "dps", "--prior", "ct-body"], "CT prior"),
    "cuda on a cpu machine": lambda d, k: (["recon", k, "--method", "zero-filled", "--device", "cuda"], "cuda"),
    "empty slice range": lambda d, k: (["recon", k, "--method", "zero-filled", "--slices", "5:9"], "selects nothing"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_recon_inputs_give_one_error_line_and_no_output(case, tiny_kspace, tmp_path, capfd):
    if case == "cuda on a cpu machine" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    args, needle = BAD_INPUTS[case](tmp_path, tiny_kspace)
    before = _files(tmp_path)
    out_path = tmp_path / "out.h5"
    code, out, err = _inproc([*args, "--out", out_path, "--quiet"], capfd)
    _assert_one_error(code, out, err)
    assert needle in err
    assert _files(tmp_path) == before  # no output, no run record, no temporary file left behind


def test_bad_input_through_the_real_entry_point(tmp_path):
    (tmp_path / "notes.h5").write_text("hello\n")
    proc = _sub(["recon", tmp_path / "notes.h5", "--method", "zero-filled", "--out", tmp_path / "out.h5"])
    assert proc.returncode == 2
    _assert_one_error(proc.returncode, proc.stdout, proc.stderr)
    assert _files(tmp_path) == {"notes.h5"}


def test_a_missing_output_folder_error_gives_the_mkdir_to_run(tmp_path, tiny_kspace, capfd):
    """Issue 25: the README's examples failed as pasted on a missing folder; the error now names the fix."""
    out = tmp_path / "new dir" / "sub" / "x.h5"
    code, stdout, err = _inproc(["recon", tiny_kspace, "--method", "zero-filled", "--quiet", "--out", out], capfd)
    _assert_one_error(code, stdout, err)
    assert f"mkdir -p '{out.parent}'" in err
    assert not (tmp_path / "new dir").exists()  # nothing is created behind the user's back


def test_evaluate_missing_folder(tmp_path, capfd):
    _assert_one_error(*_inproc(["evaluate", "--target", tmp_path / "nope", "--recon", tmp_path], capfd))


# ----------------------------------------------------------------------------- shared data
@pytest.fixture(scope="module")
def mri_sim(tmp_path_factory, shared_data):
    """`simulate mri` of two slices of a real brain (4x random mask), as a fastMRI target folder."""
    folder = tmp_path_factory.mktemp("mri")
    (folder / "target").mkdir()
    out = folder / "target" / "brain.h5"
    proc = _sub(["simulate", "mri", "--image", shared_data / "mri" / "mr_gd_skullstripped.nii.gz",
                 "--slices", "70:72", "--out", out])
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and "slices 2" in proc.stdout
    return out


@pytest.mark.data
def test_simulate_recon_evaluate_mri(mri_sim, capfd):
    root = mri_sim.parent.parent
    with h5py.File(mri_sim, "r") as f:
        assert f["kspace"].ndim == 4 and f["kspace"].shape[0] == 2 and "mask" in f and "reconstruction_rss" in f
    outs = {m: root / m / "brain.h5" for m in ("zero-filled", "sense")}
    for out in outs.values():
        out.parent.mkdir()
    proc = _sub(["recon", mri_sim, "--method", "zero-filled", "--out", outs["zero-filled"], "--quiet"])
    assert proc.returncode == 0, proc.stderr
    code, _, err = _inproc(["recon", mri_sim, "--method", "sense", "--out", outs["sense"], "--quiet"], capfd)
    assert code == 0, err
    scores = {}
    for method, out in outs.items():
        record = json.loads(Path(str(out) + ".run.json").read_text())
        assert record["method"] == method and record["inputs"][0]["file"] == "brain.h5"
        with h5py.File(out, "r") as f:
            assert f["reconstruction"].shape[0] == 2
        if method == "zero-filled":
            proc = _sub(["evaluate", "--target", mri_sim.parent, "--recon", out.parent, "--json"])
            assert proc.returncode == 0, proc.stderr
            text = proc.stdout
        else:
            code, text, err = _inproc(["evaluate", "--target", mri_sim.parent, "--recon", out.parent, "--json"], capfd)
            assert code == 0, err
        summary = json.loads(text)
        assert summary["n_volumes"] == 1 and summary["target_keys"] == {"brain.h5": "reconstruction_rss"}
        scores[method] = summary["fastmri"]["mean"]
        assert np.isfinite(scores[method]["psnr"]) and 0 < scores[method]["ssim"] <= 1
    # measured: zero-filled 28.1 dB / 0.63, sense 32.3 dB / 0.87
    assert scores["sense"]["psnr"] > scores["zero-filled"]["psnr"] + 1.0
    assert scores["sense"]["ssim"] > scores["zero-filled"]["ssim"]


@pytest.mark.data
@pytest.mark.parametrize("slices", ["1:2", pytest.param(None, marks=pytest.mark.slow)])
def test_fast_sampler_recon_on_simulated_mri(slices, mri_sim, tmp_path, capfd):
    """5 fast-sampler steps with the shipped prior (~7 s per 188x176 slice on one CPU core)."""
    out = tmp_path / "fast.h5"
    args = ["recon", mri_sim, "--method", "fast", "--steps", "5", "--out", out, "--quiet"]
    code, stdout, err = _inproc(args + (["--slices", slices] if slices else []), capfd)
    assert code == 0, err
    assert "5 network evaluations" in stdout
    with h5py.File(out, "r") as f:
        rec = f["reconstruction"][()]
    assert rec.shape[0] == (1 if slices else 2) and np.isfinite(rec).all() and rec.max() > 0
    record = json.loads(Path(str(out) + ".run.json").read_text())
    assert record["method"] == "fast" and record["nfe"] == 5
    assert record["prior"]["name"] == "mri-brain" and len(record["prior"]["sha256"]) == 64


@pytest.mark.data
@pytest.mark.parametrize("method, extra", [("langevin", ["--steps", "5", "--cg-iters", "3"]),
                                           ("daps", ["--steps", "5", "--ode-steps", "1", "--langevin", "5"])])
def test_new_samplers_recon_on_simulated_mri(method, extra, mri_sim, tmp_path, capfd):
    """Issue 18 end to end on real data: each new sampler by name, its NFE and data misfit in the run record."""
    out = tmp_path / f"{method}.h5"
    code, stdout, err = _inproc(["recon", mri_sim, "--method", method, *extra, "--slices", "1:2", "--out", out,
                                 "--quiet"], capfd)
    assert code == 0, err
    assert "5 network evaluations" in stdout and "data misfit" in stdout
    with h5py.File(out, "r") as f:
        rec = f["reconstruction"][()]
    assert rec.shape[0] == 1 and np.isfinite(rec).all() and rec.max() > 0
    record = json.loads(Path(str(out) + ".run.json").read_text())
    assert record["method"] == method and record["nfe"] == 5
    fit = record["data_misfit"]
    assert 0 < fit["mean"] < 1 and len(fit["per_slice"]) == len(fit["noise_misfit"]) == 1


@pytest.mark.data
def test_simulate_and_fbp_ct(shared_data, tmp_path, capfd):
    import nibabel as nib

    sino = tmp_path / "sino.h5"
    proc = _sub(["simulate", "ct", "--image", shared_data / "ct" / "totalseg_ct_dicom", "--slices", "8:10",
                 "--size", "96", "--views", "60", "--out", sino])
    assert proc.returncode == 0, proc.stderr
    assert "slices 2" in proc.stdout and "views 60" in proc.stdout
    out = tmp_path / "fbp.nii.gz"
    proc = _sub(["recon", sino, "--method", "fbp", "--out", out, "--quiet"])
    assert proc.returncode == 0, proc.stderr
    img = nib.load(str(out))
    data = np.asarray(img.get_fdata())
    assert sorted(data.shape) == [2, 96, 96] and np.isfinite(data).all()
    assert data.min() < -500 and data.max() > 0  # HU: air and tissue
    record = json.loads(Path(str(out) + ".run.json").read_text())
    assert record["method"] == "fbp" and record["metrics"]["psnr"] > 25  # measured 32.5 dB
    # A CT sinogram with an MRI method fails cleanly and writes nothing.
    before = _files(tmp_path)
    _assert_one_error(*_inproc(["recon", sino, "--method", "sense", "--out", tmp_path / "x.nii.gz"], capfd))
    assert _files(tmp_path) == before


@pytest.mark.parametrize("method, label", [("sense", "sense"), ("cs-wavelet", "cs-wavelet"), ("cs-tv", "cs-tv")])
def test_iterative_classical_methods_show_a_progress_bar_unless_quiet(method, label, tmp_path, capfd):
    """Issue 25: cs-wavelet ran about a minute with no sign of life; every iterative method shows its bar."""
    from medrecon.testing.samples import tiny_fastmri

    src = tiny_fastmri(tmp_path / "k.h5")
    capfd.readouterr()
    assert cli_main(["recon", str(src), "--method", method, "--iters", "3", "--out", str(tmp_path / "a.h5")]) == 0
    assert f"{label}: " in capfd.readouterr().err
    assert cli_main(["recon", str(src), "--method", method, "--iters", "3", "--quiet",
                     "--out", str(tmp_path / "b.h5")]) == 0
    assert f"{label}: " not in capfd.readouterr().err
    with h5py.File(tmp_path / "a.h5") as fa, h5py.File(tmp_path / "b.h5") as fb:  # the bar changes nothing else
        assert np.array_equal(fa["reconstruction"][()], fb["reconstruction"][()])


def test_ct_tv_shows_a_progress_bar(tmp_path, capfd):
    from medrecon.testing.samples import tiny_sinogram

    src = tiny_sinogram(tmp_path / "s.h5")
    capfd.readouterr()
    assert cli_main(["recon", str(src), "--method", "tv", "--iters", "3", "--out", str(tmp_path / "t.h5")]) == 0
    assert "tv: " in capfd.readouterr().err


def test_recon_evaluate_and_benchmark_give_the_same_numbers_for_the_same_file(tmp_path, capfd):
    """Issue 25: recon scored the whole image, evaluate the fastMRI width x width crop (28.06 vs 27.77 dB on the
    README example), the benchmark the whole image too. All three now use fastMRI's convention, checked on a
    non-square image where the crop matters."""
    import nibabel as nib

    yy, xx = np.mgrid[-1:1:48j, -1:1:32j]
    img = (((xx / 0.8) ** 2 + (yy / 0.9) ** 2) < 1).astype(np.float32) * (1 + 0.3 * np.sin(6 * xx) * np.cos(4 * yy))
    img = img.T  # NIfTI's first axis is x: the simulated slices are 48 tall and 32 wide, so the crop bites
    nib.save(nib.Nifti1Image(np.stack([img, img[::-1]], -1), np.eye(4)), str(tmp_path / "img.nii.gz"))
    target, recon = tmp_path / "target", tmp_path / "recon"
    target.mkdir()
    recon.mkdir()
    assert cli_main(["simulate", "mri", "--image", str(tmp_path / "img.nii.gz"), "--accel", "4", "--coils", "4",
                     "--out", str(target / "x.h5")]) == 0
    with h5py.File(target / "x.h5") as f:
        h, w = f["reconstruction_rss"].shape[-2:]
    assert h > w  # fastMRI crops to w x w: not a no-op here
    assert cli_main(["recon", str(target / "x.h5"), "--method", "zero-filled", "--quiet", "--out",
                     str(recon / "x.h5")]) == 0
    printed = capfd.readouterr().out
    record = json.loads((recon / "x.h5.run.json").read_text())["metrics"]
    assert cli_main(["evaluate", "--target", str(target), "--recon", str(recon), "--json"]) == 0
    ev = json.loads(capfd.readouterr().out)["fastmri"]["volumes"]["x.h5"]
    assert abs(record["psnr"] - ev["psnr"]) < 1e-3 and abs(record["ssim"] - ev["ssim"]) < 1e-4
    assert f"PSNR {ev['psnr']:.2f} dB, SSIM {ev['ssim']:.4f}" in printed and "fastMRI evaluate.py" in printed
    # the benchmark's scorer, on the same file's arrays, gives the same numbers
    from medrecon.benchmark.scoring import score_volume

    with h5py.File(target / "x.h5") as f, h5py.File(recon / "x.h5") as g:
        bench = score_volume(f["reconstruction_rss"][()], g["reconstruction"][()], "mri", [0, 1])
    assert abs(bench["psnr"] - ev["psnr"]) < 1e-3 and abs(bench["ssim"] - ev["ssim"]) < 1e-4
    assert abs(bench["nmse"] - ev["nmse"]) < 1e-6
