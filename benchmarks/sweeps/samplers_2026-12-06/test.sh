#!/usr/bin/env bash
# Issue 18: the TEST split of one suite, once, with the settings chosen on its tuning split (run.sh):
# langevin and daps at their tuned settings, the fast sampler at K = 1 (eta 1, 50 steps: session 14's tuned eta,
# one sample, so its row carries the data misfit next to the others) and DPS at the suite's settings.
# Usage: bash test.sh SUITE   (W: a worktree not edited while this runs; R: where run.sh wrote its grids)
set -eu
W=${W:-/work/sw}; R=${R:-/work/runs/s15/sweeps}
export PYTHONPATH=$W OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
cd "$W"
S=$1
case $S in mri-4x) DS=vsseg001-t1-4x ;; mri-8x) DS=vsseg001-t1-8x ;; ct-60) DS=totalseg-ct-60v ;; esac
echo "{\"format\": \"medrecon-tuned/1\", \"params\": {\"$DS\": {\"fast\": {\"eta\": 1.0, \"samples\": 1, \"steps\": 50}}}}" > "$R/$S-fast-k1.json"
P=("$R/$S-fast-k1.json")
for m in langevin daps; do [ -f "$R/$S-$m-1/tuned.json" ] && P+=("$R/$S-$m-1/tuned.json"); done
python -m medrecon benchmark --suite "$S" --methods "${METHODS:-langevin,daps,fast,dps}" --device cpu --quiet \
  --params "${P[@]}" --out "$R/test-$S"
