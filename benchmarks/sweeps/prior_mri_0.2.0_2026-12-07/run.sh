#!/usr/bin/env bash
# Issue 16: the samplers re-tuned for mri-brain 0.2.0 (the small network, 3x cheaper per call) on the TUNING
# split only, then the TEST split scored once with the winners. One thread per process, from a worktree W not
# edited while this runs; R = where results go (tuned.json files and reports are copied into the repo).
# Usage: bash run.sh tune|tune2|test|others SUITE   (SUITE: mri-4x, mri-8x or ct-60; tune2 = a second fast round,
# K = 8; others = DPS and DAPS on the test split at the settings tuned for 0.1.0, not re-tuned)
set -eu
W=${W:-/work/bench}; R=${R:-/work/runs/s21/sweeps}
export PYTHONPATH=$W OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
cd "$W"
PHASE=$1; S=$2
mkdir -p "$R"
tune() {  # tune METHOD NAME GRID
  python benchmarks/fast_grid.py --suite "$S" --method "$1" --grid "$3" --out "$R/$2.suite.json"
  python -m medrecon benchmark --suite "$R/$2.suite.json" --methods "$1" --device cpu --tune --tune-only \
    --no-figures --quiet --out "$R/$2"
}
case $PHASE:$S in
  # Langevin: 0.1.0's winner (100 levels, 2 steps each) against more levels and steps, which the cheaper network
  # pays for; fast: 0.1.0's winners (eta 1, K = 4) against more steps, then K = 8
  tune:mri-4x) tune langevin $S-langevin '{"steps": [100, 200], "inner": [2, 3], "cg_iters": [5], "step": [1.0]}'
               tune fast $S-fast '{"eta": [1.0], "samples": [4, 8], "steps": [100, 200]}' ;;
  tune:mri-8x) tune langevin $S-langevin '{"steps": [100, 200], "inner": [2, 3], "cg_iters": [3], "step": [1.0]}'
               tune fast $S-fast '{"eta": [1.0], "samples": [4], "steps": [50, 100]}' ;;
  tune2:mri-8x) tune fast $S-fast2 '{"eta": [1.0], "samples": [8], "steps": [50, 100]}' ;;
  # ct-body 0.2.0 (shipped the same day) had kept 0.1.0's K = 2: one round of K against its cost
  tune:ct-60) tune fast $S-fast '{"eta": [1.0], "samples": [2, 4], "steps": [50]}' ;;
  test:*)
    # the fast sampler's best round by tuning-split PSNR (the criterion of --tune)
    python benchmarks/best_tuned.py "$R/$S-fast-best.json" "$R/$S"-fast*/tuned.json
    L=(); M=fast; [ -f "$R/$S-langevin/tuned.json" ] && L=("$R/$S-langevin/tuned.json") && M=langevin,fast
    python -m medrecon benchmark --suite "$S" --methods $M --device cpu --quiet \
      --params ${L[@]+"${L[@]}"} "$R/$S-fast-best.json" --out "$R/test-$S" ;;
  others:mri-4x|others:mri-8x)
    # DPS and DAPS at exactly the settings of the 2026-12-06 samplers table (0.1.0), read from its results, so the two
    # priors differ in nothing else (mri-8x: DAPS's second run, lr 1.5)
    SRC=benchmarks/results/samplers_cpu_2026-12-06; F=("$SRC/$S/results.json")
    [ "$S" = mri-8x ] && F+=("$SRC/mri-8x-daps/results.json")
    python - "$R/$S-others.json" "${F[@]}" <<'PY'
import json, sys
params = {}
for f in sys.argv[2:]:
    for r in json.load(open(f))["rows"]:
        if r["method"] in ("dps", "daps"):
            params.setdefault(r["dataset"], {})[r["method"]] = r["params"]  # a later file's row wins
json.dump({"format": "medrecon-tuned/1", "params": params, "from": sys.argv[2:]}, open(sys.argv[1], "w"), indent=1)
print(params)
PY
    python -m medrecon benchmark --suite "$S" --methods dps,daps --device cpu --quiet --params "$R/$S-others.json" \
      --out "$R/test-$S-others" ;;
  *) echo "usage: bash run.sh tune|tune2|test|others mri-4x|mri-8x|ct-60"; exit 2 ;;
esac
