#!/usr/bin/env bash
# Everything a lent GPU machine should do in one call: the CLI's learned paths on CUDA (gpu_smoke.py), the
# test suite there (its tests pick no device, so they run on that machine's CPU, under its torch), then the
# photo priors trained for the time left, weights and logs written to $OUT.
#
# Here, first:   bash benchmarks/gpu_prepare.sh        (wheels the device lacks -> .whl/, training photos -> .gpudata/)
#                with --aside, so that every training photo fits in 64 MiB; `gpu_prepare.sh --back` after the call
# Then, device:  run(command="bash benchmarks/gpu.sh", carry=[".whl", ".gpudata"], timeout_s=600)
#
# BUDGET_S (default 540) bounds the whole call; DEVICE=cpu makes a dry run here (tiny budgets).
# $OUT receives: smoke.log, tests.log, throughput.json and .log (the batch chosen), ddpm-photo-gray.tar, ddpm-photo-rgb.tar (each: the exported diffusers folder in
# float16, run.json and log.jsonl), train-gray.log, train-rgb.log. Unpack a tar, check it against the shipped
# prior on held-out photos (benchmarks/ddpm_photo_curve.py --prior FOLDER, and with --superres, and for colour
# --inpaint: a better denoiser has been a worse super-resolution prior), then ship it with restore/weights/<name>/
# and a model card, or continue it here with --init.
set -u
start=$(date +%s)
BUDGET_S=${BUDGET_S:-540}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
left() { echo $(( BUDGET_S - ($(date +%s) - start) )); }

if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export RESTORE_DATA=${RESTORE_DATA:-$PWD/.gpudata}
nvidia-smi -L > "$OUT/tests.log" 2>&1 || true

# 1. The learned paths on the device (a tenth of the time), then the test suite (a tenth; no -x, and collection
#    errors do not stop it: the MNIST weights left behind to make room fail their tests there).
if [ -z "${SKIP_TESTS:-}" ]; then
    timeout $(( $(left) / 10 + 30 )) python3 benchmarks/gpu_smoke.py --device "$DEVICE" --out "$OUT/smoke.log" \
        --budget $(( $(left) / 10 )) > /dev/null 2>&1
    timeout $(( $(left) / 10 )) python3 -m pytest -q -rfE -p no:cacheprovider --continue-on-collection-errors \
        >> "$OUT/tests.log" 2>&1
    echo "pytest exit: $?" >> "$OUT/tests.log"
fi

# 2. The batch: the smallest whose patches per second are within 10% of the best of 256..2048 (gpu_throughput.py,
#    at most ~40 s). At batch 256 the 2026-11-30 steps were bound by the host, not the device.
if [ -z "${BATCH:-}" ]; then
    probe=256,512,1024,2048
    [ "$DEVICE" = cpu ] && probe=4,8  # a dry run
    BATCH=$(timeout 90 python3 benchmarks/gpu_throughput.py --device "$DEVICE" --batches $probe --budget 40 \
        --out "$OUT/throughput.json" 2>&1 | tee "$OUT/throughput.log" | sed -n 's/^BATCH=//p')
    # No figure (the probe failed or timed out at its first batch): the best batch measured, else 256.
    [ -z "$BATCH" ] && BATCH=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["chosen"])' \
        "$OUT/throughput.json" 2>/dev/null)
    BATCH=${BATCH:-256}
fi
echo "batch $BATCH" >> "$OUT/throughput.log"

# 3. The gray and the colour photo priors, a third and two thirds of the time left (less 45 s each for loading,
#    export and packing).
train() {  # name data minutes
    local name=$1 data=$2 minutes=$3
    local init=()
    # A continuation draws its timesteps uniformly; FOCUS=0.3 draws 3/4 of each batch at the noise levels DPIR and
    # Tweedie use (--focus-sigma). On the CPU, 3,011 bf16 steps of ddpm-photo-gray with it gained +0.046 dB of
    # held-out Tweedie PSNR at sigma 25 (+0.025 without) but lost 0.098 dB of held-out 4x super-resolution with
    # DPIR (-0.031 without), 0.14 dB on Set12: it is no longer the default (benchmarks/results/ddpm_photo/gray_cpu_bf16.md).
    local focus=${FOCUS-}
    if [ -d "restore/weights/$name" ]; then
        init=(--init "restore/weights/$name")
        [ -n "$focus" ] && init+=(--focus-sigma "$focus")
    fi
    # --precision auto: bf16 on the GPU, fp32 on a CPU dry run (emulated bf16 takes minutes a step on some CPUs).
    python3 -m restore.cli train ddpm --data "$data" --patch 64 --out "/tmp/$name" --steps 1000000 \
        --batch-size "$BATCH" --width 32 --lr 4e-4 --precision auto --device "$DEVICE" --max-minutes "$minutes" \
        --checkpoint-every 2000 --sample-every 100000 "${init[@]}" > "$OUT/train-${name#ddpm-photo-}.log" 2>&1
    python3 - "$name" <<'PY'
import sys, torch
from pathlib import Path
from safetensors.torch import load_file, save_file
run = Path("/tmp") / sys.argv[1]
for f in (run / "unet").glob("*.safetensors"):  # float16 weights: half the size, as shipped
    save_file({k: v.half() for k, v in load_file(str(f)).items()}, str(f))
PY
    tar -C /tmp -cf "$OUT/$name.tar" "$name/unet" "$name/scheduler" "$name/model_index.json" "$name/run.json" \
        "$name/log.jsonl" "$name/train_digests.txt"
}
# A third of the time for gray, two thirds for colour: the colour targets are the ones missed by most (CBSD68
# super-resolution by 0.54 dB, 80% inpainting by 1.09), gray only DnCNN's denoising figure, by 0.06 dB (4 views).
colour="$RESTORE_DATA/natural/train/bsds400"
if ls "$colour"/* >/dev/null 2>&1; then share=3; else share=1; fi  # no colour photos carried: all for gray
minutes() { awk -v s="$1" 'BEGIN { m = (s - 45) / 60; printf "%.2f", (m > 0.5 ? m : 0) }'; }  # 0: too little left
gray=$(minutes $(( $(left) / share )))
[ "$gray" != 0.00 ] && train ddpm-photo-gray "$RESTORE_DATA/natural/train/gray400" "$gray"
rest=$(minutes "$(left)")
[ "$share" -eq 3 ] && [ "$rest" != 0.00 ] && train ddpm-photo-rgb "$colour" "$rest"
ls -la "$OUT"
