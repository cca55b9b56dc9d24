#!/usr/bin/env bash
# The README's --final-dc numbers: one simulated 4x slice of the demo's T1 sample (128x128, 8 coils, noise std
# 0.002), an 8-step fast reconstruction with ESPIRiT maps and with the file's true maps, final DC off / 30 / 200.
# Usage: bash benchmarks/final_dc_check.sh [OUT]   (a few seconds per run on a CPU)
set -eu
OUT=${1:-/tmp/final_dc_check}
mkdir -p "$OUT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
python -m medrecon simulate mri --image medrecon/data/mri_t1_vsseg001_2slices.nii.gz --slices 0:1 --accel 4 \
  --center-fraction 0.16 --coils 8 --noise-std 0.002 --seed 0 --out "$OUT/sim.h5"
for maps in espirit true; do
  for dc in 0 30 200; do
    printf 'maps %-7s final-dc %3s: ' $maps $dc
    python -m medrecon recon "$OUT/sim.h5" --method fast --steps 8 --maps $maps --final-dc $dc --quiet \
      --out "$OUT/fast_${maps}_${dc}.h5" 2>&1 | grep -o 'PSNR.*noise level [0-9.]*)'
  done
done
