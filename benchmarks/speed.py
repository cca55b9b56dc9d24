"""Each sampler's time per step as a multiple of one network forward pass, measured in the same run (issue 22).

The ratio says how close a sampler is to the network's own cost on any machine: about 1 for a sampler
whose step is one forward pass plus cheap arithmetic (fast, Langevin), about 3 for DPS (forward plus
backward through the network), more where the operator is expensive (CT's projector inside CG). Nothing
else is instrumented, so the step times are the samplers' own.

    python benchmarks/speed.py [--modalities mri ct] [--methods dps fast langevin daps] [--out speed.json]
    python benchmarks/speed.py --compile-check --out compile.json   # does torch.compile pay for itself?

Inputs are the demo's (``benchmarks/profile_samplers.py`` splits the same steps into their parts).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from profile_samplers import _commit, _inputs


def _forward_ms(prior, shape: tuple, t: int, repeat: int = 3) -> float:
    """Best-of-``repeat`` wall time of one network forward pass on a batch of ``shape``, in ms."""
    x = torch.randn(shape, device=prior.device)
    tt = torch.full((shape[0],), t, device=prior.device, dtype=torch.long)
    best = float("inf")
    with torch.no_grad():
        prior.network_eps(prior.net, x, tt)  # warm-up
        for _ in range(repeat):
            if prior.device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            prior.network_eps(prior.net, x, tt)
            if prior.device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
    return 1000 * best


def compile_check(modality: str, device, shape: tuple, repeat: int = 3) -> dict:
    """Does ``torch.compile`` of the prior's network pay for itself within one reconstruction?

    Returns the first compiled call's time (compilation included), the steady compiled and eager forward
    times (best of ``repeat``), the break-even number of network calls, and the largest output difference.
    """
    from medrecon.priors import load_prior

    prior = load_prior(None, modality, device)
    net = prior.net
    x = torch.randn(shape, device=device)
    tt = torch.full((shape[0],), prior.num_timesteps // 2, device=device, dtype=torch.long)

    def best(fn) -> float:
        out = float("inf")
        for _ in range(repeat):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            out = min(out, time.perf_counter() - t0)
        return out

    with torch.no_grad():
        eager = best(lambda: net(x, tt))
        compiled = torch.compile(net)
        t0 = time.perf_counter()
        compiled(x, tt)
        first = time.perf_counter() - t0
        steady = best(lambda: compiled(x, tt))
        diff = float((compiled(x, tt) - net(x, tt)).abs().max())
    gain = eager - steady
    return {"modality": modality, "shape": list(shape), "eager_ms": round(1000 * eager, 1),
            "compiled_ms": round(1000 * steady, 1), "first_call_s": round(first, 1),
            "break_even_calls": round((first - steady) / gain) if gain > 0 else None, "max_abs_diff": diff}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=["dps", "fast", "langevin", "daps"])
    ap.add_argument("--modalities", nargs="+", default=["mri", "ct"], choices=["mri", "ct"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=10, help="sampler steps per timed run (default 10)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--compile-check", action="store_true",
                    help="instead: time torch.compile of each prior's network (first call, steady state, break-even)")
    a = ap.parse_args(argv)
    from medrecon.app.pipeline import reconstruct
    from medrecon.device import resolve_device
    from medrecon.priors import load_prior
    from medrecon.recon.config import ReconConfig

    dev = resolve_device(a.device)
    rows = []
    if a.compile_check:
        shapes = {"mri": (2, 2, 128, 128), "ct": (2, 1, 192, 192)}  # the demo's batches (profile_samplers.py)
        for modality in a.modalities:
            row = compile_check(modality, dev, shapes[modality])
            rows.append(row)
            print(json.dumps(row), flush=True)
        a.methods = []
    with tempfile.TemporaryDirectory() as tmp:
        for modality in a.modalities if a.methods else []:
            inp = _inputs(modality, Path(tmp))
            prior = load_prior(None, modality, dev)
            for method in a.methods:
                mod = __import__(f"medrecon.sampling.{method}", fromlist=["x"])
                name = f"{method}_chain"
                chain = getattr(mod, name)
                seen: dict = {}

                @functools.wraps(chain)
                def timed(p, problem, *args, _chain=chain, _seen=seen, **kw):
                    _seen["shape"] = (problem.batch, p.channels, *problem.image_shape)
                    if dev.type == "cuda":
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    out = _chain(p, problem, *args, **kw)
                    if dev.type == "cuda":
                        torch.cuda.synchronize()
                    _seen["seconds"] = time.perf_counter() - t0
                    _seen["nfe"] = out[1]
                    return out

                cfg = ReconConfig(method=method, device=str(dev), seed=0, samples=1, progress=False, steps=a.steps)
                setattr(mod, name, timed)
                try:
                    reconstruct(inp, cfg)  # warm-up
                    reconstruct(inp, cfg)
                finally:
                    setattr(mod, name, chain)
                fwd = _forward_ms(prior, seen["shape"], prior.num_timesteps // 2)
                step = 1000 * seen["seconds"] / max(1, seen["nfe"])
                row = {"modality": modality, "method": method, "device": str(dev), "batch_shape": list(seen["shape"]),
                       "steps": seen["nfe"], "step_ms": round(step, 1), "forward_ms": round(fwd, 1),
                       "step_over_forward": round(step / fwd, 2)}
                rows.append(row)
                print(f"{modality:3s} {method:9s} step {step:8.1f} ms  forward {fwd:8.1f} ms  ratio {step / fwd:5.2f}",
                      flush=True)
    if a.out:
        doc = {"command": "python benchmarks/speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "commit": _commit(),
               "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                           "threads": torch.get_num_threads(), "load_1min": os.getloadavg()[0]},
               "rows": rows}
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
