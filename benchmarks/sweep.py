"""Parameter sweeps on the tuning split (slices not used by the demo or the tests).

CT: slice 16 of the held-out TotalSegmentator DICOM series (the demo ships slices 6 and 12),
resized to 192x192, 60 parallel views, noiseless. Each argument is one setting as keyword
arguments of ReconConfig, e.g.

    python benchmarks/sweep.py ct "method='dps',steps=50,zeta=10.0" "method='fast',steps=30,cg_iters=5"

Prints one line per setting (PSNR/SSIM in the fastMRI volume convention on HU + 1000).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def _settings(arg: str) -> dict:
    """``"method='dps',steps=50,zeta=10"`` -> a dict of literals (parsed with ast, never evaluated)."""
    import ast

    call = ast.parse(f"f({arg})", mode="eval").body
    if not isinstance(call, ast.Call) or call.args:
        raise SystemExit(f"settings must be key=value pairs: {arg!r}")
    return {k.arg: ast.literal_eval(k.value) for k in call.keywords}


def main(argv: list[str]) -> int:
    from medrecon.metrics import volume_metrics
    from medrecon.app.pipeline import load_input, reconstruct
    from medrecon.recon.config import ReconConfig
    from medrecon.app.simulate import simulate_ct_file

    modality, settings = argv[0], argv[1:]
    if modality != "ct":
        raise SystemExit("only the ct sweep is scripted so far")
    meas = Path(tempfile.mkdtemp()) / "ct_tune.h5"
    simulate_ct_file(SHARED / "ct" / "totalseg_ct_dicom", meas, views=60, size=192, slices="16:17")
    inp = load_input(meas)
    for arg in settings:
        kw = _settings(arg)
        t0 = time.time()
        res = reconstruct(inp, ReconConfig(progress=False, **kw))
        m = volume_metrics(inp.target + 1000.0, res.image + 1000.0)
        print(f"{kw} psnr {m['psnr']:.2f} ssim {m['ssim']:.4f} {time.time() - t0:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
