#!/usr/bin/env bash
# Issue 19: volume mode against slice-by-slice on the contiguous held-out slabs (README "Volumes").
# 1. the z weights of the fast sampler and of 3-D TV are tuned on each suite's tuning slab (mri-vol-4x tunes the
#    fast sampler's and reuses mri-vol-8x's TV weight, to fit a CPU session); 2. every suite's test slab runs every method slice by slice and the fast
#    sampler and TV again in volume mode, with the reformat figures.
# 3. (phase learned) the learned samplers again with the shipped priors: the Langevin sampler's z weight tuned on
#    mri-vol-8x's tuning slab, then the fast and Langevin samplers, slice by slice and in volume mode, on both MRI test
#    slabs (mri-vol-4x takes 4x's fast weight, 0.5, for both samplers; the classical rows do not depend on the prior).
# Usage: OUT=benchmarks/results/volume_cpu_DATE bash benchmarks/volume_suites.sh [tune|test|all|learned]
set -euo pipefail
OUT=${OUT:-benchmarks/results/volume_cpu_$(date +%F)}
DEV=${DEV:-cpu}
PHASE=${1:-all}
mkdir -p "$OUT"
run() { echo "+ $*" >&2; "$@"; }
if [[ $PHASE == tune || $PHASE == all ]]; then
  for s in ct-vol-60 mri-vol-8x; do
    [[ -f $OUT/tune-$s/tuned.json ]] || run python -m medrecon benchmark --suite $s --methods fast cs-tv --device $DEV \
      --tune --tune-only --no-figures --quiet --out "$OUT/tune-$s"
  done
  [[ -f $OUT/tune-mri-vol-4x/tuned.json ]] || run python -m medrecon benchmark --suite mri-vol-4x --methods fast \
    --device $DEV --tune --tune-only --no-figures --quiet --out "$OUT/tune-mri-vol-4x"
  # mri-vol-4x: its own fast-sampler weight, and mri-vol-8x's TV weight (same volume, same tuning slab)
  python - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
t = json.load(open(f"{out}/tune-mri-vol-8x/tuned.json"))
f = json.load(open(f"{out}/tune-mri-vol-4x/tuned.json"))["params"]["vsseg001-t1-vol-4x"]["fast"]
p = {"vsseg001-t1-vol-4x": {"cs-tv": {k: v for k, v in t["params"]["vsseg001-t1-vol-8x"]["cs-tv"].items()
                                      if k in ("volume", "z_weight")}, "fast": f}}
json.dump({**t, "suite": "mri-vol-4x", "params": p,
           "note": "fast z weight tuned on mri-vol-4x's tuning slab, TV's on mri-vol-8x's"},
          open(f"{out}/mri-vol-4x-params.json", "w"), indent=2)
PY
fi
if [[ $PHASE == test || $PHASE == all ]]; then
  run python -m medrecon benchmark --suite ct-vol-60 --device $DEV --quiet --params "$OUT/tune-ct-vol-60/tuned.json" --out "$OUT/ct-vol-60"
  run python -m medrecon benchmark --suite mri-vol-8x --device $DEV --quiet --params "$OUT/tune-mri-vol-8x/tuned.json" --out "$OUT/mri-vol-8x"
  run python -m medrecon benchmark --suite mri-vol-4x --device $DEV --quiet --params "$OUT/mri-vol-4x-params.json" --out "$OUT/mri-vol-4x"
fi
if [[ $PHASE == learned ]]; then
  [[ -f $OUT/tune-mri-vol-8x-langevin/tuned.json ]] || run python -m medrecon benchmark --suite mri-vol-8x \
    --methods langevin --device $DEV --tune --tune-only --no-figures --quiet --out "$OUT/tune-mri-vol-8x-langevin"
  # the fast sampler keeps the manifest's z weight (1.0, tuned in phase tune); Langevin's comes from its tuning run
  run python -m medrecon benchmark --suite mri-vol-8x --methods fast langevin --device $DEV --quiet \
    --params "$OUT/tune-mri-vol-8x-langevin/tuned.json" --out "$OUT/mri-vol-8x"
  run python -m medrecon benchmark --suite mri-vol-4x --methods fast langevin --device $DEV --quiet --out "$OUT/mri-vol-4x"
fi
