#!/usr/bin/env bash
# Fast-sampler evaluation of the session-12 background prior against the shipped one (issue 16 ship rule),
# run from the /work/bg worktree (b0e58c3: same sampler code as main), one thread.
set -u
while pgrep -f "train-prior --modality mri" >/dev/null; do sleep 30; done
cd /work/bg
export PYTHONPATH=/work/bg OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
R=/work/main/benchmarks/results/full_cpu_2026-11-27
for s in mri-4x mri-8x; do
  for p in shipped new; do
    prior=$([ $p = new ] && echo "--prior mri=/work/runs/cpu_mri_2026-12-06" || echo "")
    python -m medrecon benchmark --suite $s --methods fast --device cpu --quiet --no-figures \
      --params $R/$s-tuning/tuned.json $prior --out /work/runs/eval12/$p-$s > /work/runs/eval12/$p-$s.log 2>&1
  done
done
echo EVAL_DONE > /work/runs/eval12/done
