#!/usr/bin/env bash
# Session 13 background prior run (issue 16): the PaDIS patch prior, warm from the shipped mri-brain (whole-image
# weights, position channels start at zero), the 2026-12-06 whole-image recipe otherwise (128 px frames, 8 per step,
# lr 2e-5, seed 12), one thread, from the worktree /work/bg at 51e887d (never edited while this runs).
set -eu
cd /work/bg
export PYTHONPATH=/work/bg OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
date
python -m medrecon train-prior --modality mri --data .gpu/mri_train.npz --heldout .gpu/mri_held.npz \
  --out /work/runs/cpu_mri_patch_2026-12-06 --size 128 --batch-size 8 --lr 2e-5 --max-minutes ${MINUTES:-95} --device cpu \
  --init-from mri-brain --seed 12 --kind patch
date
echo BG_DONE
