#!/usr/bin/env bash
# Device check of sptune's wgpu (Vulkan) backend: bench + a short pretrain on cpu vs wgpu.
# Prepared here, run on a lent GPU machine (see README, "GPU"): it expects
#   devdata/sptune.xz  the binary built with `CARGO_TARGET_DIR=target-wgpu cargo build --release
#                      -p sptune-cli --features wgpu`, stripped and xz-compressed
#   devdata/fm/        a 5000/1000-image Fashion-MNIST IDX subset
#   .gl/*.deb          the Vulkan/GL loaders (libvulkan1, libegl1, libglvnd0, ...)
# and writes its outputs under $OUT.
set -u
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
[ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json ] && export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
nvidia-smi -L; nproc
(xz -dk devdata/sptune.xz 2>/dev/null || python3 -c "import lzma,shutil; shutil.copyfileobj(lzma.open('devdata/sptune.xz'), open('devdata/sptune','wb'))"); B=./devdata/sptune
chmod +x $B
run() { echo "== $*"; /usr/bin/time -f "wall %e s" timeout 200 "$@" 2>&1 | tail -12; }
run $B --device wgpu bench --steps 5
run $B --device cpu bench --steps 3
for dev in cpu wgpu; do
  run $B --device $dev --quiet pretrain --data devdata/fm --classes 0-4 --arch resnet18 --width 16 --epochs 2 --lr 0.05 --seed 1 --out $OUT/$dev.safetensors --run-dir $OUT/$dev.run
  cat $OUT/$dev.run/summary.csv
done
run $B distance --from $OUT/cpu.safetensors --to $OUT/wgpu.safetensors
