#!/usr/bin/env bash
# The prepared GPU session (device tool), in phases that each fit one call (<= 10 min):
#
#   bash benchmarks/gpu_session.sh train    install wheels, train both shipped priors concurrently for MIN minutes
#                                           (default 7), bundles to .gpuwork/ (kept while the machine stays warm)
#                                           and to $OUT as split tar parts (the transfer caps files at 16 MiB).
#                                           Each run warm-starts from the shipped prior of the same name
#                                           (--init-from; INIT=none trains from scratch), so GPU sessions add up:
#                                           ship the result, and the next session continues from it.
#   bash benchmarks/gpu_session.sh suites   the GPU suites (mri-4x-gpu, mri-8x-gpu, ct-60-gpu: DPS at 1000 steps,
#                                           everything tuned on the tuning slices) on the new priors, from the
#                                           suite excerpts; results straight into $OUT/suites/<suite> (each report is
#                                           rewritten after every method, so a run cut short by the device budget
#                                           still brings back what it finished)
#   bash benchmarks/gpu_session.sh session  what one 15-minute lease affords in one call (2026-12-04: 423 s of a
#                                           560 s limit): train with MIN=5.5 BS=64, then seconds per training
#                                           step at batch 64 (train_speed.json). Use this, then evaluate the
#                                           bundles on the CPU (benchmarks/priors_ledger.md says how).
#   bash benchmarks/gpu_session.sh ablation four MRI augmentation arms (benchmarks/augment_ablation.sh), MIN_ARM
#                                           minutes each (default 2, about 9 minutes in all with finalization)
#   bash benchmarks/gpu_session.sh volume   (<= 300 s) issue 19: seconds per volume and peak memory of volume mode
#                                           (benchmarks/volume_timing.py: 32 MRI slices at 160x160, 14 CT slices at
#                                           192x192; slice by slice, one pass, slabs), bf16, as JSON
#   bash benchmarks/gpu_session.sh time     (<= 540 s) per-slice timings of every method (benchmarks/gpu.py), seconds per
#                                           training step NCHW vs channels_last (benchmarks/train_speed.py), and
#                                           the sampler-step profile and step/forward ratios (profile_samplers.py,
#                                           speed.py) as JSON
#
# Inputs travel in .gpu/ and .whl/ (made by benchmarks/gpu_prepare.sh; carry: [".gpu", ".whl"]). Run the phases
# back to back: the machine is given back after a short idle time and .gpuwork/ goes with it.
# Training knobs: AUG_MRI / AUG_CT = --augment lists (default none; benchmarks/augment_ablation.sh measures them),
# KIND=patch trains PaDIS patch priors (with INIT=none, from scratch: the equal-compute arm against whole-image).
# PRIORS=shipped uses the shipped priors in the suites phase instead of .gpuwork/. For a dry run on a CPU:
#   DEV=cpu MIN=0.3 bash benchmarks/gpu_session.sh train; DEV=cpu SUITES=ct-60-gpu METHODS=fbp,cs-tv bash ... suites
set -u
PHASE=${1:-train}
MIN=${MIN:-$([ "$PHASE" = session ] && echo 5.5 || echo 7)}
OUT=${OUT:-/tmp/medrecon_gpu_out}
W=$PWD/.gpuwork
mkdir -p "$OUT" "$W"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
DEV=${DEV:-cuda}
python3 -c "import torch, monai; print(torch.__version__, monai.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')" || exit 1

if [ "$PHASE" = session ]; then
  MIN=$MIN BS=${BS:-64} bash "$0" train || exit 1
  timeout "${SPEED_TIMEOUT:-100}" python3 benchmarks/train_speed.py --data .gpu/mri_train.npz --modality mri --size 128 \
    --batch-size "${BS:-64}" --steps 20 --rounds 2 --device "$DEV" --out "$OUT/train_speed.json" 2>&1 | tail -n 4
  exit 0
fi

case "$PHASE" in
train)
  BS=${BS:-32}
  for m in mri ct; do
    name=$([ $m = mri ] && echo mri-brain || echo ct-body)
    rm -rf "$W/$name"
    INITARG=(); [ "${INIT:-shipped}" = none ] || INITARG=(--init-from "$name")
    AUG=$([ $m = mri ] && echo "${AUG_MRI:-none}" || echo "${AUG_CT:-none}")
    python3 -m medrecon train-prior --modality $m --data .gpu/${m}_train.npz --heldout .gpu/${m}_held.npz \
      --out "$W/$name" --name $name --batch-size "$BS" --steps 1000000 --max-minutes "$MIN" --device "$DEV" \
      --augment "$AUG" ${KIND:+--kind "$KIND"} ${INITARG[@]+"${INITARG[@]}"} \
      > "$W/train_$m.log" 2>&1 &
  done
  wait
  for m in mri ct; do echo "== $m"; tr '\r' '\n' < "$W/train_$m.log" | grep -v '^$' | tail -n 4; done | tee "$OUT/train.log"
  for name in mri-brain ct-body; do
    [ -f "$W/$name/configs/metadata.json" ] || { echo "no bundle for $name" >&2; exit 1; }
    tar -C "$W" -cf "$W/$name.tar" --exclude=training/checkpoint.pt "$name" && split -b 15M -d "$W/$name.tar" "$OUT/$name.tar.part"
  done
  ;;
