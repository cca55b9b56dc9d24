"""Non-Cartesian k-space I/O (issue 20): npz, BART cfl + trajectory, ISMRMRD with trajectories.

Round trips through the format registry, BART's own binary as the reference for BART's conventions (skipped
without ``bart``), one-line errors for bad trajectories, Cartesian files unchanged, and a small fuzz of the
non-Cartesian readers. Trajectories are made here (a plain radial), not by the operator layer's generators.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from medrecon.errors import InputError, MedreconError
from medrecon.io import formats
from medrecon.io.bart import (
    estimate_matrix,
    read_bart_kspace,
    read_bart_noncartesian,
    read_cfl,
    trajectory_sibling,
    write_bart_noncartesian,
    write_cfl,
)
from medrecon.io.guards import reader_errors
from medrecon.io.noncartesian import nudft
from medrecon.io.numpy_kspace import read_numpy_kspace, write_noncartesian_npz

ismrmrd = pytest.importorskip("ismrmrd")

from medrecon.io.ismrmrd_io import (
    _noncart_header_xml,
    has_trajectory,
    read_ismrmrd,
    read_ismrmrd_noncartesian,
    write_ismrmrd,
    write_ismrmrd_noncartesian,
)

BART = shutil.which("bart")
needs_bart = pytest.mark.skipif(BART is None, reason="needs the bart binary")
S, C, H, W, SPOKES, RO = 2, 3, 16, 16, 12, 16


def radial(spokes: int = SPOKES, readout: int = RO) -> np.ndarray:
    """``(spokes, readout, 2)`` radians: angles ``pi * arange(n) / n``, readout ``linspace(-pi, pi)`` open."""
    ang = np.pi * np.arange(spokes) / spokes
    r = np.linspace(-np.pi, np.pi, readout, endpoint=False)
    return np.stack([np.cos(ang)[:, None] * r, np.sin(ang)[:, None] * r], -1).astype(np.float32)


def data(slices: int = S, seed: int = 0) -> dict:
    """Random k-space ``(S, C, M)``, radial trajectory, maps ``(C, H, W)``, target ``(S, H, W)`` and dcf ``(M,)``."""
    g = np.random.default_rng(seed)
    m = SPOKES * RO
    k = (g.standard_normal((slices, C, m)) + 1j * g.standard_normal((slices, C, m))).astype(np.complex64)
    maps = (g.standard_normal((C, H, W)) + 1j * g.standard_normal((C, H, W))).astype(np.complex64)
    target = g.random((slices, H, W)).astype(np.float32)
    dcf = np.abs(radial().reshape(-1, 2)).sum(1).astype(np.float32)
    return {"kspace": k, "traj": radial(), "matrix": (H, W), "true_maps": maps, "target": target, "dcf": dcf}


def read(path: Path, slices=None, **kw):
    """Detect the format and read the measurement, as ``recon`` does (without the sandbox)."""
    spec = formats.detect(path)
    return spec.read_measurement(Path(path), slices, None, **kw)


def one_line_error(fn, *args, match: str, **kw) -> str:
    with pytest.raises(InputError, match=match) as info:
        fn(*args, **kw)
    msg = str(info.value)
    assert "\n" not in msg and msg.strip(), msg
    return msg


def assert_noncartesian(inp, d: dict, traj_atol: float = 0.0) -> None:
    assert inp.modality == "mri" and inp.mask is None and inp.recon_size == (H, W)
    assert inp.data.dtype == np.complex64 and inp.trajectory.dtype == np.float32
    np.testing.assert_array_equal(inp.data, d["kspace"])
    np.testing.assert_allclose(inp.trajectory, d["traj"].reshape(-1, 2), rtol=0, atol=traj_atol)
    assert inp.trajectory.shape == (d["kspace"].shape[-1], 2)


# ----------------------------------------------------------------------------- npz


def test_npz_round_trip_with_maps_target_dcf(tmp_path):
    d = data()
    path = write_noncartesian_npz(tmp_path / "scan.npz", **d)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.npz"]  # atomic: no temporary left
    inp = read(path)
    assert formats.detect(path).name == "npz"
    assert_noncartesian(inp, d)
    np.testing.assert_array_equal(inp.true_maps, d["true_maps"])
    np.testing.assert_array_equal(inp.target, d["target"])
    np.testing.assert_array_equal(inp.dcf, d["dcf"])
    sub = read(path, "1:2")  # --slices cuts data and target, not the shared trajectory
    np.testing.assert_array_equal(sub.data, d["kspace"][1:2])
    np.testing.assert_array_equal(sub.target, d["target"][1:2])
    assert sub.trajectory.shape == (SPOKES * RO, 2)


def test_npz_conventions_and_single_slice(tmp_path):
    d = data(slices=1)
    traj = d["traj"]
    write_noncartesian_npz(tmp_path / "c.npz", d["kspace"][0], traj / (2 * np.pi), (H, W), convention="cycles")
    inp = read(tmp_path / "c.npz")
    assert inp.data.shape == (1, C, SPOKES * RO) and inp.dcf is None and inp.true_maps is None
    np.testing.assert_allclose(inp.trajectory, traj.reshape(-1, 2), atol=1e-6)
    bart_traj = np.stack([traj[..., 0].T * H / (2 * np.pi), traj[..., 1].T * W / (2 * np.pi), 0 * traj[..., 0].T])
    write_noncartesian_npz(tmp_path / "b.npz", d["kspace"], bart_traj, (H, W), convention="bart")
    np.testing.assert_allclose(read(tmp_path / "b.npz").trajectory, traj.reshape(-1, 2), atol=1e-6)
    # written through a file handle: a name without .npz stays as given
    write_noncartesian_npz(tmp_path / "plain.dat", d["kspace"], traj, (H, W))
    assert (tmp_path / "plain.dat").is_file() and not (tmp_path / "plain.dat.npz").exists()


def test_npz_errors_are_one_line(tmp_path):
    d = data()
    k, traj = d["kspace"], d["traj"]
    np.savez(tmp_path / "nomatrix.npz", kspace=k, traj=traj)
    one_line_error(read, tmp_path / "nomatrix.npz", match="nomatrix.npz: non-Cartesian k-space needs 'matrix'")
    np.savez(tmp_path / "short.npz", kspace=k[..., :-10], traj=traj, matrix=[H, W])
    msg = one_line_error(read, tmp_path / "short.npz", match="trajectory has")
    assert msg == f"short.npz: the trajectory has {SPOKES * RO} samples but the k-space has {SPOKES * RO - 10} per coil"
    bad = traj.copy()
    bad[3, 4, 1] = np.nan
    np.savez(tmp_path / "nan.npz", kspace=k, traj=bad, matrix=[H, W])
    one_line_error(read, tmp_path / "nan.npz", match="nan.npz: .*NaN")
    np.savez(tmp_path / "range.npz", kspace=k, traj=traj * 2, matrix=[H, W])
    one_line_error(read, tmp_path / "range.npz", match="range.npz: .*outside")
    np.savez(tmp_path / "conv.npz", kspace=k, traj=traj, matrix=[H, W], traj_convention="furlongs")
    one_line_error(read, tmp_path / "conv.npz", match="unknown trajectory convention")
    np.savez(tmp_path / "mask.npz", kspace=k, traj=traj, matrix=[H, W], mask=np.ones(4, bool))
    one_line_error(read, tmp_path / "mask.npz", match="'mask'")
    np.savez(tmp_path / "maps.npz", kspace=k, traj=traj, matrix=[H, W], true_maps=d["true_maps"][:, :4])
    one_line_error(read, tmp_path / "maps.npz", match="true_maps")
    np.savez(tmp_path / "dcf.npz", kspace=k, traj=traj, matrix=[H, W], dcf=d["dcf"][:5])
    one_line_error(read, tmp_path / "dcf.npz", match="'dcf' must hold")
    # the writer refuses what the reader would refuse: nothing invalid is ever written
    one_line_error(write_noncartesian_npz, tmp_path / "w.npz", k[..., :-1], traj, (H, W), match="trajectory has")
    one_line_error(write_noncartesian_npz, tmp_path / "w.npz", k, bad, (H, W), match="NaN")
    assert not (tmp_path / "w.npz").exists()


def test_cartesian_npz_and_npy_unchanged(tmp_path):
    from medrecon.io.formats.numpy_kspace import tiny_npy, tiny_npz

    for writer, name in ((tiny_npz, "k.npz"), (tiny_npy, "k.npy")):
        path = writer(tmp_path / name)
        inp = formats.detect(path).read_measurement(path, None, "SCHW")
        k, mask = read_numpy_kspace(path, "SCHW")
        assert inp.trajectory is None and inp.dcf is None and inp.data.ndim == 4
        np.testing.assert_array_equal(inp.data, k)
        assert (inp.mask is None) == (mask is None)


# ----------------------------------------------------------------------------- BART


def test_bart_round_trip_sibling_rule_and_slices(tmp_path):
    d = data()
    base, tbase = write_bart_noncartesian(tmp_path / "scan.cfl", d["kspace"], d["traj"], (H, W))
    assert (base.name, tbase.name) == ("scan", "scan_traj") and trajectory_sibling(tmp_path / "scan.hdr") == tbase
    assert read_cfl(base).shape == (1, RO, SPOKES, C, *[1] * 9, S)  # BART's SLICE_DIM 13
    assert read_cfl(tbase).shape == (3, RO, SPOKES)
    for given in ("scan", "scan.cfl", "scan.hdr"):
        inp = read(tmp_path / given)
        assert formats.detect(tmp_path / given).name == "bart"
        assert_noncartesian(inp, d, traj_atol=1e-6)
    one_slice = data(slices=1)
    write_bart_noncartesian(tmp_path / "one", one_slice["kspace"][0], one_slice["traj"].reshape(-1, 2), (H, W))
    assert read_cfl(tmp_path / "one").shape == (1, SPOKES * RO, 1, C)  # (M, 2): one long "spoke"
    assert_noncartesian(read(tmp_path / "one"), one_slice, traj_atol=1e-6)


def test_bart_explicit_trajectory_and_matrix(tmp_path):
    d = data(slices=1)
    write_bart_noncartesian(tmp_path / "a", d["kspace"], d["traj"], (H, W))
    (tmp_path / "a_traj.hdr").rename(tmp_path / "other.hdr")
    (tmp_path / "a_traj.cfl").rename(tmp_path / "other.cfl")
    one_line_error(read_bart_noncartesian, tmp_path / "a", match="a: BART non-Cartesian k-space needs its trajectory "
                   "a_traj.hdr/.cfl")
    nc = read_bart_noncartesian(tmp_path / "a", tmp_path / "other")
    np.testing.assert_allclose(nc.traj, d["traj"].reshape(-1, 2), atol=1e-6)
    inp = read(tmp_path / "a", traj=tmp_path / "other.cfl", matrix=(32, 32))  # what `recon --traj` will pass
    assert inp.recon_size == (32, 32)
    np.testing.assert_allclose(inp.trajectory, d["traj"].reshape(-1, 2) / 2, atol=1e-6)  # same k, finer pixels
    one_line_error(read, tmp_path / "a", traj=tmp_path / "other", matrix=(8, 8), match="other: trajectory reaches")


def test_bart_matrix_rule_is_bart_estimate():
    t = np.zeros((3, 2, 1), np.float32)
    for peak, n in ((31.2, 64), (31.5, 64), (32.0, 64), (32.2, 66), (0.0, 1)):
        t[0, 0, 0], t[1, 1, 0] = peak, -peak / 2
        assert estimate_matrix(t)[0] == n
    assert estimate_matrix(np.array([[[-8.0]], [[7.5]], [[0.0]]])) == (16, 16)


def test_bart_errors_are_one_line(tmp_path):
    d = data(slices=1)
    k = d["kspace"][0]
    write_bart_noncartesian(tmp_path / "x", k, d["traj"], (H, W))
    # missing sibling: a dim-0 == 1 array that cannot be Cartesian says the trajectory is missing
    write_cfl(tmp_path / "lone", np.moveaxis(k, 0, -1)[None, :, None, :])  # (1, M, 1, C)
    one_line_error(read, tmp_path / "lone", match="lone: BART non-Cartesian k-space needs its trajectory lone_traj")
    # half a sibling pair
    write_cfl(tmp_path / "half", np.moveaxis(k.reshape(C, SPOKES, RO), 0, -1).transpose(1, 0, 2)[None])
    shutil.copy(tmp_path / "x_traj.hdr", tmp_path / "half_traj.hdr")
    one_line_error(read, tmp_path / "half", match="half_traj.cfl does not exist")
    # sample-count mismatch
    write_cfl(tmp_path / "short", np.moveaxis(k[:, : RO * (SPOKES - 1)].reshape(C, SPOKES - 1, RO), 0, -1)
              .transpose(1, 0, 2)[None])
    for f in ("hdr", "cfl"):
        shutil.copy(tmp_path / f"x_traj.{f}", tmp_path / f"short_traj.{f}")
    msg = one_line_error(read, tmp_path / "short", match="trajectory has")
    assert msg == f"short: the trajectory has {SPOKES * RO} samples but the k-space has {(SPOKES - 1) * RO} per coil"
    # NaN, complex, 3-D trajectories
    t = read_cfl(tmp_path / "x_traj")
    for name, change, match in (("nan", lambda a: a.__setitem__((0, 1, 1), np.nan), "nan_traj: .*NaN"),
                                ("cplx", lambda a: a.__setitem__((0, 1, 1), 1j), "imaginary"),
                                ("z", lambda a: a.__setitem__((2, 1, 1), 3.0), "third")):
        shutil.copy(tmp_path / "x.hdr", tmp_path / f"{name}.hdr")
        shutil.copy(tmp_path / "x.cfl", tmp_path / f"{name}.cfl")
        bad = t.copy()
        change(bad)
        write_cfl(tmp_path / f"{name}_traj", bad)
        one_line_error(read, tmp_path / name, match=match)
    # a trajectory next to Cartesian-looking k-space (dim 0 > 1)
    write_cfl(tmp_path / "cart", np.ones((RO, SPOKES, 1, C), np.complex64))
    for f in ("hdr", "cfl"):
        shutil.copy(tmp_path / f"x_traj.{f}", tmp_path / f"cart_traj.{f}")
    one_line_error(read, tmp_path / "cart", match="cart has a trajectory but 16 samples in dim 0")
    # the writer refuses a matrix BART would not estimate (odd, or beyond the trajectory's reach)
    one_line_error(write_bart_noncartesian, tmp_path / "w", k, d["traj"], (H, W + 1), match="BART would estimate")
    one_line_error(write_bart_noncartesian, tmp_path / "w", k[:, :-1], d["traj"], (H, W), match="trajectory has")


def test_cartesian_bart_unchanged(tmp_path):
    from medrecon.io.formats.bart import tiny_bart

    base = tiny_bart(tmp_path / "k")
    inp = read(base)
    k, mask = read_bart_kspace(base)
    assert inp.trajectory is None and inp.dcf is None
    np.testing.assert_array_equal(inp.data, k[None])
    np.testing.assert_array_equal(inp.mask, mask)
    # (1, Y, Z, C) without a trajectory is still a Cartesian slice of a 3-D scan
    write_cfl(tmp_path / "k3d", np.moveaxis(k, 0, -1)[None])
    inp3 = read(tmp_path / "k3d")
    assert inp3.trajectory is None
    np.testing.assert_array_equal(inp3.data, k[None])


# ----------------------------------------------------------------------------- BART binary


def _bart(*args: str, cwd: Path) -> str:
    out = subprocess.run([BART, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _adjoint(k: np.ndarray, traj: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Exact adjoint of :func:`nudft`: ``(C, M)`` -> ``(C, H, W)``."""
    h, w = hw
    t = traj.astype(np.float64)
    eh = np.exp(1j * t[:, :1] * (np.arange(h) - h // 2)[None])
    ew = np.exp(1j * t[:, 1:] * (np.arange(w) - w // 2)[None])
    return np.einsum("cm,mh,mw->chw", k.astype(np.complex128), eh, ew) / np.sqrt(h * w)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel(), b.ravel()
    return float(abs(np.vdot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b)))


@needs_bart
def test_bart_traj_and_phantom_read_as_radial(tmp_path):
    """``bart traj -r`` + ``bart phantom -k -t``: the reader gives a 64x64 radial trajectory whose adjoint DFT is
    BART's own ``nufft -a`` (same axes, sign, centre and scale)."""
    _bart("traj", "-r", "-x", "64", "-y", "32", "k_traj", cwd=tmp_path)
    _bart("phantom", "-s", "4", "-k", "-t", "k_traj", "k", cwd=tmp_path)
    _bart("nufft", "-a", "k_traj", "k", "img", cwd=tmp_path)
    assert _bart("estdims", "k_traj", cwd=tmp_path).split() == ["64", "64", "1"]
    inp = read(tmp_path / "k")
    assert inp.data.shape == (1, 4, 64 * 32) and inp.recon_size == (64, 64)
    t = inp.trajectory.reshape(32, 64, 2)  # spoke-major
    radius = np.linalg.norm(t, axis=-1)
    np.testing.assert_allclose(radius.max(), 2 * np.pi * 31.5 / 64, rtol=1e-6)  # BART's -N/2 + 1/2 .. N/2 - 1/2
    np.testing.assert_allclose(radius[:, 0], radius[:, -1], rtol=1e-5)  # spokes symmetric through the centre
    direction = t[:, -1] / radius[:, -1:]
    position = (t * direction[:, None, :]).sum(-1)  # signed position along each spoke
    np.testing.assert_allclose(np.diff(position, axis=1), 2 * np.pi / 64, atol=1e-5)  # steps of one 1/FOV unit
    cross = t[:, 0, 0] * t[:, -1, 1] - t[:, 0, 1] * t[:, -1, 0]
    np.testing.assert_allclose(cross, 0, atol=1e-4)  # each spoke is a line through k = 0
    angles = np.unwrap(np.arctan2(t[:, -1, 1], t[:, -1, 0]))
    np.testing.assert_allclose(np.abs(np.diff(angles)), np.pi / 32, atol=1e-5)  # 32 spokes over 180 degrees
    bart_img = np.moveaxis(read_cfl(tmp_path / "img").reshape(64, 64, 4), -1, 0)
    ours = _adjoint(inp.data[0], inp.trajectory, (64, 64))
    assert _corr(ours, bart_img) > 0.9999
    assert _corr(ours[:, ::-1], bart_img) < 0.9 and _corr(ours.conj(), bart_img) < 0.9
    np.testing.assert_allclose(np.linalg.norm(bart_img) / np.linalg.norm(ours), 1.0, rtol=0.01)


@needs_bart
def test_bart_nufft_runs_on_written_files(tmp_path):
    """Our writer's files are what ``bart nufft`` expects: it estimates our matrix, its adjoint matches ours,
    and its forward NUFFT of an image matches our exact DFT."""
    hw, spokes, ro = (24, 16), 20, 48
    ang = np.pi * np.arange(spokes) / spokes
    r = np.linspace(-np.pi, np.pi, ro, endpoint=False)
    traj = np.stack([np.cos(ang)[:, None] * r, np.sin(ang)[:, None] * r], -1).astype(np.float32)
    img = np.zeros(hw, np.complex64)
    img[6:14, 4:12] = 1 + 0.5j
    img[3, 10] = 2
    k = nudft(img[None] * np.array([1, 1j, 0.5])[:, None, None], traj)  # (C=3, M)
    base, tbase = write_bart_noncartesian(tmp_path / "ksp", k, traj, hw)
    assert _bart("estdims", tbase.name, cwd=tmp_path).split() == [str(hw[0]), str(hw[1]), "1"]
    _bart("nufft", "-a", tbase.name, base.name, "adj", cwd=tmp_path)
    adj = read_cfl(tmp_path / "adj")
    assert adj.shape[:4] == (*hw, 1, 3)
    assert _corr(np.moveaxis(adj.reshape(*hw, 3), -1, 0), _adjoint(k, traj.reshape(-1, 2), hw)) > 0.9999
    write_cfl(tmp_path / "img", img[:, :, None])
    _bart("nufft", tbase.name, "img", "fwd", cwd=tmp_path)
    fwd = read_cfl(tmp_path / "fwd").reshape(-1, order="F")  # (1, readout, spokes): spoke-major
    exact = nudft(img, traj)
    assert _corr(fwd, exact) > 0.999
    np.testing.assert_allclose(np.linalg.norm(fwd) / np.linalg.norm(exact), 1.0, rtol=0.02)


# ----------------------------------------------------------------------------- ISMRMRD


@pytest.mark.parametrize("convention", ["cycles", "radians"])
def test_ismrmrd_round_trip(tmp_path, convention):
    d = data()
    path = write_ismrmrd_noncartesian(tmp_path / "scan.h5", d["kspace"], d["traj"], (H, W),
                                      trajectory_name="goldenangle", convention=convention)
    assert formats.detect(path).name == "ismrmrd" and has_trajectory(path)
    inp = read(path)
    assert_noncartesian(inp, d, traj_atol=1e-6 if convention == "cycles" else 0.0)
    nc = read_ismrmrd_noncartesian(path)
    assert nc.attrs["trajectory"] == "goldenangle" and nc.attrs["traj_convention"] == convention
    assert not nc.attrs["noise_whitened"]
    with h5py.File(path, "r") as f:
        header = ismrmrd.xsd.CreateFromDocument(f["dataset/xml"][0])  # schema-valid
    enc = header.encoding[0]
    assert (enc.encodedSpace.matrixSize.x, enc.encodedSpace.matrixSize.y) == (H, W)
    assert enc.trajectory.value == "goldenangle"
    params = {p.name: p.value for p in header.userParameters.userParameterString}
    assert params == {"trajectory_convention": convention}
    with ismrmrd.Dataset(str(path), "dataset", mode="r") as dset:  # the ismrmrd package reads our spokes
        acq = dset.read_acquisition(SPOKES + 3)  # slice 1, spoke 3
    assert (acq.idx.slice, acq.idx.kspace_encode_step_1, acq.trajectory_dimensions) == (1, 3, 2)
    np.testing.assert_array_equal(acq.data, d["kspace"][1, :, 3 * RO : 4 * RO])
    scale = 2 * np.pi if convention == "cycles" else 1.0
    np.testing.assert_allclose(acq.traj * scale, d["traj"][3], atol=1e-6)


def _raw(path: Path, xml: bytes, spokes: list) -> Path:
    """An ISMRMRD file written with the ismrmrd package: ``spokes`` = ``[(data (C, n), traj (n, d), slice, flag)]``."""
    with ismrmrd.Dataset(str(path), "dataset", mode="w") as dset:
        dset.write_xml_header(xml)
        for i, (k, t, s, flag) in enumerate(spokes):
            acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(k, np.complex64),
                                                 None if t is None else np.ascontiguousarray(t, np.float32))
            acq.idx.slice, acq.idx.kspace_encode_step_1, acq.sample_time_us = s, i, 5.0
            if flag is not None:
                acq.set_flag(flag)
            dset.append_acquisition(acq)
    return path


def test_ismrmrd_default_convention_is_cycles_and_whitening(tmp_path):
    d = data(slices=1)
    k, traj = d["kspace"][0], d["traj"]
    xml = _noncart_header_xml(1, C, SPOKES, (H, W), "spiral", "cycles")
    xml = xml[: xml.index(b"<userParameters>")] + b"</ismrmrdHeader>"  # no trajectory_convention: cycles
    g = np.random.default_rng(5)
    mix = np.tril(g.standard_normal((C, C)) + 1j * g.standard_normal((C, C))) * 0.3 + np.eye(C)
    noise = mix @ ((g.standard_normal((C, 4096)) + 1j * g.standard_normal((C, 4096))) / np.sqrt(2))
    spokes = [(noise, None, 0, ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    spokes += [(k[:, i * RO : (i + 1) * RO], traj[i] / (2 * np.pi), 0, None) for i in range(SPOKES)]
    path = _raw(tmp_path / "gadgetron.h5", xml, spokes)
    nc = read_ismrmrd_noncartesian(path)
    np.testing.assert_allclose(nc.traj, traj.reshape(-1, 2), atol=1e-6)
    assert nc.attrs["noise_whitened"] and nc.attrs["trajectory"] == "spiral"
    psi = noise @ noise.conj().T / noise.shape[1]
    expect = np.linalg.solve(np.linalg.cholesky(psi), k)  # L^-1 y, the Cartesian reader's whitening
    np.testing.assert_allclose(nc.kspace[0], expect, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(read_ismrmrd_noncartesian(path, whiten=False).kspace[0], k)


def test_ismrmrd_errors_are_one_line(tmp_path):
    d = data(slices=1)
    k, traj = d["kspace"][0], d["traj"]
    xml = _noncart_header_xml(2, C, SPOKES, (H, W), "radial", "radians")

    def spokes(t=traj, slices=(0,)):
        return [(k[:, i * RO : (i + 1) * RO], t[i], s, None) for s in slices for i in range(SPOKES)]

    bad = traj.copy()
    bad[2, 5] = np.nan
    one_line_error(read, _raw(tmp_path / "nan.h5", xml, spokes(bad)), match="nan.h5: .*NaN")
    one_line_error(read, _raw(tmp_path / "range.h5", xml, spokes(traj * 1.5)), match="range.h5: .*outside")
    mixed = spokes() + [(k[:, :RO], None, 0, None)]
    one_line_error(read, _raw(tmp_path / "mixed.h5", xml, mixed), match="mixes Cartesian")
    two = spokes(slices=(0,)) + [(a, t * 0.5, 1, f) for a, t, _, f in spokes()]
    one_line_error(read, _raw(tmp_path / "slices.h5", xml, two), match="different trajectories")
    shorter = spokes() + [(k[:, :RO], traj[0], 1, None)]
    one_line_error(read, _raw(tmp_path / "count.h5", xml, shorter), match="different trajectories")
    three = [(a, np.concatenate([t, 0 * t[:, :1]], 1), s, f) for a, t, s, f in spokes()]
    one_line_error(read, _raw(tmp_path / "3d.h5", xml, three), match="3-D trajectories")
    odd = xml.replace(b"<value>radians</value>", b"<value>parsecs</value>")
    one_line_error(read, _raw(tmp_path / "conv.h5", odd, spokes()), match="trajectory_convention must be one of")
    one_line_error(write_ismrmrd_noncartesian, tmp_path / "w.h5", k[:, :-1], traj, (H, W), match="trajectory has")
    one_line_error(write_ismrmrd_noncartesian, tmp_path / "w.h5", k, traj, (H, W), trajectory_name="zigzag",
                   match="trajectory_name")


def test_cartesian_ismrmrd_unchanged(tmp_path):
    from medrecon.io.formats.base import tiny_kspace

    k, mask, _ = tiny_kspace(slices=2, coils=3)
    path = write_ismrmrd(tmp_path / "cart.h5", k, mask=mask)
    assert not has_trajectory(path)
    inp = read(path)
    vol = read_ismrmrd(path)
    assert inp.trajectory is None and inp.dcf is None
    np.testing.assert_array_equal(inp.data, vol.kspace)
    np.testing.assert_array_equal(inp.mask, vol.mask)


# ----------------------------------------------------------------------------- fuzz


def _files(seed: Path) -> list[Path]:
    """A seed's files, BART's trajectory sibling included."""
    if seed.suffix == "":
        return sorted(seed.parent.glob(seed.name + "*.*"))
    return [seed]


def _check_clean(fn, *args) -> None:
    """``fn(*args)`` gives a consistent non-Cartesian input (or a Cartesian one) or a one-line MedreconError."""
    from medrecon.testing.fuzzing import time_limit

    with time_limit(30):
        try:
            inp = fn(*args)
        except MedreconError as exc:
            assert str(exc).strip() and "\n" not in str(exc).strip(), repr(exc)
            return
    if inp.trajectory is not None:
        m = inp.data.shape[-1]
        assert inp.data.ndim == 3 and inp.trajectory.shape == (m, 2) and inp.recon_size
        assert np.isfinite(inp.data).all() and np.abs(inp.trajectory).max() <= np.pi * 1.001


def _read_guarded(path: Path):
    with reader_errors(path.name, "input"):  # as recon's reader wrapper sees it
        return read(path)


@pytest.mark.parametrize("kind", ["npz_noncart", "bart_noncart", "ismrmrd_noncart"])
def test_damaged_noncartesian_files_fail_cleanly(kind, tmp_path):
    """Truncations (in-process) and mutations (through ``load_input``'s sandbox) of each file of the seed.

    Mutations go through the sandbox because a mutated HDF5 heap can hang libhdf5 itself (already when the
    Cartesian reader reads ``/dataset/xml``), where no Python-level alarm reaches; the sandbox's read timeout
    turns that into an InputError, as in ``recon``.
    """
    from medrecon.app.pipeline import load_input
    from medrecon.testing.fuzzing import MUTATIONS, fuzz_environment, make_seed, truncations

    seed = make_seed(kind, tmp_path / "seed")
    rng = random.Random(kind)
    for target in _files(seed):
        raw = target.read_bytes()
        cuts = [raw[:cut] for cut in truncations(len(raw), dense_head=64, n_tail=100)]
        muts = [MUTATIONS[m](raw, rng) for m in sorted(MUTATIONS) for _ in range(5)]
        for i, body in enumerate(cuts + muts):
            case = tmp_path / f"{target.name}-{i}"
            case.mkdir()
            for f in _files(seed):
                (case / f.name).write_bytes(body if f == target else f.read_bytes())
            if i < len(cuts):
                with fuzz_environment(0.25, read_timeout=0):
                    _check_clean(_read_guarded, case / seed.name)
            else:
                with fuzz_environment(0.25, read_timeout=10):
                    _check_clean(load_input, case / seed.name)
    inp = read(seed)  # the untouched seed is valid
    assert inp.trajectory is not None and inp.data.ndim == 3
