"""Where a sampler step's time goes (issue 22): network forward, network backward, operator, CG, the rest.

Runs each diffusion sampler on the demo's inputs (the shipped sample scans, simulated exactly as
``medrecon demo`` does) and splits the time of the sampler chain into exclusive parts:

- ``network``: the prior's UNet forward passes (``medrecon.priors.prior.run_network``);
- ``backward``: ``torch.autograd.grad`` (DPS's gradient through the network and the operator);
- ``operator``: ``LinearOperator.forward`` / ``adjoint`` / ``normal`` (FFTs and coil products for MRI, the
  sparse projector for CT) outside a backward pass;
- ``cg``: the vector arithmetic of the conjugate-gradient solvers (``medrecon.sampling.cg``), without
  the operator applications they make;
- ``other``: everything else in the chain (the DDIM / Langevin updates, noise draws, support masks,
  divergence checks, Python): the overhead beyond network and operator.

Timers are exclusive (a region's time excludes the instrumented regions it calls) and synchronize CUDA at
each boundary when the run is on a GPU, so the parts add up to the chain's wall time. The instrumentation
itself costs a few microseconds per call; the ``calls`` field shows how many there were.

    python benchmarks/profile_samplers.py --out benchmarks/results/profile_cpu_DATE/profile.json

Prints a table (ms per step and % of the step) and writes the JSON (with machine, commit, threads and
settings). ``--methods`` and ``--modalities`` pick a subset; ``--steps`` overrides each sampler's step count
(the default is the demo's reduced CPU settings).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PARTS = ("network", "backward", "operator", "cg", "other")


class ExclusiveClock:
    """Accumulates exclusive wall time per category over nested regions."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.total: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[list] = []  # [category, start, child_time]

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    @contextlib.contextmanager
    def region(self, category: str, root: bool = False):
        if not root and not self._stack:  # outside a sampler chain (set-up, final misfit): not counted
            yield
            return
        frame = [category, self._now(), 0.0]
        self._stack.append(frame)
        try:
            yield
        finally:
            elapsed = self._now() - frame[1]
            self._stack.pop()
            self.total[category] = self.total.get(category, 0.0) + elapsed - frame[2]
            self.calls[category] = self.calls.get(category, 0) + 1
            if self._stack:
                self._stack[-1][2] += elapsed

    def wrap(self, category: str, fn, root: bool = False):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            with self.region(category, root):
                return fn(*args, **kwargs)

        inner.__wrapped_by_profile__ = True  # type: ignore[attr-defined]
        return inner

    def reset(self) -> None:
        self.total.clear()
        self.calls.clear()


@contextlib.contextmanager
def instrumented(clock: ExclusiveClock):
    """Patch the network, operator, CG, autograd and chain entry points with the clock's timers."""
    import medrecon.priors.prior as prior_mod
    import medrecon.sampling as sampling_pkg
    from operators.base import LinearOperator

    patched: list[tuple[object, str, object]] = []

    def patch(owner, name, category, root=False):
        old = getattr(owner, name)
        patched.append((owner, name, old))
        setattr(owner, name, clock.wrap(category, old, root))

    for name in ("forward", "adjoint", "normal"):
        patch(LinearOperator, name, "operator")
    patch(prior_mod, "run_network", "network")
    patch(torch.autograd, "grad", "backward")
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(sampling_pkg.__path__):
        mod = importlib.import_module(f"medrecon.sampling.{info.name}")
        for fname in ("cg_normal", "cg_discrepancy", "operator_norm"):
            if hasattr(mod, fname):
                patch(mod, fname, "cg")
        for fname in ("dps_chain", "fast_chain", "daps_chain", "langevin_chain"):
            if fname.removesuffix("_chain") == info.name and hasattr(mod, fname):
                patch(mod, fname, "other", root=True)  # the chain's own time: what no inner region claims
    try:
        yield
    finally:
        for owner, name, old in reversed(patched):
            setattr(owner, name, old)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parents[1], check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _inputs(modality: str, workdir: Path):
    """The demo's simulated measurement of ``modality``, loaded as ``medrecon recon`` loads it."""
    from medrecon.app.demo import CT_SIM, MRI_SIM, SAMPLES
    from medrecon.app.pipeline import load_input
    from medrecon.app.simulate import simulate_ct_file, simulate_mri_file

    meas = workdir / f"{modality}.h5"
    if modality == "mri":
        simulate_mri_file(SAMPLES["mri"], meas, **MRI_SIM)
    else:
        simulate_ct_file(SAMPLES["ct"], meas, **CT_SIM)
    return load_input(meas)


