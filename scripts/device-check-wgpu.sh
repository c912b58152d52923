#!/usr/bin/env bash
# Device check of sptune's wgpu (Vulkan) backend on a lent GPU machine, about 6 minutes:
#   1. PyTorch's train step on the card (scripts/torch-step.py --device cuda): ResNet-18 width 64,
#      small stem, batch 32 @ 32 px, and EfficientNet-Lite0 batch 16 @ 224 px;
#   2. the same two steps with `sptune --device wgpu bench --plain-only` (median step; the first
#      steps compile and autotune the shaders, the median is over the later ones);
#   3. correctness: a width-16 ResNet-18 pretrained on the CPU, then evaluated on cpu and on wgpu
#      (the accuracies must agree), then two epochs of pretraining on each device.
# Prepared here, run there (see README, "GPU"); it expects, in the repository root:
#   devdata/sptune.xz  the binary built with `CARGO_TARGET_DIR=target-wgpu cargo build --release
#                      -p sptune-cli --features wgpu`, stripped and xz-compressed
#   devdata/fm/        a 5000/1000-image Fashion-MNIST IDX subset
#   devdata/pylib/     the pure-Python package efficientnet_lite_pytorch (PyTorch is installed there)
#   .gl/*.deb          the Vulkan/GL loaders (libvulkan1, libegl1, libglvnd0, ...)
# and writes its outputs under $OUT.
set -u
OUT="${OUT:-/tmp/device-out}"
mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
[ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json ] && export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
nvidia-smi -L
nproc
(xz -dk devdata/sptune.xz 2>/dev/null || python3 -c "import lzma,shutil; shutil.copyfileobj(lzma.open('devdata/sptune.xz'), open('devdata/sptune','wb'))")
B=./devdata/sptune
chmod +x $B
export PYTHONPATH=devdata/pylib PYTHONUNBUFFERED=1
run() {
    local limit="$1"
    shift
    echo "== $*"
    /usr/bin/time -f "wall %e s" timeout "$limit" "$@" 2>&1 | tail -15
}
# 1. PyTorch on the card (cudnn.benchmark on, 5 untimed steps, a synchronize around each step).
run 60 python3 scripts/torch-step.py --device cuda --arch resnet18 --steps 30 --warmup 5
run 60 python3 scripts/torch-step.py --device cuda --arch efficientnet-lite0 --steps 30 --warmup 5
# 2. sptune on wgpu (bench syncs the device before each clock read).
run 150 $B --device wgpu bench --plain-only --arch resnet18 --batch-size 32 --size 32 --steps 20
run 200 $B --device wgpu bench --plain-only --arch efficientnet-lite0 --batch-size 16 --size 224 --steps 12
# 3. correctness: the same checkpoint evaluated on both devices, then one epoch on each.
run 60 $B --device cpu --quiet pretrain --data devdata/fm --classes 0-4 --arch resnet18 --width 16 \
    --epochs 2 --lr 0.05 --seed 1 --out "$OUT/cpu.safetensors" --run-dir "$OUT/cpu.run"
for dev in cpu wgpu; do
    run 90 $B --device $dev eval --model "$OUT/cpu.safetensors" --data devdata/fm
done
run 150 $B --device wgpu --quiet pretrain --data devdata/fm --classes 0-4 --arch resnet18 --width 16 \
    --epochs 2 --lr 0.05 --seed 1 --out "$OUT/wgpu.safetensors" --run-dir "$OUT/wgpu.run"
for dev in cpu wgpu; do cat "$OUT/$dev.run/summary.csv" 2>/dev/null; done
run 30 $B distance --from "$OUT/cpu.safetensors" --to "$OUT/wgpu.safetensors"
