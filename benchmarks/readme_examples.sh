#!/usr/bin/env bash
# The README's MRI example, run as written (fast sampler with one sample, so the figure shows what the
# default gives), plus the old behaviour (--support none) and CS-TV for comparison; then the figure and its
# numbers (docs/figures/readme_mri_example.{png,json}) by benchmarks/readme_figures.py.
#   bash benchmarks/readme_examples.sh [WORKDIR]      (needs ../shared/data; about 5 minutes on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-/tmp/medrecon_readme_examples}
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
