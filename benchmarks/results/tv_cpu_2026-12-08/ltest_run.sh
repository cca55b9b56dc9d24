#!/usr/bin/env bash
# Session 24: the Langevin sampler on the TEST splits at each suite's tuned setting, now with its default in-plane TV
# (0.1; commit 2ad7fcb). Before: benchmarks/results/prior_mri_0.2.0_2026-12-07/ (tv did not exist). One thread.
set -u
W=${W:-/work/tune}; R=${R:-/work/runs/s24/ltest}
export PYTHONPATH=$W OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
cd "$W"
P=benchmarks/results/prior_mri_0.2.0_2026-12-07
python -m medrecon benchmark --suite mri-8x --methods langevin --device cpu --quiet --params $P/tune-mri-8x-langevin.json --out $R/test-mri-8x > $R/mri8.log 2>&1
python -m medrecon benchmark --suite ct-60 --methods langevin --device cpu --quiet --out $R/test-ct-60 > $R/ct60.log 2>&1
python -m medrecon benchmark --suite mri-4x --methods langevin --device cpu --quiet --params $P/tune-mri-4x-langevin.json --out $R/test-mri-4x > $R/mri4.log 2>&1
echo done > $R/done
