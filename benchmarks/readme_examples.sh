#!/usr/bin/env bash
# The README's examples, run as written, with the figures and numbers of its Robustness section
# (docs/figures/readme_{mri,ct}_example.{png,json}, drawn by benchmarks/readme_figures.py):
#   mri: the fast sampler with one sample (so the figure shows what the default gives), the old behaviour
#        (--support none) and CS-TV for comparison;
#   ct:  FBP, TV, the fast sampler at its old 5 CG steps per step and at the default (20).
#   bash benchmarks/readme_examples.sh [WORKDIR] [mri|ct|all]
# (needs ../shared/data; about 5 minutes for each part on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-/tmp/medrecon_readme_examples}
PART=${2:-all}
case "$PART" in mri|ct|all) ;; *) echo "part must be mri, ct or all, not '$PART'" >&2; exit 2 ;; esac
if [ "$PART" != ct ]; then
mkdir -p "$W"/sim "$W"/recon "$W"/cstv "$W"/fast "$W"/fastnone
medrecon simulate mri --image ../shared/data/mri/mr_gd_skullstripped.nii.gz --slices 70:72 \
    --mask random --accel 4 --center-fraction 0.08 --coils 8 --noise-std 0.001 --seed 0 --out "$W"/sim/brain.h5
medrecon recon "$W"/sim/brain.h5 --method zero-filled --out "$W"/recon/brain.h5
medrecon recon "$W"/sim/brain.h5 --method cs-tv --out "$W"/cstv/brain.h5
medrecon recon "$W"/sim/brain.h5 --method fast --seed 0 --quiet --out "$W"/fast/brain.h5
medrecon recon "$W"/sim/brain.h5 --method fast --seed 0 --support none --quiet --out "$W"/fastnone/brain.h5
python benchmarks/readme_figures.py mri "$W"/sim/brain.h5 docs/figures/readme_mri_example.png \
    zero-filled="$W"/recon/brain.h5 cs-tv="$W"/cstv/brain.h5 "fast --support none"="$W"/fastnone/brain.h5 \
    "fast (default)"="$W"/fast/brain.h5 --json docs/figures/readme_mri_example.json
fi
if [ "$PART" != mri ]; then
mkdir -p "$W"/ct
medrecon simulate ct --image ../shared/data/ct/totalseg_ct_dicom --slices 8:10 --views 60 --size 192 --out "$W"/ct/ct.h5
medrecon recon "$W"/ct/ct.h5 --method fbp --out "$W"/ct/fbp.nii.gz
medrecon recon "$W"/ct/ct.h5 --method tv --out "$W"/ct/tv.nii.gz
medrecon recon "$W"/ct/ct.h5 --method fast --seed 0 --cg-iters 5 --quiet --out "$W"/ct/fast.nii.gz
medrecon recon "$W"/ct/ct.h5 --method fast --seed 0 --quiet --out "$W"/ct/fast20.nii.gz
python benchmarks/readme_figures.py ct "$W"/ct/ct.h5 docs/figures/readme_ct_example.png \
    fbp="$W"/ct/fbp.nii.gz tv="$W"/ct/tv.nii.gz "fast, 5 CG steps (old default)"="$W"/ct/fast.nii.gz \
    "fast (default, 20 CG steps)"="$W"/ct/fast20.nii.gz --json docs/figures/readme_ct_example.json
fi
