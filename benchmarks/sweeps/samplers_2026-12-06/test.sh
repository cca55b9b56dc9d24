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
# each sampler's best setting over all its stages' grids (by tuning-split PSNR, the criterion of --tune)
for m in langevin daps; do
  ls "$R/$S-$m"-[0-9]/tuned.json > /dev/null 2>&1 || continue
  python - "$R/$S-$m-best.json" "$R/$S-$m"-[0-9]/tuned.json <<'PY'
import json, sys
best = None
for f in sys.argv[2:]:
    d = json.load(open(f)); ds = next(iter(d["grid"])); m = next(iter(d["grid"][ds]))
    for g in d["grid"][ds][m]:
        if g.get("psnr") is not None and (best is None or g["psnr"] > best[0]):
            best = (g["psnr"], ds, m, {k: v for k, v in g.items() if k not in ("psnr", "ssim", "seconds_per_slice", "error")}, f)
psnr, ds, m, settings, f = best
json.dump({"format": "medrecon-tuned/1", "params": {ds: {m: settings}}, "from": f, "tuning_psnr": psnr},
          open(sys.argv[1], "w"), indent=1)
print(f"{m}: {settings} (tuning PSNR {psnr:.2f} dB, from {f})")
PY
  P+=("$R/$S-$m-best.json")
done
python -m medrecon benchmark --suite "$S" --methods "${METHODS:-langevin,daps,fast,dps}" --device cpu --quiet \
  --params "${P[@]}" --out "${OUT:-$R/test-$S}"
