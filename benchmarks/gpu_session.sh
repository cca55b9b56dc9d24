#!/usr/bin/env bash
# The one prepared GPU session (device tool): train both shipped priors concurrently on one GPU,
# then time every method with benchmarks/gpu.py. Inputs travel in .gpu/ (slice caches made by
# `medrecon train-prior --save-cache`, see README "Shipped priors") and .whl/ (wheels the GPU image
# lacks). Results come back through $OUT; the bundles as split tar parts (the transfer caps files at 16 MiB).
set -u
MIN=${MIN:-4.5}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
python3 -c "import torch, monai; print(torch.__version__, monai.__version__, torch.cuda.get_device_name())" || exit 1
W=/tmp/work; mkdir -p "$W"
for m in mri ct; do
  name=$([ $m = mri ] && echo mri-brain || echo ct-body)
  python3 -m medrecon train-prior --modality $m --data .gpu/${m}_train.npz --heldout .gpu/${m}_held.npz \
    --out "$W/$name" --name $name --batch-size 32 --steps 100000 --max-minutes "$MIN" --device cuda \
    > "$W/train_$m.log" 2>&1 &
done
wait
for m in mri ct; do echo "== $m"; tr '\r' '\n' < "$W/train_$m.log" | tail -n 5; done > "$OUT/train.log"
for name in mri-brain ct-body; do
  tar -C "$W" -cf "$W/$name.tar" --exclude=training/checkpoint.pt "$name" && split -b 15M -d "$W/$name.tar" "$OUT/$name.tar.part"
done
timeout 200 python3 benchmarks/gpu.py --mri-prior "$W/mri-brain" --ct-prior "$W/ct-body" \
  --mri-data .gpu/mri_held.npz --ct-data .gpu/ct_held.npz --ct-dps-steps 200 --out "$OUT/gpu_results.json" 2>&1 \
  | tee "$OUT/gpu_bench.log"
