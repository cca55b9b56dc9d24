#!/usr/bin/env bash
# Score bundle B against the shipped mri-brain: robust 8x/4x background split, mri-8x (tuned K=4, seed 0), mri-4x (defaults),
# held-out denoising. From /work/bench2 (main at c1068de), one thread.
set -u
B=${1:-/work/runs/s24/mri-c128}; R=${2:-/work/runs/s24/eval_c128}
cd /work/bench2; export PYTHONPATH=/work/bench2 OMP_NUM_THREADS=1
mkdir -p "$R"
T=benchmarks/results/tuning_cpu_2026-12-06
python benchmarks/heldout_denoising.py "$B" .gpu/mri_held.npz --modality mri > "$R/denoising.txt" 2>&1
python benchmarks/background_split.py --prior "$B" --out "$R/robust8.json" > "$R/robust8.log" 2>&1
python -m medrecon benchmark --suite mri-8x --methods fast --device cpu --quiet --no-figures --seed 0 --params $T/fast-mri-8x-tuned.json --prior mri="$B" --out "$R/fast-mri-8x-seed0" > "$R/f8.log" 2>&1
python -m medrecon benchmark --suite mri-4x --methods fast --device cpu --quiet --no-figures --prior mri="$B" --out "$R/fast-mri-4x-default" > "$R/f4.log" 2>&1
python benchmarks/background_split.py --prior "$B" --datasets fov256-random-4x-8c fov256-equispaced-4x-8c fov320-random-4x-16c-noiseless fov256-random-4x-8c-noisy --out "$R/robust4.json" > "$R/robust4.log" 2>&1
echo done > "$R/done"
