#!/usr/bin/env bash
# Session 24: tune the fast sampler's in-plane TV weight (--tv) on the TUNING splits of mri-4x, mri-8x and ct-60 at the
# library defaults otherwise (50 steps, eta 0.85, one sample). From the worktree /work/tune (commit c5e13af), one thread.
set -eu
W=${W:-/work/tune}; R=${R:-/work/runs/s24/tune}
export PYTHONPATH=$W OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
cd "$W"
for s in mri-4x mri-8x ct-60; do
  [ -f $R/tune-$s/tuned.json ] && continue
  python benchmarks/fast_grid.py --suite $s --grid '{"tv": [0.0, 0.1, 0.3, 1.0]}' --out $R/$s-tv-grid.suite.json
  python -m medrecon benchmark --suite $R/$s-tv-grid.suite.json --methods fast --device cpu --tune --tune-only \
    --no-figures --out $R/tune-$s
done
echo done > $R/done
