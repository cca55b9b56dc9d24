#!/usr/bin/env bash
# The fuller benchmark suites on ../shared/data, as run for the README's results table.
#   bash benchmarks/run_full_suites.sh OUT_ROOT [DEVICE] [SUITES...]
# For each suite: tune the classical regularization weights on the suite's tuning slices
# (cheap), then run every method on the test slices with those weights. The DPS step size and
# the sampler settings come from the manifest (chosen by the sweeps in benchmarks/sweeps/ on
# held-out slices that are not test slices); tuning DPS here too (`--tune` without --methods)
# costs about 1.5x the DPS run and is meant for a GPU. METHODS=fbp,cs-tv,fast limits the test run.
set -euo pipefail
out=${1:?usage: run_full_suites.sh OUT_ROOT [DEVICE] [SUITES...]}
dev=${2:-auto}
shift $(( $# >= 2 ? 2 : 1 ))
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(mri-4x mri-8x ct-60 ct-120)
for s in "${suites[@]}"; do
  case $s in mri-*) classical=cs-wavelet,cs-tv ;; *) classical=cs-tv ;; esac
  echo "== $s: tuning $classical ($(date -u +%H:%M:%S))"
  medrecon benchmark --suite "$s" --device "$dev" --tune --tune-only --methods "$classical" --quiet \
      --no-figures --out "$out/$s-tuning"
  echo "== $s: all methods ($(date -u +%H:%M:%S))"
  medrecon benchmark --suite "$s" --device "$dev" --params "$out/$s-tuning/tuned.json" --quiet --out "$out/$s" \
      ${METHODS:+--methods "$METHODS"}
done
echo "== done ($(date -u +%H:%M:%S))"
