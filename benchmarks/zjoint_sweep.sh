#!/usr/bin/env bash
# Issue 19: the joint z solve (ADMM on the data term and TV along z, medrecon/sampling/zcouple.py) against the
# proximal coupling, for the fast sampler on the tuning slabs of the volume suites (never the test slabs).
# It writes a copy of each suite manifest whose tuning grid is this sweep's, runs `medrecon benchmark --tune
# --tune-only` on it, and keeps each grid point's score (OUT/<suite>-<solve>/tuned.json, "grid").
# Usage: OUT=benchmarks/results/zjoint_DATE bash benchmarks/zjoint_sweep.sh [SUITE...]
#   grids (environment): W_PROX (z weights, prox), W_ADMM and RHO (z weights x rho_rel, admm and admm-carry);
#   SOLVES (default "prox admm"; add admm-carry for DiffusionMBIR's carried ADMM variables)
set -euo pipefail
OUT=${OUT:-benchmarks/results/zjoint_$(date +%F)}
DEV=${DEV:-cpu}
SUITES=("$@")
[[ ${#SUITES[@]} -gt 0 ]] || SUITES=(ct-vol-60 mri-vol-8x)
mkdir -p "$OUT"
for s in "${SUITES[@]}"; do
  for solve in ${SOLVES:-prox admm}; do
    d="$OUT/$s-$solve"
    [[ -f $d/tuned.json ]] && continue
    mkdir -p "$d"
    python - "$s" "$solve" "$d/suite.json" <<'PY'
import json, os, sys
from medrecon.benchmark.manifest import _resolve as suite_path
name, solve, out = sys.argv[1:]
m = json.loads(suite_path(name).read_text())
m["name"] = f"{name}-zjoint-{solve}"
num = lambda v: [float(x) for x in v.split()]  # noqa: E731
for ds in m["datasets"]:
    grid = {"volume": [True], "z_solve": [solve]}
    if solve == "prox":
        grid["z_weight"] = num(os.environ.get("W_PROX", "0.5 1 2"))
    else:
        grid["z_weight"] = num(os.environ.get("W_ADMM", "0.5 1 2"))
        grid["z_rho"] = num(os.environ.get("RHO", "0.1 0.3 1"))
    ds["tuning_grid"] = {"fast": grid}
json.dump(m, open(out, "w"), indent=2)
PY
    echo "+ $s $solve" >&2
    python -m medrecon benchmark --suite "$d/suite.json" --methods fast --device "$DEV" --tune --tune-only \
      --no-figures --quiet --out "$d"
  done
done
