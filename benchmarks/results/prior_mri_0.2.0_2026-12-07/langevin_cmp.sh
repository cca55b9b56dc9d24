#!/usr/bin/env bash
# The Langevin sampler (issue 18's settings tuned for 0.1.0, one posterior sample) on the mri-4x and mri-8x test
# slices with mri-brain 0.2.0 (shipped) and 0.1.0 (OLD: its bundle, e.g. `git archive b015774^
# medrecon/weights/mri-brain | tar -x`), same code, one thread. W: a worktree not edited meanwhile; R: outputs.
set -u
W=${W:-/work/bench}; R=${R:-/work/runs/s21/langevin}; OLD=${OLD:-/work/runs/s21/mri-brain-0.1.0}
cd "$W"
export PYTHONPATH=$W OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
P=benchmarks/results/samplers_cpu_2026-12-06
mkdir -p "$R"
for s in mri-4x mri-8x; do
  python -m medrecon benchmark --suite $s --methods langevin --device cpu --quiet --no-figures \
     --params $P/$s-fast-k1.json $P/$s-langevin-best.json --out "$R/$s-new" > "$R/$s-new.log" 2>&1
  python -m medrecon benchmark --suite $s --methods langevin --device cpu --quiet --no-figures \
     --params $P/$s-fast-k1.json $P/$s-langevin-best.json --prior mri="$OLD" --out "$R/$s-old" > "$R/$s-old.log" 2>&1
done
