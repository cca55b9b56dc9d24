#!/usr/bin/env bash
# Session 24: tune the Langevin sampler's in-plane TV weight (--tv) on the TUNING splits, at each suite's tuned Langevin
# setting (mri-4x: 200 levels x 3; mri-8x: 100 x 2, 3 CG; ct-60: 100 x 1, 20 CG). From the worktree /work/tune
# (commit 4d5a535), one thread, beside two other one-thread jobs.
set -eu
W=${W:-/work/tune}; R=${R:-/work/runs/s24/ltune}
export PYTHONPATH=$W OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
cd "$W"
g() { python benchmarks/fast_grid.py --suite $1 --method langevin --grid "$2" --out $R/$1-langevin-tv.suite.json
      python -m medrecon benchmark --suite $R/$1-langevin-tv.suite.json --methods langevin --device cpu --tune --tune-only \
        --no-figures --out $R/tune-$1; }
[ -f $R/tune-mri-8x/tuned.json ] || g mri-8x '{"tv": [0.0, 0.1, 0.3, 1.0], "steps": [100], "inner": [2], "cg_iters": [3]}'
[ -f $R/tune-ct-60/tuned.json ] || g ct-60 '{"tv": [0.0, 0.1, 0.3, 1.0], "steps": [100], "inner": [1], "cg_iters": [20]}'
[ -f $R/tune-mri-4x/tuned.json ] || g mri-4x '{"tv": [0.0, 0.1, 0.3, 1.0], "steps": [200], "inner": [3], "cg_iters": [5]}'
echo done > $R/done
