#!/usr/bin/env bash
# Session 14 (2026-12-06): re-tune every method of mri-4x, mri-8x and ct-60 on the TUNING split at today's code,
# then score the TEST split once with those settings. One thread per process, from a worktree (W) that was not
# edited while this ran. R = where results go (copied into the repo afterwards).
set -eu
W=${W:-/work/wt}; R=${R:-/work/runs/s14}
export PYTHONPATH=$W OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
cd "$W"
mb() { python -m medrecon benchmark "$@"; }
# 1. classical weights (each suite's own grid in its manifest)
for s in mri-4x mri-8x ct-60; do
  m=$([ $s = ct-60 ] && echo cs-tv || echo cs-wavelet,cs-tv)
  mb --suite $s --methods $m --device cpu --tune --tune-only --no-figures --quiet --out $R/classical-$s-tuning
done
# 2. fast-sampler settings (grids written by benchmarks/fast_grid.py; the second MRI-4x round explores eta 1
#    and 100 steps next to the first round's winner)
grid() { python benchmarks/fast_grid.py --suite $1 --grid "$2" --out $R/$3.suite.json
         mb --suite $R/$3.suite.json --methods fast --device cpu --tune --tune-only --no-figures --out $R/tune-$3; }
[ -f $R/tune-mri-4x/tuned.json ]   || grid mri-4x '{"eta": [0.0, 0.5, 0.85], "samples": [1, 2, 4]}' mri-4x
[ -f $R/tune-ct-60/tuned.json ]    || grid ct-60 '{"eta": [0.85, 1.0], "samples": [1, 2]}' ct-60
[ -f $R/tune-mri-4x-2/tuned.json ] || grid mri-4x '{"eta": [1.0], "samples": [4], "steps": [50, 100]}' mri-4x-2
[ -f $R/tune-mri-8x/tuned.json ]   || grid mri-8x '{"eta": [0.85, 1.0], "samples": [1, 4]}' mri-8x
# the better MRI-4x round by its winner's tuning PSNR (the criterion of --tune)
python benchmarks/best_tuned.py $R/fast-mri-4x-tuned.json $R/tune-mri-4x/tuned.json $R/tune-mri-4x-2/tuned.json
cp $R/tune-mri-8x/tuned.json $R/fast-mri-8x-tuned.json
cp $R/tune-ct-60/tuned.json $R/fast-ct-60-tuned.json
# 3. the test split, every method but DPS, with the settings above
for s in mri-4x mri-8x ct-60; do
  m=$([ $s = ct-60 ] && echo fbp,cs-tv,fast || echo zero-filled,sense,cs-wavelet,cs-tv,fast)
  mb --suite $s --methods $m --device cpu --quiet \
     --params $R/classical-$s-tuning/tuned.json $R/fast-$s-tuned.json --out $R/test-$s
done
