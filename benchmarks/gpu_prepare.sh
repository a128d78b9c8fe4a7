#!/usr/bin/env bash
# Before benchmarks/gpu.sh runs on a lent GPU machine: put what that machine lacks into ignored folders
# that `run` carries. .whl/: wheels of diffusers and bm3d/bm4d for its Python 3.12 (it has torch, numpy,
# safetensors, huggingface_hub, scikit-image, typer and tqdm); .gpudata/: the training photos and the
# Levin kernels (the tests read MNIST, which is not carried: those tests skip there).
#
# What travels is capped at 64 MiB and the tracked files take about 56 MiB, which leaves room for a few
# photos only. `gpu_prepare.sh --aside` first moves what the device needs neither to train nor to run the
# photo paths (the MNIST weights, gmm-photo-rgb, benchmarks/results: about 35 MiB) into the ignored
# .gpu-aside/, which does not travel, so that all 800 training photos fit; `gpu_prepare.sh --back` moves them
# back after the call (check `git status` is clean). Their tests fail on the device meanwhile.
set -eu
cd "$(dirname "$0")/.."
ASIDE="restore/weights/ddpm-mnist restore/weights/gan-mnist restore/weights/vae-mnist restore/weights/flow-mnist
restore/weights/pixelcnn-mnist restore/weights/gaussian-mnist restore/weights/mnist-classifier
restore/weights/gmm-photo-rgb benchmarks/results"
grep -qx '/.gpu-aside/' .git/info/exclude 2>/dev/null || echo /.gpu-aside/ >> .git/info/exclude
if [ "${1:-}" = --back ]; then
    for f in $ASIDE; do [ -e ".gpu-aside/$f" ] && mkdir -p "$(dirname "$f")" && mv ".gpu-aside/$f" "$f"; done
    rm -rf .gpu-aside
    git status --short
    exit 0
fi
if [ "${1:-}" = --aside ]; then
    [ -e .gpu-aside ] && { echo "error: .gpu-aside/ exists: run --back first" >&2; exit 2; }
    for f in $ASIDE; do mkdir -p ".gpu-aside/$(dirname "$f")" && mv "$f" ".gpu-aside/$f"; done
fi
grep -qx '/.gpudata/' .git/info/exclude 2>/dev/null || echo /.gpudata/ >> .git/info/exclude
rm -rf .whl .gpudata
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl diffusers==0.42.1 bm3d==4.0.3 bm4d==4.2.5
DATA=${RESTORE_DATA:-../shared/data}
mkdir -p .gpudata/natural/train/gray400 .gpudata/natural/train/bsds400
cp -r "$DATA/natural/kernels" .gpudata/natural/
# What travels is capped at 64 MiB: the tracked files, then these. Gray photos first, then as many colour
# ones as fit under 63 MiB in all (the tracked files take about 52 MB today).
python3 - "$DATA/natural/train" <<'PY'
import shutil, subprocess, sys
from pathlib import Path
tracked = sum(Path(f).stat().st_size for f in subprocess.run(["git", "ls-files"], capture_output=True, text=True,
              check=True).stdout.splitlines() if Path(f).is_file())
carried = sum(f.stat().st_size for d in (".whl", ".gpudata") for f in Path(d).rglob("*") if f.is_file())
room = 63 * 2**20 - tracked - carried
copied = {}
for kind in ("gray400", "bsds400"):
    for f in sorted(Path(sys.argv[1], kind).iterdir()):
        if f.stat().st_size > room:
            break
        shutil.copy(f, Path(".gpudata/natural/train", kind, f.name))
        room -= f.stat().st_size
        copied[kind] = copied.get(kind, 0) + 1
print(f"tracked files {tracked / 2**20:.1f} MiB; carried photos: {copied}; room left {room / 2**20:.1f} MiB")
PY
du -sh .whl .gpudata
