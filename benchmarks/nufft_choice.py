"""Choose the NUFFT library for :mod:`operators.nufft` by measurement (issue 20).

For every candidate that imports here it measures, in our convention (docs/noncartesian.md, "Conventions"; each
library's own scaling and coordinate units are mapped exactly, not fitted):

* accuracy: relative l2 error of forward (type 2) and adjoint (type 1) against the exact NDFT
  (:func:`operators.nufft.ndft_matrix`) on a 32x28 image with 300 random points, in complex64 and complex128;
* adjointness: the dot test ``|<Ax, y> - <x, A^H y>| / (||Ax|| ||y||)`` of the library's forward/adjoint pair on
  the same problem (complex128);
* time: forward and adjoint of 8 coils on a 256x256 matrix with 400 radial spokes x 512 readout samples
  (204,800 samples per coil), complex64, CPU, with 1 and with 2 threads (each in a fresh subprocess with
  ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``/``NUMBA_NUM_THREADS`` set); median of 3 after one warm-up run; plan or
  precomputation time separately;
* autograd on torch tensors, and the library's GPU path.

The default backend is the most accurate-enough (<= 1e-4 in both precisions and directions) and then the fastest.

Usage:
    python benchmarks/nufft_choice.py --out benchmarks/results/nufft_choice_2026-12-07
    python benchmarks/nufft_choice.py --quick     # smaller timing problem, to check the script
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Each candidate: (name, package to import, what the GPU path is, autograd on torch tensors).
CANDIDATES = {
    "finufft": ("finufft", "cufinufft (separate package, same API; pip install cufinufft)",
                "no: numpy in/out; operators.nufft wraps it in a torch.autograd.Function"),
    "finufft(upsampfac auto)": ("finufft", "cufinufft (separate package, same API; pip install cufinufft)",
                                "no: numpy in/out"),
    "operators.nufft[finufft]": ("finufft", "backend='cufinufft' when importable, else backend='torch'",
                                 "yes (torch.autograd.Function, backward = the other transform)"),
    "operators.nufft[ducc0]": ("ducc0", "none: backend='cufinufft' or 'torch' on CUDA tensors",
                               "yes (torch.autograd.Function, backward = the other transform)"),
    "operators.nufft[torch]": ("torch", "the same code on CUDA tensors", "yes (same Function)"),
    "torchkbnufft(table 2^10, default)": ("torchkbnufft", "yes: same modules on CUDA tensors", "yes (native torch)"),
    "torchkbnufft(table 2^14)": ("torchkbnufft", "yes: same modules on CUDA tensors", "yes (native torch)"),
    "torchkbnufft(sparse matrix)": ("torchkbnufft", "yes: same modules on CUDA tensors", "yes (native torch)"),
    "pynufft": ("pynufft", "optional cupy/reikna backends", "no: numpy in/out"),
    "mri-nufft[finufft]": ("mrinufft", "backend 'cufinufft' / 'gpunufft' / 'torchkbnufft-gpu'",
                           "yes with get_operator(..., wrt_data=True) (a torch.autograd.Function)"),
    "sigpy": ("sigpy", "cupy arrays", "no: numpy/cupy in/out"),
    "ducc0": ("ducc0", "none (CPU only)", "no: numpy in/out"),
}

EPS = 1e-6


def _radial(n_spokes: int, n_readout: int) -> np.ndarray:
    from operators.trajectories import radial

    return radial(n_spokes, n_readout).reshape(-1, 2).astype(np.float64)


# ------------------------------------------------------------------------------------------------- adapters
# make(traj (M, 2) float64 radians, shape, n_coils, complex dtype) -> (forward, adjoint, setup seconds) where
# forward maps numpy (C, H, W) -> (C, M) and adjoint (C, M) -> (C, H, W), both in our convention and scale.
def _make_finufft(traj, shape, nc, cdt, upsampfac=2.0):
    import finufft

    rdt = np.float64 if cdt == np.complex128 else np.float32
    t0 = time.perf_counter()
    kw = {"eps": EPS, "dtype": np.dtype(cdt).name, "upsampfac": upsampfac}  # 0.0 = finufft chooses per plan
    p2 = finufft.Plan(2, shape, nc, isign=-1, **kw)
    p1 = finufft.Plan(1, shape, nc, isign=1, **kw)
    for p in (p2, p1):
        p.setpts(np.ascontiguousarray(traj[:, 0], rdt), np.ascontiguousarray(traj[:, 1], rdt))
    s = 1 / math.sqrt(shape[0] * shape[1])
    return (lambda x: p2.execute(x) * s), (lambda y: p1.execute(y) * s), time.perf_counter() - t0


def _make_ours(backend):
    def make(traj, shape, nc, cdt):
        import torch

        from operators.nufft import NUFFT

        tdt = torch.complex128 if cdt == np.complex128 else torch.complex64
        t0 = time.perf_counter()
        op = NUFFT(torch.from_numpy(traj), shape, backend=backend, eps=EPS)
        op.transform_for(torch.device("cpu"), tdt)
        setup = time.perf_counter() - t0
        fwd = lambda x: op(torch.from_numpy(x)).numpy()
        adj = lambda y: op.adjoint(torch.from_numpy(y)).numpy()
        return fwd, adj, setup

    return make


def _make_tkbn(mode):
    def make(traj, shape, nc, cdt):
        import torch
        import torchkbnufft as tkbn

        rdt = torch.float64 if cdt == np.complex128 else torch.float32
        t0 = time.perf_counter()
        kw = {"im_size": shape, "grid_size": tuple(2 * s for s in shape), "numpoints": 6, "dtype": rdt}
        if mode == "table14":
            kw["table_oversamp"] = 2 ** 14
        fwd_op, adj_op = tkbn.KbNufft(**kw), tkbn.KbNufftAdjoint(**kw)
        om = torch.from_numpy(traj.T.copy()).to(rdt)
        mats = None
        if mode == "spmat":
            mats = tkbn.calc_tensor_spmatrix(om, im_size=shape, grid_size=kw["grid_size"], numpoints=6)
        setup = time.perf_counter() - t0
        # norm=None plus our 1/sqrt(H W): torchkbnufft's norm="ortho" divides by sqrt of the *oversampled* grid
        # size (measured: a factor 2 off for 2x oversampling).
        s = 1 / math.sqrt(shape[0] * shape[1])
        fwd = lambda x: (fwd_op(torch.from_numpy(x)[None], om, interp_mats=mats)[0] * s).numpy()
        adj = lambda y: (adj_op(torch.from_numpy(y)[None], om, interp_mats=mats)[0] * s).numpy()
        return fwd, adj, setup

    return make


def _make_pynufft(traj, shape, nc, cdt):
    import pynufft

    t0 = time.perf_counter()
    nu = pynufft.NUFFT()
    grid = tuple(2 * s for s in shape)
    nu.plan(traj, shape, grid, (6, 6))
    setup = time.perf_counter() - t0
    s = 1 / math.sqrt(shape[0] * shape[1])
    sa = float(np.prod(grid)) * s  # pynufft's adjoint divides by the oversampled grid size
    fwd = lambda x: np.stack([nu.forward(xc) for xc in x]).astype(cdt) * s
    adj = lambda y: np.stack([nu.adjoint(yc) for yc in y]).astype(cdt) * sa
    return fwd, adj, setup


def _make_mrinufft(traj, shape, nc, cdt):
    import mrinufft

    t0 = time.perf_counter()
    op = mrinufft.get_operator("finufft")(traj.astype(np.float32 if cdt == np.complex64 else np.float64), shape,
                                          n_coils=nc, density=False, squeeze_dims=False, eps=EPS)
    setup = time.perf_counter() - t0
    # mri-nufft divides by sqrt of the oversampled grid size (norm_factor); ours is 1/sqrt(H W).
    s = float(op.norm_factor) / math.sqrt(shape[0] * shape[1])
    fwd = lambda x: np.asarray(op.op(x.astype(cdt)))[0] * s
    adj = lambda y: np.asarray(op.adj_op(y.astype(cdt)[None]))[0] * s
    return fwd, adj, setup


def _make_sigpy(traj, shape, nc, cdt):
    import sigpy

    # sigpy's coordinates are in cycles per FOV, [-N/2, N/2], column d along image axis d; default
    # oversamp 1.25, width 4 (its own accuracy/speed trade-off); orthonormal scaling like ours.
    coord = traj / (2 * math.pi) * np.array(shape, dtype=np.float64)
    coord = coord.astype(np.float32 if cdt == np.complex64 else np.float64)
    fwd = lambda x: sigpy.nufft(x.astype(cdt), coord)
    adj = lambda y: sigpy.nufft_adjoint(y.astype(cdt), coord, (y.shape[0], *shape))
    return fwd, adj, 0.0


def _make_ducc0(traj, shape, nc, cdt):
    import ducc0

    rdt = np.float64 if cdt == np.complex128 else np.float32
    eps = EPS if cdt == np.complex128 else 1.1e-6  # ducc0 refuses eps <= 1e-6 in single precision
    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    t0 = time.perf_counter()
    # One plan for both directions ("can be used for both transform types" per its docs), so both use the same
    # kernel and oversampling (exact adjoints); ducc0 chooses sigma in its default range [1.19, 2.51].
    p2 = p1 = ducc0.nufft.plan(nu2u=False, coord=np.ascontiguousarray(traj, rdt), grid_shape=shape, epsilon=eps,
                               nthreads=threads)
    setup = time.perf_counter() - t0
    s = 1 / math.sqrt(shape[0] * shape[1])
    fwd = lambda x: p2.u2nu(grid=np.ascontiguousarray(x), forward=True) * s
    adj = lambda y: p1.nu2u(points=np.ascontiguousarray(y), forward=False,
                            out=np.empty((y.shape[0], *shape), cdt)) * s
    return fwd, adj, setup


MAKERS: dict[str, Callable] = {
    "finufft": _make_finufft,
    "finufft(upsampfac auto)": lambda *a: _make_finufft(*a, upsampfac=0.0),
    "operators.nufft[finufft]": _make_ours("finufft"),
    "operators.nufft[ducc0]": _make_ours("ducc0"),
    "operators.nufft[torch]": _make_ours("torch"),
    "torchkbnufft(table 2^10, default)": _make_tkbn("table10"),
    "torchkbnufft(table 2^14)": _make_tkbn("table14"),
    "torchkbnufft(sparse matrix)": _make_tkbn("spmat"),
    "pynufft": _make_pynufft,
    "mri-nufft[finufft]": _make_mrinufft,
    "sigpy": _make_sigpy,
    "ducc0": _make_ducc0,
}


# --------------------------------------------------------------------------------------------- measurements
def accuracy(name: str) -> dict:
    """Relative errors against the exact NDFT on a small problem, and the dot test."""
    import torch

    from operators.nufft import ndft_matrix

    rng = np.random.default_rng(0)
    shape, m = (32, 28), 300
    traj = rng.uniform(-math.pi, math.pi, (m, 2))
    e = ndft_matrix(torch.from_numpy(traj), shape).numpy()
    x = (rng.standard_normal((1, *shape)) + 1j * rng.standard_normal((1, *shape)))
    y = (rng.standard_normal((1, m)) + 1j * rng.standard_normal((1, m)))
    ref_f = x.reshape(1, -1) @ e.T
    ref_a = (y @ e.conj()).reshape(1, *shape)
    out = {}
    for cdt in (np.complex64, np.complex128):
        fwd, adj, _ = MAKERS[name](traj, shape, 1, cdt)
        f = np.asarray(fwd(x.astype(cdt))).reshape(1, -1).astype(np.complex128)
        a = np.asarray(adj(y.astype(cdt))).reshape(1, *shape).astype(np.complex128)
        key = np.dtype(cdt).name
        out[f"forward_rel_err_{key}"] = float(np.linalg.norm(f - ref_f) / np.linalg.norm(ref_f))
        out[f"adjoint_rel_err_{key}"] = float(np.linalg.norm(a - ref_a) / np.linalg.norm(ref_a))
        lhs, rhs = np.vdot(y, f), np.vdot(a, x)
        out[f"dot_test_{key}"] = float(abs(lhs - rhs) / (np.linalg.norm(f) * np.linalg.norm(y)))
    out["max_rel_err"] = max(v for k, v in out.items() if "rel_err" in k)
    return out


def autograd_check(name: str) -> dict:
    """Does a gradient flow through the forward on torch tensors, and is the VJP the adjoint?"""
    try:
        return _autograd_check(name)
    except Exception as exc:  # noqa: BLE001 - recorded, not raised
        return {"autograd": False, "note": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}


def _autograd_check(name: str) -> dict:
    import torch

    rng = np.random.default_rng(1)
    shape, m = (16, 12), 80
    traj = rng.uniform(-math.pi, math.pi, (m, 2))
    x = torch.randn(1, *shape, dtype=torch.complex128, requires_grad=True)
    y = torch.randn(1, m, dtype=torch.complex128)
    if name.startswith("operators.nufft"):
        from operators.nufft import NUFFT

        op = NUFFT(torch.from_numpy(traj), shape, backend=name.split("[")[1].rstrip("]"))
        f, adj = op, op.adjoint
    elif name.startswith("torchkbnufft"):
        import torchkbnufft as tkbn

        kw = {"im_size": shape, "grid_size": tuple(2 * s for s in shape), "dtype": torch.float64}
        om = torch.from_numpy(traj.T.copy())
        fo, ao = tkbn.KbNufft(**kw), tkbn.KbNufftAdjoint(**kw)
        f = lambda v: fo(v[None], om)[0]
        adj = lambda v: ao(v[None], om)[0]
    elif name == "mri-nufft[finufft]":
        import mrinufft

        op = mrinufft.get_operator("finufft", wrt_data=True)(traj, shape, n_coils=1, density=False,
                                                              squeeze_dims=False)
        f, adj = op.op, op.adj_op
    else:
        return {"autograd": False, "note": "numpy-only API: torch tensors must be converted (no gradient)"}
    (vjp,) = torch.autograd.grad(f(x), x, grad_outputs=y)
    ref = adj(y)
    err = float((vjp - ref.reshape(vjp.shape)).norm() / ref.norm())
    return {"autograd": True, "vjp_vs_adjoint_rel_err": err}


def timing(name: str, quick: bool) -> dict:
    """Forward and adjoint time of 8 coils on the radial problem (run in a subprocess with fixed threads)."""
    shape = (128, 128) if quick else (256, 256)
    spokes, readout, nc = (100, 256, 4) if quick else (400, 512, 8)
    traj = _radial(spokes, readout)
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((nc, *shape)) + 1j * rng.standard_normal((nc, *shape))).astype(np.complex64)
    y = (rng.standard_normal((nc, traj.shape[0])) + 1j * rng.standard_normal((nc, traj.shape[0]))).astype(
        np.complex64)
    fwd, adj, setup = MAKERS[name](traj, shape, nc, np.complex64)
    res = {"setup_s": setup}
    for label, fn, arg in (("forward", fwd, x), ("adjoint", adj, y)):
        t0 = time.perf_counter()
        fn(arg)  # warm-up (JIT compilation, FFTW planning, lazy tables)
        res[f"{label}_first_call_s"] = time.perf_counter() - t0
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn(arg)
            ts.append(time.perf_counter() - t0)
        res[f"{label}_median_s"] = float(np.median(ts))
        res[f"{label}_min_s"] = float(min(ts))
    return res


def large_adjointness() -> dict:
    """finufft's own type-1/type-2 pair on the big radial problem in double precision, with the upsampling
    factor left to finufft (``upsampfac=0``, its default) and fixed at 2 (what operators.nufft does)."""
    import finufft

    shape = (256, 256)
    traj = _radial(400, 512)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    y = rng.standard_normal(traj.shape[0]) + 1j * rng.standard_normal(traj.shape[0])
    out = {}
    for label, kw in (("upsampfac_auto", {}), ("upsampfac_2", {"upsampfac": 2.0})):
        p2 = finufft.Plan(2, shape, 1, eps=EPS, isign=-1, dtype="complex128", **kw)
        p1 = finufft.Plan(1, shape, 1, eps=EPS, isign=1, dtype="complex128", **kw)
        for p in (p2, p1):
            p.setpts(traj[:, 0].copy(), traj[:, 1].copy())
        f, a = p2.execute(x), p1.execute(y)
        out[label] = float(abs(np.vdot(y, f) - np.vdot(a, x)) / (np.linalg.norm(f) * np.linalg.norm(y)))
    return out


def _worker(name: str, quick: bool) -> None:
    warnings.simplefilter("ignore")
    try:
        print(json.dumps({"ok": True, **timing(name, quick)}))
    except Exception as exc:  # noqa: BLE001
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}))


def _run_timing(name: str, threads: int, quick: bool) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               NUMBA_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    cmd = [sys.executable, __file__, "--worker", name] + (["--quick"] if quick else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return {"ok": False, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return json.loads(lines[-1])


def _versions() -> dict:
    import importlib.metadata as md

    out = {}
    for pkg in ("finufft", "torchkbnufft", "pynufft", "mri-nufft", "sigpy", "ducc0", "torch", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="folder for results.json")
    ap.add_argument("--quick", action="store_true", help="small timing problem (script check)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--only", nargs="*", default=None, help="candidate names to run")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(args.worker, args.quick)
        return
    warnings.simplefilter("ignore")
    import importlib.util

    import torch

    torch.set_num_threads(1)
    results: dict = {"date": "2026-12-07", "command": " ".join(["python", "benchmarks/nufft_choice.py"] + sys.argv[1:]),
                     "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                                 "note": "2-core machine, both cores busy with other long jobs during the run: "
                                         "absolute times are inflated and the 2-thread numbers understate scaling"},
                     "versions": _versions(),
                     "problem": {"accuracy": "32x28 image, 300 uniform random points in [-pi, pi]^2, eps=1e-6",
                                 "timing": ("128x128, 4 coils, 100x256 radial (quick)" if args.quick else
                                            "256x256, 8 coils, 400 spokes x 512 readout radial, complex64")},
                     "candidates": {}}
    for name, (module, gpu, grad) in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        entry: dict = {"gpu_path": gpu, "autograd_summary": grad}
        if importlib.util.find_spec(module) is None:
            entry["skipped"] = f"{module} is not importable (pip install failed or not tried)"
            results["candidates"][name] = entry
            continue
        print(f"== {name}", flush=True)
        try:
            entry["accuracy"] = accuracy(name)
        except Exception as exc:  # noqa: BLE001
            entry["accuracy"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            traceback.print_exc()
        entry["autograd"] = autograd_check(name)
        entry["timing"] = {f"{t}_threads": _run_timing(name, t, args.quick) for t in args.threads}
        results["candidates"][name] = entry
        print(json.dumps(entry, indent=1), flush=True)
    if importlib.util.find_spec("finufft") is not None and not args.quick:
        results["finufft_large_problem_dot_test_complex128"] = large_adjointness()
    ok = {n: e for n, e in results["candidates"].items()
          if "accuracy" in e and e["accuracy"].get("max_rel_err", 1.0) <= 1e-4
          and e["timing"].get("1_threads", {}).get("ok")}
    if ok:
        def total(e):
            t = e["timing"]["1_threads"]
            return t["forward_median_s"] + t["adjoint_median_s"]

        best = min(ok, key=lambda n: total(ok[n]))
        results["choice"] = {"accurate_enough": sorted(ok), "fastest_accurate_1_thread": best,
                             "rule": "max relative error <= 1e-4 (both precisions, both directions), then the "
                                     "smallest forward + adjoint time with 1 thread"}
    text = json.dumps(results, indent=1)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
