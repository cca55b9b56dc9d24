#!/usr/bin/env bash
# Outputs to compare before and after a refactor (issue 17: "bit-identical on CPU"): the smoke suite, the demo,
# and the README's MRI and CT examples, run from a detached worktree of REF on one thread.
#   bash benchmarks/refactor_check.sh REF OUTDIR        (needs ../shared/data; about 25 minutes on one core)
#   python benchmarks/refactor_compare.py OUTDIR_BEFORE OUTDIR_AFTER
set -euo pipefail
REF=$1; OUT=$(realpath -m "$2")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WT=$(mktemp -d /tmp/medrecon_refcheck.XXXXXX)
git -C "$ROOT" worktree add --detach "$WT" "$REF" >/dev/null
ln -s "$(realpath "$ROOT/../shared")" "$WT/../shared" 2>/dev/null || true
trap 'git -C "$ROOT" worktree remove --force "$WT"' EXIT
export PYTHONPATH=$WT OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
D=$(realpath "$ROOT/../shared/data")
mkdir -p "$OUT"
cd "$WT"
git rev-parse HEAD > "$OUT/commit"
m() { python -m medrecon "$@"; }
m benchmark --suite smoke --device cpu --quiet --no-figures --out "$OUT/smoke" > "$OUT/smoke.log" 2>&1
m demo --out "$OUT/demo" > "$OUT/demo.log" 2>&1
mkdir -p "$OUT/readme"
R=$OUT/readme
m simulate mri --image $D/mri/mr_gd_skullstripped.nii.gz --slices 70:72 --mask random --accel 4 \
  --center-fraction 0.08 --coils 8 --noise-std 0.001 --seed 0 --out $R/brain_sim.h5 > $R/log 2>&1
for meth in zero-filled sense cs-tv; do m recon $R/brain_sim.h5 --method $meth --quiet --out $R/brain_$meth.h5 >> $R/log 2>&1; done
m recon $R/brain_sim.h5 --method fast --seed 0 --quiet --out $R/brain_fast.h5 >> $R/log 2>&1
m simulate ct --image $D/ct/totalseg_ct_dicom --slices 8:10 --views 60 --size 192 --out $R/ct_sim.h5 >> $R/log 2>&1
m recon $R/ct_sim.h5 --method fbp --quiet --out $R/ct_fbp.h5 >> $R/log 2>&1
m recon $R/ct_sim.h5 --method fast --seed 0 --quiet --out $R/ct_fast.h5 >> $R/log 2>&1
echo done > "$OUT/finished"
