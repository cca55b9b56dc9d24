#!/usr/bin/env bash
# Score the background run's bundle B as the ledger does: held-out denoising; the fast sampler at the 2026-12-06
# tuned settings on the mri-8x (seeds 0 and 1) and mri-4x test slices; then the Langevin sampler at 8x (its tuned
# setting; shipped 0.2.0: 25.63 / 0.6973). From the worktree /work/bench2 (benchmark --seed), one thread.
set -u
B=${1:-/work/runs/s23/mri-small-cont5}; R=${2:-/work/runs/s23/eval}
cd /work/bench2; export PYTHONPATH=/work/bench2 OMP_NUM_THREADS=1
mkdir -p "$R"
T=benchmarks/results/tuning_cpu_2026-12-06
python benchmarks/heldout_denoising.py "$B" .gpu/mri_held.npz --modality mri > "$R/denoising.txt" 2>&1
for seed in 0 1; do
python -m medrecon benchmark --suite mri-8x --methods fast --device cpu --quiet --no-figures --seed $seed --params $T/fast-mri-8x-tuned.json --prior mri="$B" --out "$R/fast-mri-8x-seed$seed" > "$R/f8s$seed.log" 2>&1
done
python -m medrecon benchmark --suite mri-4x --methods fast --device cpu --quiet --no-figures --params $T/fast-mri-4x-2-tuned.json --prior mri="$B" --out "$R/fast-mri-4x" > "$R/f4.log" 2>&1
echo "fast done $(date)"
python -m medrecon benchmark --suite mri-8x --methods langevin --device cpu --quiet --no-figures --params benchmarks/results/prior_mri_0.2.0_2026-12-07/tune-mri-8x-langevin.json --prior mri="$B" --out "$R/langevin-mri-8x" > "$R/l8.log" 2>&1
echo done
