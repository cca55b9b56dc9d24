#!/usr/bin/env bash
# Session 24: the fast sampler's rows rerun with in-plane TV 0.3 as the default (commit a4a55cf), everything else as
# committed. From the worktree /work/rr, one thread (a training run held the other core). R = results.
set -u
W=${W:-/work/rr}; R=${R:-/work/runs/s24/rr}
export PYTHONPATH=$W OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
cd "$W"
mb() { python -m medrecon benchmark "$@"; }
P=benchmarks/results/prior_mri_0.2.0_2026-12-07
C=benchmarks/results/tuning_cpu_2026-12-06
step() { echo "== $1 $(date +%T)"; }
step robust-mri
mb --suite robust --methods zero-filled,fast --datasets fov256-random-4x-8c,fov256-equispaced-4x-8c,fov256-random-8x-8c,fov256-equispaced-8x-16c,fov320-random-4x-16c-noiseless,fov256-random-4x-8c-noisy --device cpu --quiet --out $R/robust > $R/robust.log 2>&1
step split
python benchmarks/background_split.py --settings samples=1 samples=4 --out $R/background_split.json > $R/split.log 2>&1
step readme-mri
bash benchmarks/readme_examples.sh $R/ex mri > $R/ex_mri.log 2>&1
step mri-8x
mb --suite mri-8x --methods fast --device cpu --quiet --params $C/classical-mri-8x-tuned.json $P/mri-8x-fast-best.json --out $R/test-mri-8x > $R/mri8.log 2>&1
step ct-60
mb --suite ct-60 --methods fast --device cpu --quiet --params $P/ct-60-fast-best.json --out $R/test-ct-60 > $R/ct60.log 2>&1
step readme-ct
bash benchmarks/readme_examples.sh $R/ex ct > $R/ex_ct.log 2>&1
step demo
python -m medrecon demo --out $R/demo > $R/demo.log 2>&1
step robust-bart
mb --suite robust-bart --methods zero-filled,fast --device cpu --quiet --out $R/robust-bart > $R/bart.log 2>&1
step robust-ct
mb --suite robust --methods fast --datasets ct512-60v --device cpu --quiet --out $R/robust-ct > $R/robust_ct.log 2>&1
step mri-4x
mb --suite mri-4x --methods fast --device cpu --quiet --params $C/classical-mri-4x-tuned.json $P/mri-4x-fast-best.json --out $R/test-mri-4x > $R/mri4.log 2>&1
step done
