#!/usr/bin/env bash
# Prepare what the GPU session carries (device tool, `carry: [".gpu", ".whl"]`), here, on the CPU machine:
#   .gpu/{mri,ct}_train.npz   training slice caches (medrecon train-prior --save-cache --cache-bits 8)
#   .gpu/{mri,ct}_held.npz    held-out caches for validation and the model cards, every 8th slice
#   .gpu/mri-4x.npz, .gpu/ct-60.npz   suite excerpts (medrecon benchmark --save-excerpt; mri-8x reads mri-4x's)
#   .whl/                     wheels the GPU image lacks (monai, defusedxml; nibabel and pydicom are imported
#                             only by file readers, which the GPU session does not use)
# and check that the working tree plus these stay under the device tool's 64 MiB transfer limit.
# Usage: bash benchmarks/gpu_prepare.sh   (needs ../shared/data; both folders are git-ignored)
set -eu
cd "$(dirname "$0")/.."
D=../shared/data
mkdir -p .gpu .whl
if [ ! -f .gpu/mri_train.npz ]; then
  medrecon train-prior --modality mri --data $D/mri/mni152_2009a_t1.nii.gz $D/mri/mr_gd_skullstripped.nii.gz \
    $D/mri/t2w_brain.nii.gz --out /tmp/medrecon_cache_mri --save-cache .gpu/mri_train.npz --cache-bits 8
fi
if [ ! -f .gpu/ct_train.npz ]; then
  medrecon train-prior --modality ct --data $D/ct/totalseg_ct_aorta.nii.gz $D/ct/totalseg_ct_wholebody_3mm.nii.gz \
    $D/ct/vtk_headsq/quarter.nhdr --out /tmp/medrecon_cache_ct --save-cache .gpu/ct_train.npz --cache-bits 8
fi
for m in mri ct; do
  if [ ! -f .gpu/${m}_held.npz ]; then
    src=$([ $m = mri ] && echo $D/mri/vsseg001_t1_dicom || echo $D/ct/totalseg_ct_dicom)
    [ -f /tmp/${m}_held_full.npz ] || \
      medrecon train-prior --modality $m --data "$src" --out /tmp/medrecon_cache_$m --save-cache /tmp/${m}_held_full.npz
    python - "$m" <<'EOF'
import json, sys
import numpy as np
m = sys.argv[1]
with np.load(f"/tmp/{m}_held_full.npz", allow_pickle=False) as z:
    meta = json.loads(str(z["meta"]))
    arrays = {k: z[k][::8] for k in z.files if k != "meta"}  # every 8th slice: validation needs few
meta["note"] = "every 8th slice of the prepared held-out volume (benchmarks/gpu_prepare.sh)"
np.savez_compressed(f".gpu/{m}_held.npz", meta=np.array(json.dumps(meta)), **arrays)
EOF
  fi
done
[ -f .gpu/mri-4x.npz ] || medrecon benchmark --suite mri-4x --save-excerpt .gpu/mri-4x.npz
[ -f .gpu/ct-60.npz ] || medrecon benchmark --suite ct-60 --save-excerpt .gpu/ct-60.npz
if ! ls .whl/monai-*.whl >/dev/null 2>&1; then
  for pkg in monai defusedxml; do
    v=$(python -c "import importlib.metadata as m; print(m.version('$pkg'))")
    python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any -d .whl "$pkg==$v"
  done
fi
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
untracked=$(git ls-files -z --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null | tail -1 | cut -f1)
carry=$(du -cb .gpu .whl | tail -1 | cut -f1)
total=$(( tree + ${untracked:-0} + carry ))
awk -v t="$tree" -v u="${untracked:-0}" -v c="$carry" 'BEGIN { m = 1048576;
  printf "travels: tree %.1f MiB + untracked %.1f MiB + carry (.gpu .whl) %.1f MiB = %.1f MiB of 64\n", t/m, u/m, c/m, (t+u+c)/m }'
[ "$total" -lt $(( 63 * 1048576 )) ] || { echo "over the device tool's limit: trim .gpu first" >&2; exit 1; }
