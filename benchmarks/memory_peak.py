"""Peak memory of one reconstruction, measured, beside medrecon's estimate of it (issue 23, defect 6).

Each case runs in a fresh process: the method is first run once on a tiny input (imports, FFT plans,
the prior's first load), the C heap is trimmed, and the resident size is noted; then the input is made,
the kernel's peak counter (``VmHWM``) is reset (``/proc/self/clear_refs`` = 5), :func:`reconstruct` runs,
and ``VmHWM - baseline`` is the working memory of the reconstruction, input included. The estimate
(:func:`medrecon.app.memory.estimate_working_bytes`) must stay above it, and should stay within 3x.

    OMP_NUM_THREADS=1 python benchmarks/memory_peak.py                      # the default cases
    OMP_NUM_THREADS=1 python benchmarks/memory_peak.py --case sense 4 8 320 320
    OMP_NUM_THREADS=1 python benchmarks/memory_peak.py --case fast 4 8 320 320 --samples 2
    OMP_NUM_THREADS=1 python benchmarks/memory_peak.py --case ct:fbp 4 256 180

Linux only (``/proc/self/status``).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: (method, shape, extra options): MRI shapes are (S, C, H, W); CT shapes are (S, image size, views).
DEFAULT_CASES = [
    ("zero-filled", (1, 8, 320, 320), {}),
    ("zero-filled", (4, 8, 320, 320), {}),
    ("zero-filled", (16, 8, 320, 320), {}),
    ("zero-filled", (32, 8, 320, 320), {}),
    ("zero-filled", (2, 16, 640, 368), {}),
    ("sense", (4, 8, 320, 320), {}),
    ("sense", (8, 4, 256, 256), {}),
    ("sense", (16, 8, 320, 320), {}),
    ("sense", (2, 16, 640, 368), {}),
    ("cs-wavelet", (4, 8, 320, 320), {}),
    ("cs-wavelet", (2, 16, 640, 368), {}),
    ("cs-wavelet", (16, 8, 320, 320), {}),
    ("cs-tv", (4, 8, 320, 320), {}),
    ("cs-tv", (2, 16, 640, 368), {}),
    ("cs-tv", (16, 8, 320, 320), {}),
    ("fast", (4, 8, 320, 320), {"steps": 2}),
    ("fast", (4, 8, 320, 320), {"steps": 2, "samples": 2}),
    ("fast", (4, 8, 320, 320), {"steps": 2, "batch_size": 1}),
    ("fast", (2, 16, 640, 368), {"steps": 2}),
    ("dps", (1, 8, 320, 320), {"steps": 2}),
    ("dps", (2, 8, 320, 320), {"steps": 2}),
    ("ct:fbp", (4, 256, 180), {}),
    ("ct:fbp", (8, 512, 360), {}),
    ("ct:tv", (4, 256, 180), {}),
    ("ct:tv", (2, 384, 120), {}),
    ("ct:fast", (4, 256, 180), {"steps": 2}),
]


def _status(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def _trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed heap pages back, so the baseline is what is in use
    except OSError:
        pass


def _mri_input(shape: tuple[int, ...]):
    import numpy as np

    from medrecon.io.formats.base import tiny_kspace
    from medrecon.io.measurement import LoadedInput

    s, c, h, w = shape
    k, mask, _ = tiny_kspace(slices=s, coils=c, h=h, w=w)
    return LoadedInput("mri", np.ascontiguousarray(k), mask, (min(h, 320), min(w, 320)))


def _ct_input(shape: tuple[int, ...]):
    import numpy as np
    import torch

    from medrecon.io.measurement import LoadedInput
    from operators import ParallelBeamCT, hu_to_mu

    s, n, views = shape
    yy, xx = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")
    hu = np.where(xx**2 + yy**2 < 0.5, 40.0, -1000.0).astype(np.float32)
    A = ParallelBeamCT((n, n), views)
    sino = A(hu_to_mu(torch.from_numpy(np.repeat(hu[None], s, 0)), 0.019)).numpy()
    return LoadedInput("ct", np.ascontiguousarray(sino, dtype=np.float32), geometry=A.geometry())


def run_case(method: str, shape: tuple[int, ...], options: dict) -> dict:
    """Measure one case in this process (see the module docstring); returns bytes and the estimate."""
    import torch

    from medrecon.app.memory import estimate_working_bytes
    from medrecon.app.pipeline import reconstruct
    from medrecon.recon.config import ReconConfig

    torch.set_num_threads(1)
    modality, _, name = method.rpartition(":")
    modality = modality or "mri"
    make = _ct_input if modality == "ct" else _mri_input
    cfg = ReconConfig(method=name, device="cpu", progress=False, **options)
    tiny = (1, 16, 8) if modality == "ct" else (1, 2, 16, 16)
    reconstruct(make(tiny), cfg)  # warm-up: imports, FFT plans, first prior load
    _trim()
    base = _status("VmRSS")
    inp = make(shape)
    _trim()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the current resident size
    reconstruct(inp, cfg)
    peak = _status("VmHWM") - base
    est = estimate_working_bytes(inp, cfg, torch.device("cpu"))
    return {"method": method, "shape": list(shape), "options": options, "input_bytes": int(inp.data.nbytes),
            "peak_bytes": int(peak), "estimate_bytes": int(est), "estimate_over_peak": round(est / peak, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", nargs="+", default=None, metavar="ARG",
                    help="METHOD S C H W (MRI) or ct:METHOD S N VIEWS; default: the DEFAULT_CASES, each in a process")
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    a = ap.parse_args(argv)
    if a.case:
        opts = {k: v for k, v in (("samples", a.samples), ("steps", a.steps),
                                             ("batch_size", a.batch_size)) if v is not None}
        print(json.dumps(run_case(a.case[0], tuple(int(v) for v in a.case[1:]), opts)))
        return 0
    rows = []
    for method, shape, opts in DEFAULT_CASES:
        cmd = [sys.executable, __file__, "--case", method, *map(str, shape)]
        cmd += [x for k, v in opts.items() for x in (f"--{k.replace('_', '-')}", str(v))]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        row = json.loads(out)
        rows.append(row)
        print(f"{method:<12} {tuple(shape)!s:<20} {opts!s:<42} input {row['input_bytes'] / 2**20:8.1f} MiB  "
              f"peak {row['peak_bytes'] / 2**20:8.1f} MiB  estimate {row['estimate_bytes'] / 2**20:8.1f} MiB  "
              f"({row['estimate_over_peak']}x)", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
