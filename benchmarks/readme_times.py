"""Time what the README promises a newcomer: the demo, the test suite and ``priors samples`` (issue 25).

Each command runs as a user would type it, in a fresh temporary folder, on this machine; the script
records wall time, the children's CPU time, the load average before and after (an idle machine shows
a 1-minute load near 0 before), the core count, the date and the commit, and writes one JSON file.
The README's times are copied from its latest output (``benchmarks/results/readme_times_*.json``).

    python benchmarks/readme_times.py --out benchmarks/results/readme_times_$(date +%F).json
    python benchmarks/readme_times.py --only demo,samples --out /tmp/t.json

``samples`` times the README's ``priors samples mri-brain`` at its defaults (4 samples, 250 ancestral
steps, 128 x 128).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

COMMANDS = {
    "demo": ["medrecon", "demo", "--out", "{tmp}/medrecon-demo"],
    "tests": [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(REPO / "tests")],
    "samples": ["medrecon", "priors", "samples", "mri-brain", "--out", "{tmp}/mri_samples.png"],
}


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def time_command(name: str) -> dict:
    """Run one README command in a fresh folder; its wall and CPU seconds, exit code and output tail."""
    with tempfile.TemporaryDirectory(prefix=f"readme_times_{name}_") as tmp:
        argv = [a.format(tmp=tmp) for a in COMMANDS[name]]
        load0, cpu0, t0 = os.getloadavg(), _children_cpu(), time.perf_counter()
        proc = subprocess.run(argv, check=False, cwd=REPO if name == "tests" else tmp, capture_output=True, text=True)
        wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
    row = {"command": " ".join(COMMANDS[name]).replace("{tmp}/", "").replace(sys.executable, "python")
           .replace(str(REPO / "tests"), "tests"),
           "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "returncode": proc.returncode,
           "load_1min_before": round(load0[0], 2), "load_1min_after": round(os.getloadavg()[0], 2),
           "output_tail": tail}
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="demo,tests,samples", help="comma-separated subset of " + ",".join(COMMANDS))
    ap.add_argument("--out", required=True, help="JSON file to write")
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - set(COMMANDS))
    if unknown:
        ap.error(f"unknown command(s) {unknown}; choose from {sorted(COMMANDS)}")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    result = {"date": dt.datetime.now().isoformat(timespec="seconds"), "commit": commit,
              "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
              "times": {}}
    for n in names:
        print(f"timing {n} ...", flush=True)
        result["times"][n] = row = time_command(n)
        print(f"  {n}: {row['wall_s'] / 60:.1f} min wall, {row['cpu_s'] / 60:.1f} min CPU, exit {row['returncode']}, "
              f"load before {row['load_1min_before']}", flush=True)
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0 if all(r["returncode"] == 0 for r in result["times"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
