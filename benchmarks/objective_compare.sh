#!/usr/bin/env bash
# Issue 16: the training objective, measured. Two priors trained from scratch at equal compute (same network, data,
# seed, crops, batch, learning rate and number of steps), one per objective: DDPM noise prediction ("epsilon", the
# shipped priors') and EDM preconditioning ("edm", Karras et al. 2022). Then both are scored by held-out denoising
# (benchmarks/heldout_denoising.py: the Tweedie estimate's PSNR at t = 50..700, the same crops for both).
#
# The arms run at once, one thread each, so they share the machine's load equally.
# Usage: OUT=benchmarks/results/objective_DATE MOD=mri STEPS=3000 bash benchmarks/objective_compare.sh
# (needs .gpu/{mri,ct}_{train,held}.npz from benchmarks/gpu_prepare.sh)
set -euo pipefail
OUT=${OUT:-benchmarks/results/objective_$(date +%F)}
MOD=${MOD:-mri}
STEPS=${STEPS:-3000}
SIZE=${SIZE:-64}
BS=${BS:-16}
LR=${LR:-2e-4}
SEED=${SEED:-5}
NET=${NET:-'{"channels":[32,64,96,96],"norm_num_groups":16,"num_head_channels":96}'}
RUNS=${RUNS:-$OUT/runs}   # the bundles (not committed: a few MB each)
mkdir -p "$OUT" "$RUNS"
for obj in epsilon edm; do
  OMP_NUM_THREADS=1 python -m medrecon train-prior --modality "$MOD" --data ".gpu/${MOD}_train.npz" \
    --heldout ".gpu/${MOD}_held.npz" --out "$RUNS/$MOD-$obj" --objective "$obj" --network "$NET" --size "$SIZE" \
    --batch-size "$BS" --lr "$LR" --steps "$STEPS" --device cpu --seed "$SEED" --n-samples 2 --sample-steps 50 \
    > "$RUNS/$MOD-$obj.log" 2>&1 &
done
wait
for obj in epsilon edm; do
  cp "$RUNS/$MOD-$obj/configs/metadata.json" "$OUT/$MOD-${obj}_metadata.json"
  cp "$RUNS/$MOD-$obj/training/loss.csv" "$OUT/$MOD-${obj}_loss.csv"
  cp "$RUNS/$MOD-$obj/training/val.csv" "$OUT/$MOD-${obj}_val.csv" 2>/dev/null || true
  OMP_NUM_THREADS=1 python benchmarks/heldout_denoising.py "$RUNS/$MOD-$obj" ".gpu/${MOD}_held.npz" --modality "$MOD" \
    | tee -a "$OUT/denoising.txt"
done
