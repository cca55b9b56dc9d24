#!/usr/bin/env bash
# Fast-sampler evaluation of the session-13 patch prior (issue 16 ship rule): wait for training to stop (checkpoint
# written), stop its finalization (250-step samples are slow with tiling on one thread), bundle the checkpoint's EMA
# weights (the bundling step was rerun by hand with this path once the first try failed), then mri-4x and mri-8x in parallel, one thread each, from the /work/rt worktree.
set -u
RUN=/work/runs/cpu_mri_patch_2026-12-06
# the stop checkpoint (at a step that is not a multiple of --checkpoint-every 500) logs its validation last
while [ $(( $(tail -1 $RUN/training/val.csv | cut -d, -f1) % 500 )) -eq 0 ]; do sleep 15; done
sleep 20  # the checkpoint is written before the validation row
pkill -f "train-prior --modality mri" || true
cd /work/rt
export PYTHONPATH=/work/rt OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
python /work/main/benchmarks/bundle_from_checkpoint.py $RUN /work/runs/s13/patch_bundle --modality mri
R=/work/main/benchmarks/results/full_cpu_2026-11-27
mkdir -p /work/runs/s13/eval
for s in mri-4x mri-8x; do
  python -m medrecon benchmark --suite $s --methods fast --device cpu --quiet --no-figures \
    --params $R/$s-tuning/tuned.json --prior mri=/work/runs/s13/patch_bundle --out /work/runs/s13/eval/patch-$s \
    > /work/runs/s13/eval/patch-$s.log 2>&1 &
done
wait
echo EVAL_DONE > /work/runs/s13/eval/done