def profile(methods: list[str], modalities: list[str], device: str, steps: int | None, repeat: int) -> list[dict]:
    """Profile each (modality, method); one row per pair with ms per step per part."""
    from medrecon.app.demo import _settings
    from medrecon.app.pipeline import reconstruct
    from medrecon.device import resolve_device
    from medrecon.recon.config import ReconConfig

    dev = resolve_device(device)
    clock = ExclusiveClock(dev.type == "cuda")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for modality in modalities:
            inp = _inputs(modality, Path(tmp))
            for method in methods:
                extra = dict(_settings(False).get(method, {"steps": 50}))
                if steps is not None:
                    extra["steps"] = steps
                cfg = ReconConfig(method=method, device=str(dev), seed=0, samples=1, progress=False, **extra)
                reconstruct(inp, cfg)  # warm-up: prior load, caches, first-call costs
                best = None
                for _ in range(repeat):
                    clock.reset()
                    with instrumented(clock):
                        t0 = time.perf_counter()
                        res = reconstruct(inp, cfg)
                        wall = time.perf_counter() - t0
                    chain = sum(clock.total.get(p, 0.0) for p in PARTS)
                    if best is None or chain < best["chain_s"]:
                        best = {"chain_s": chain, "wall_s": wall, "parts": dict(clock.total),
                                "calls": dict(clock.calls), "nfe": res.nfe}
                n = max(1, best["nfe"])
                ms = {p: 1000 * best["parts"].get(p, 0.0) / n for p in PARTS}
                step_ms = 1000 * best["chain_s"] / n
                row = {"modality": modality, "method": method, "device": str(dev), "steps": n,
                       "image": list(inp.target.shape), "settings": extra, "step_ms": round(step_ms, 2),
                       "ms_per_step": {p: round(v, 2) for p, v in ms.items()},
                       "percent": {p: round(100 * v / step_ms, 1) for p, v in ms.items()},
                       "overhead_beyond_network_and_operator_pct": round(
                           100 * (ms["cg"] + ms["other"]) / step_ms, 1),
                       "chain_s": round(best["chain_s"], 2), "recon_wall_s": round(best["wall_s"], 2),
                       "calls": best["calls"]}
                rows.append(row)
                print(_line(row), flush=True)
    return rows


def _line(r: dict) -> str:
    p = r["percent"]
    return (f"{r['modality']:3s} {r['method']:9s} {r['step_ms']:8.1f} ms/step  " +
            "  ".join(f"{k} {r['ms_per_step'][k]:7.1f} ({p[k]:4.1f}%)" for k in PARTS) +
            f"  | overhead {r['overhead_beyond_network_and_operator_pct']:.1f}%")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=["dps", "fast", "langevin", "daps"])
    ap.add_argument("--modalities", nargs="+", default=["mri", "ct"], choices=["mri", "ct"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=None, help="override every sampler's steps")
    ap.add_argument("--repeat", type=int, default=1, help="timed runs per pair after a warm-up (the fastest counts)")
    ap.add_argument("--out", default=None, help="write the rows and the machine description to this JSON file")
    a = ap.parse_args(argv)
    rows = profile(a.methods, a.modalities, a.device, a.steps, a.repeat)
    if a.out:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        doc = {"command": "python benchmarks/profile_samplers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "commit": _commit(),
               "machine": {"cores": os.cpu_count(), "platform": platform.platform(),
                           "torch": torch.__version__, "threads": torch.get_num_threads(),
                           "load_1min": os.getloadavg()[0]},
               "rows": rows}
        out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
