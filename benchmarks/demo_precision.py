"""The demo's quality and time with the networks in fp32 and in bf16 (issue 22).

Runs ``medrecon demo --precision fp32`` and ``--precision bf16`` on this machine and writes one JSON with
both tables and the difference per (modality, method):

    python benchmarks/demo_precision.py --out benchmarks/results/demo_precision_DATE/compare.json

bf16 is only worth it where the CPU computes it natively (``medrecon.device.cpu_has_native_bf16``);
the JSON records whether this one does.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    from medrecon.device import cpu_has_native_bf16

    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for prec in ("fp32", "bf16"):
            out = Path(tmp) / prec
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "medrecon", "demo", "--device", a.device, "--precision", prec,
                            "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
            runs[prec] = {"wall_s": round(time.perf_counter() - t0, 1),
                          **json.loads((out / "metrics.json").read_text())}
    key = lambda r: (r["modality"], r["method"])  # noqa: E731
    bf = {key(r): r for r in runs["bf16"]["rows"]}
    diff = [{"modality": r["modality"], "method": r["method"],
             "psnr_fp32": r["psnr"], "psnr_bf16": bf[key(r)]["psnr"], "d_psnr": round(bf[key(r)]["psnr"] - r["psnr"], 2),
             "ssim_fp32": r["ssim"], "ssim_bf16": bf[key(r)]["ssim"], "d_ssim": round(bf[key(r)]["ssim"] - r["ssim"], 4),
             "seconds_fp32": r["seconds"], "seconds_bf16": bf[key(r)]["seconds"]} for r in runs["fp32"]["rows"]]
    for d in diff:
        print(f"{d['modality']:3s} {d['method']:11s} PSNR {d['psnr_fp32']:6.2f} -> {d['psnr_bf16']:6.2f}  "
              f"SSIM {d['ssim_fp32']:.4f} -> {d['ssim_bf16']:.4f}  s {d['seconds_fp32']:6.1f} -> {d['seconds_bf16']:6.1f}")
    doc = {"command": "python benchmarks/demo_precision.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "cpu_has_native_bf16": cpu_has_native_bf16(),
           "cores": os.cpu_count(), "load_1min_after": os.getloadavg()[0], "compare": diff, "runs": runs}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
