#!/usr/bin/env bash
# Issue 16: the effect of each augmentation group on held-out denoising, at equal compute.
# Each arm starts from the shipped prior (--init-from), trains MIN minutes on one thread with the same seed,
# recipe and data, and differs only in --augment; the held-out denoising PSNR of the arm's bundle is then
# compared (configs/metadata.json -> evaluation.heldout_denoising). Arms run one after another, so that all
# of them see the same machine load.
# Usage: bash benchmarks/augment_ablation.sh OUT [MIN] [MODALITY] [ARMS...]
#   default arms (MRI): none geometry=rotate,elastic intensity=gamma,bias all=rotate,elastic,gamma,bias
#   CT arms can only be geometric: none geometry=rotate,elastic
# Knobs (environment): INIT (warm start, default the shipped prior; a bundle folder works), LR (default 2e-5),
#   STEPS (equal steps instead of equal minutes: every arm stops at STEPS optimizer steps), SIZE (crop, default
#   128), SEED (default 21), EVAL_SIZE (default 128: the held-out crops of benchmarks/heldout_denoising.py, which
#   scores every arm again on the same crops after training; its table goes to OUT/denoising.txt).
# The CPU arm of session 20 (small epsilon network of benchmarks/objective_compare.sh, 2500 steps, warm):
#   INIT=runs/mri-epsilon LR=1e-4 STEPS=600 SIZE=64 BS=16 bash benchmarks/augment_ablation.sh OUT 0 mri \
#     none rotate=rotate elastic=elastic gamma=gamma bias=bias
# DEV (default cpu) and BS (default 8) run it elsewhere: on a GPU lease, after gpu_session.sh's wheel set-up,
#   DEV=cuda BS=64 bash benchmarks/augment_ablation.sh $OUT/ablation 2.5 mri
# gives the four MRI arms about 800 steps each in 10 minutes.
# Needs .gpu/{mri,ct}_{train,held}.npz (benchmarks/gpu_prepare.sh). Run it from a worktree that is not edited
# while it runs (PYTHONPATH=that worktree).
set -eu
OUT=${1:?usage: augment_ablation.sh OUT [MIN] [MODALITY] [ARMS...]}
MIN=${2:-30}
M=${3:-mri}
shift $(( $# < 3 ? $# : 3 ))
if [ $# -gt 0 ]; then ARMS=("$@")
elif [ "$M" = mri ]; then ARMS=(none geometry=rotate,elastic intensity=gamma,bias all=rotate,elastic,gamma,bias)
else ARMS=(none geometry=rotate,elastic); fi
PRIOR=${INIT:-$([ "$M" = mri ] && echo mri-brain || echo ct-body)}
BUDGET=$([ -n "${STEPS:-}" ] && echo "--steps $STEPS" || echo "--max-minutes $MIN")
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
mkdir -p "$OUT"
for arm in "${ARMS[@]}"; do
  name=${arm%%=*}
  aug=$([ "$arm" = "$name" ] && echo none || echo "${arm#*=}")
  echo "$(date -u +%FT%TZ) arm $name (--augment $aug), $BUDGET"
  # shellcheck disable=SC2086
  python3 -m medrecon train-prior --modality "$M" --data .gpu/${M}_train.npz --heldout .gpu/${M}_held.npz \
    --out "$OUT/$name" --size "${SIZE:-128}" --batch-size "${BS:-8}" --lr "${LR:-2e-5}" $BUDGET \
    --device "${DEV:-cpu}" --init-from "$PRIOR" --seed "${SEED:-21}" --augment "$aug" --n-samples 2 --sample-steps 50
  python3 benchmarks/heldout_denoising.py "$OUT/$name" .gpu/${M}_held.npz --modality "$M" --size "${EVAL_SIZE:-128}" \
    | sed "s|^$OUT/||" | tee -a "$OUT/denoising.txt"
done
python3 - "$OUT" "${ARMS[@]}" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = []
for arm in sys.argv[2:]:
    name = arm.split("=")[0]
    meta = json.loads((out / name / "configs" / "metadata.json").read_text())
    ev = meta["evaluation"]["heldout_denoising"]
    tr = meta["training"]
    rows.append({"arm": name, "augment": tr.get("augment", []), "steps": tr["steps"], "minutes": tr["minutes"],
                 "final_loss": tr["final_loss"], "psnr": {str(e["t"]): e["psnr_denoised"] for e in ev}})
(out / "ablation.json").write_text(json.dumps(rows, indent=2) + "\n")
for r in rows:
    print(f"{r['arm']:10s} {','.join(r['augment']) or 'none':28s} steps {r['steps']:5d}  "
          + "  ".join(f"t={t}: {p:.2f}" for t, p in r["psnr"].items()))
PY
