#!/usr/bin/env bash
# Session 12 background prior run (issue 16): repeat of the 2026-12-05c recipe (128 px crops, batch 8, lr 2e-5),
# warm from the shipped mri-brain, one thread, from the worktree /work/bg (never edited while this runs).
set -eu
cd /work/bg
export PYTHONPATH=/work/bg OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
D=/work/shared/data
mkdir -p .gpu
if [ ! -f .gpu/mri_train.npz ]; then
  python -m medrecon train-prior --modality mri --data $D/mri/mni152_2009a_t1.nii.gz $D/mri/mr_gd_skullstripped.nii.gz \
    $D/mri/t2w_brain.nii.gz --out /tmp/medrecon_cache_mri --save-cache .gpu/mri_train.npz --cache-bits 8
fi
if [ ! -f .gpu/mri_held.npz ]; then
  python -m medrecon train-prior --modality mri --data $D/mri/vsseg001_t1_dicom --out /tmp/medrecon_cache_mri \
    --save-cache /tmp/mri_held_full.npz
  python - <<'PY'
import json
import numpy as np
with np.load("/tmp/mri_held_full.npz", allow_pickle=False) as z:
    meta = json.loads(str(z["meta"]))
    arrays = {k: z[k][::4] for k in z.files if k != "meta"}
meta["note"] = "every 4th slice of the prepared held-out volume (benchmarks/gpu_prepare.sh)"
np.savez_compressed(".gpu/mri_held.npz", meta=np.array(json.dumps(meta)), **arrays)
PY
fi
date
python -m medrecon train-prior --modality mri --data .gpu/mri_train.npz --heldout .gpu/mri_held.npz \
  --out /work/runs/cpu_mri_2026-12-06 --size 128 --batch-size 8 --lr 2e-5 --max-minutes 135 --device cpu \
  --init-from mri-brain --seed 12
date
echo BG_DONE
