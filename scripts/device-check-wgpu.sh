#!/usr/bin/env bash
# Device check of sptune's GPU backend (wgpu) on a lent GPU machine, about 9 minutes, most of it
# shader compilation and autotuning in each binary's first steps:
#   1. PyTorch's train step on the card (scripts/torch-step.py --device cuda): ResNet-18 width 64,
#      small stem, batch 32 @ 32 px, and EfficientNet-Lite0 batch 16 @ 224 px;
#   2. the same two steps with `sptune --device vulkan bench --plain-only` (the `vulkan` build:
#      shaders compiled to SPIR-V) and, when devdata/sptune-wgsl.xz is there, with
#      `--device wgpu` of a WGSL-only build (median step; the first steps compile and autotune
#      the shaders, the median is over the later ones);
#   3. correctness: a width-16 ResNet-18 pretrained on the CPU, then evaluated on cpu and on the
#      GPU (the accuracies must agree), then two epochs of pretraining on the GPU.
# Every step runs under what is left of a deadline (DEADLINE seconds from the start, default
# 540), so a slow step cuts the later ones short rather than the whole output; the steps come
# in order of need.
# Prepared here, run there (see docs/performance.md, "GPU"); it expects, in the repository root:
#   devdata/sptune.xz       the binary built with `CARGO_TARGET_DIR=target-wgpu cargo build
#                           --release -p sptune-cli --features vulkan`, stripped, xz-compressed
#   devdata/sptune-wgsl.xz  optional: the same with `--features wgpu` (WGSL shaders)
#   devdata/fm/             a 5000/1000-image Fashion-MNIST IDX subset
#   devdata/pylib/          the pure-Python package efficientnet_lite_pytorch (PyTorch is there)
#   .gl/*.deb               the Vulkan/GL loaders (libvulkan1, libegl1, libglvnd0, ...)
# and writes its log to $OUT/log.txt (the checkpoints and run folders stay in $WORK: files
# that come back from a lent machine are few).
set -u
OUT="${OUT:-/tmp/device-out}"
WORK="${WORK:-/tmp/device-work}"
mkdir -p "$OUT" "$WORK"
start=$(date +%s)
deadline=$((start + ${DEADLINE:-540}))
exec > >(tee "$OUT/log.txt") 2>&1
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
[ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json ] && export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
nvidia-smi -L
nproc
unxz() { xz -dkc "$1" 2>/dev/null >"$2" || python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$1" "$2"; chmod +x "$2"; }
unxz devdata/sptune.xz devdata/sptune
B=./devdata/sptune
W=
if [ -f devdata/sptune-wgsl.xz ]; then
    unxz devdata/sptune-wgsl.xz devdata/sptune-wgsl
    W=./devdata/sptune-wgsl
fi
export PYTHONPATH=devdata/pylib PYTHONUNBUFFERED=1
run() {
    local limit="$1" left
    shift
    left=$((deadline - $(date +%s)))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 5 ]; then
        echo "== skipped (deadline): $*"
        return
    fi
    echo "== $* (limit ${limit}s)"
    /usr/bin/time -f "wall %e s" timeout "$limit" "$@" 2>&1 | tail -15
}
# 1. PyTorch on the card (cudnn.benchmark on, 5 untimed steps, a synchronize around each step).
run 60 python3 scripts/torch-step.py --device cuda --arch resnet18 --steps 30 --warmup 5
run 60 python3 scripts/torch-step.py --device cuda --arch efficientnet-lite0 --steps 30 --warmup 5
# 2. sptune on the card, SPIR-V first (bench syncs the device before each clock read).
run 150 $B --device vulkan bench --plain-only --arch resnet18 --batch-size 32 --size 32 --steps 20
run 200 $B --device vulkan bench --plain-only --arch efficientnet-lite0 --batch-size 16 --size 224 --steps 12
# 3. correctness: the same checkpoint evaluated on both devices.
run 60 $B --device cpu --quiet pretrain --data devdata/fm --classes 0-4 --arch resnet18 --width 16 \
    --epochs 2 --lr 0.05 --seed 1 --out "$WORK/cpu.safetensors" --run-dir "$WORK/cpu.run"
for dev in cpu vulkan; do
    run 90 $B --device $dev eval --model "$WORK/cpu.safetensors" --data devdata/fm
done
# 4. the WGSL build on the same card, for comparison.
if [ -n "$W" ]; then
    run 150 $W --device wgpu bench --plain-only --arch resnet18 --batch-size 32 --size 32 --steps 20
    run 200 $W --device wgpu bench --plain-only --arch efficientnet-lite0 --batch-size 16 --size 224 --steps 12
fi
# 5. training on the card: the run above, on the GPU.
run 150 $B --device vulkan --quiet pretrain --data devdata/fm --classes 0-4 --arch resnet18 --width 16 \
    --epochs 2 --lr 0.05 --seed 1 --out "$WORK/gpu.safetensors" --run-dir "$WORK/gpu.run"
for d in cpu gpu; do cat "$WORK/$d.run/summary.csv" 2>/dev/null; done
run 30 $B distance --from "$WORK/cpu.safetensors" --to "$WORK/gpu.safetensors"
echo "total $(( $(date +%s) - start )) s"