suites)
  if [ "${PRIORS:-new}" = shipped ]; then PRI=(); else PRI=(--prior "mri=$W/mri-brain" "ct=$W/ct-body"); fi
  R=$OUT/suites; rm -rf "$R"; mkdir -p "$R"
  for s in ${SUITES:-mri-4x-gpu mri-8x-gpu ct-60-gpu}; do
    ex=$([ "${s%%-*}" = ct ] && echo .gpu/ct-60.npz || echo .gpu/mri-4x.npz)
    methods=$([ "${s%%-*}" = ct ] && echo fbp,cs-tv,dps,fast,langevin,daps || echo zero-filled,cs-wavelet,cs-tv,dps,fast,langevin,daps)
    methods=${METHODS:-$methods}
    timeout "${SUITE_TIMEOUT:-180}" python3 -m medrecon benchmark --suite "$s" --excerpt "$ex" ${PRI[@]+"${PRI[@]}"} --device "$DEV" \
      --methods "$methods" --tune --quiet --out "$R/$s" 2>&1 | tail -n 12
  done
  ;;
volume)
  timeout "${VOLUME_TIMEOUT:-170}" python3 benchmarks/volume_timing.py --modality mri --data .gpu/mri_held.npz --slices 32 \
    --slab 16 --device "$DEV" --bf16 --out "$OUT/volume_timing_mri.json" 2>&1 | grep -v -i warn
  timeout "${VOLUME_TIMEOUT:-120}" python3 benchmarks/volume_timing.py --modality ct --data .gpu/ct_held.npz --slices 14 \
    --slab 8 --device "$DEV" --bf16 --out "$OUT/volume_timing_ct.json" 2>&1 | grep -v -i warn
  ;;
time)
  timeout "${TIME_TIMEOUT:-200}" python3 benchmarks/gpu.py --mri-prior "$W/mri-brain" --ct-prior "$W/ct-body" \
    --mri-data .gpu/mri_held.npz --ct-data .gpu/ct_held.npz --ct-dps-steps 200 --out "$OUT/gpu_results.json" 2>&1 \
    | tee "$OUT/gpu_bench.log"
  # NCHW vs channels_last per training step of the shipped network (bf16 autocast on CUDA)
  timeout "${SPEED_TIMEOUT:-100}" python3 benchmarks/train_speed.py --data .gpu/mri_train.npz --modality mri \
    --size 128 --batch-size "${BS:-32}" --steps 20 --rounds 3 --device "$DEV" --out "$OUT/train_speed.json" 2>&1 \
    | tail -n 4 | tee -a "$OUT/gpu_bench.log"
  # issue 22: the MRI fast sampler with a compiled network (DPS cut to 2 steps: only the compile row is new here)
  timeout "${COMPILE_TIMEOUT:-120}" python3 benchmarks/gpu.py --mri-prior "$W/mri-brain" --ct-prior "$W/ct-body" \
    --mri-data .gpu/mri_held.npz --ct-data .gpu/ct_held.npz --only mri --dps-steps 2 --with-compile \
    --out "$OUT/gpu_compile.json" 2>&1 | tail -n 12 | tee -a "$OUT/gpu_bench.log"
  # issue 22: a sampler step split into network / backward / operator / CG / the rest, and step over forward
  timeout "${PROFILE_TIMEOUT:-60}" python3 benchmarks/profile_samplers.py --device "$DEV" --steps 20 \
    --out "$OUT/profile_cuda.json" 2>&1 | grep -v -i warn | tee -a "$OUT/gpu_bench.log"
  timeout "${RATIO_TIMEOUT:-60}" python3 benchmarks/speed.py --device "$DEV" --steps 20 --out "$OUT/speed_cuda.json" 2>&1 \
    | grep -v -i warn | tee -a "$OUT/gpu_bench.log"
  ;;
ablation)
  # issue 16: the four MRI augmentation arms at equal compute (MIN_ARM minutes each, default 2), warm from the shipped
  # prior; bundles stay in .gpuwork, the held-out denoising table comes back as $OUT/ablation/ablation.json
  mkdir -p "$OUT/ablation"
  DEV=$DEV BS=${BS:-64} bash benchmarks/augment_ablation.sh "$W/ablation" "${MIN_ARM:-2}" mri 2>&1 | tr '\r' '\n' \
    | grep -v '^$' | grep -v 'it/s' | tail -n 12 | tee "$OUT/ablation/ablation.log"
  cp "$W/ablation/ablation.json" "$OUT/ablation/" 2>/dev/null
  for d in "$W"/ablation/*/; do cp "$d/configs/metadata.json" "$OUT/ablation/$(basename "$d")_metadata.json" 2>/dev/null; done
  ;;
*)
  echo "usage: bash benchmarks/gpu_session.sh session|train|suites|time|ablation" >&2
  exit 2
  ;;
esac
