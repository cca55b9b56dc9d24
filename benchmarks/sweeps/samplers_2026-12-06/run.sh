#!/usr/bin/env bash
# Issue 18: settings of the new samplers (langevin = pULA, daps) chosen on the TUNING split of each suite,
# K = 1 sample, with the shipped priors. One thread per process, from a worktree W that is not edited while
# this runs; results go to R (the tuned.json files and this folder's README are copied into the repo).
# Usage: [GRID=JSON] bash run.sh SUITE METHOD STAGE   (stage grids below; GRID replaces the stage's grid;
#        each grid becomes a suite copy by benchmarks/fast_grid.py, run with `benchmark --tune --tune-only`)
set -eu
W=${W:-/work/trial}; R=${R:-/work/runs/s15/sweeps}
export PYTHONPATH=$W OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
cd "$W"
S=$1; M=$2; STAGE=$3
ct=$([ "$S" = ct-60 ] && echo 1 || echo 0)
case "${GRID:+given}:$M:$STAGE" in
  given:*)    G=$GRID ;;
  :langevin:1) G=$([ $ct = 1 ] && echo '{"steps": [25, 50, 100], "cg_iters": [10, 20, 40]}' \
                             || echo '{"steps": [25, 50, 100], "cg_iters": [3, 5, 10]}') ;;
  :daps:1)     G='{"steps": [25, 50], "ode_steps": [1, 2], "lr": [0.5, 1.0]}' ;;
  *) echo "unknown $M stage $STAGE"; exit 2 ;;
esac
mkdir -p "$R"
name=$S-$M-$STAGE
python benchmarks/fast_grid.py --suite "$S" --method "$M" --grid "$G" --out "$R/$name.suite.json"
python -m medrecon benchmark --suite "$R/$name.suite.json" --methods "$M" --device cpu --tune --tune-only \
  --no-figures --quiet --out "$R/$name"
python - "$R/$name/tuned.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); ds = next(iter(d["grid"])); m = next(iter(d["grid"][ds]))
for g in sorted(d["grid"][ds][m], key=lambda g: -(g["psnr"] or 0)):
    print({k: v for k, v in g.items() if k not in ("psnr", "ssim", "seconds_per_slice", "error")},
          f"PSNR {g['psnr']:.2f} SSIM {g['ssim']:.4f} {g['seconds_per_slice']:.0f} s/slice")
PY
