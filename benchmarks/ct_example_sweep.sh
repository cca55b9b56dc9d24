#!/usr/bin/env bash
# Why the README's CT example drew invented structure, measured on one of its slices (issue 24).
#   bash benchmarks/ct_example_sweep.sh OUT_DIR     (needs ../shared/data; ~25 min on a 2-core CPU)
# Slice 8 of the held-out TotalSegmentator series, 192x192, 60 parallel views, noiseless (the README example's
# first slice). Fast sampler: default, eta 0 / 1, 20 CG iterations per step, posterior mean of 4; DPS at the
# demo's 60 strided steps with step sizes 10 / 100 / 300. One line per run (PSNR/SSIM from `medrecon recon`).
# These are test-slice diagnostics; the CT default was then chosen on ct-60's tuning split
# (benchmarks/results/tuning_cpu_2026-12-04).
set -eu
DATA=$(cd "$(dirname "$0")/../../shared/data" && pwd)
out=${1:?usage: ct_example_sweep.sh OUT_DIR}
mkdir -p "$out"
cd "$out"
medrecon simulate ct --image "$DATA/ct/totalseg_ct_dicom" --slices 8:9 --views 60 \
  --size 192 --out ct1.h5
r() { n=$1; shift; medrecon recon ct1.h5 --quiet --out "$n.nii.gz" "$@" 2>&1 | tail -n 1; }
r fast_cg5 --method fast --cg-iters 5
r fast_eta0 --method fast --cg-iters 5 --eta 0
r fast_eta1 --method fast --cg-iters 5 --eta 1
r fast_cg20 --method fast --cg-iters 20
r fast_k4 --method fast --cg-iters 5 --samples 4
r dps60_z10 --method dps --steps 60 --zeta 10
r dps60_z100 --method dps --steps 60 --zeta 100
r dps60_z300 --method dps --steps 60 --zeta 300
