#!/usr/bin/env bash
# The two installs a user has besides a checkout, checked end to end from this tree:
#   1. `cargo install --path crates/sptune-cli` into a temporary root;
#   2. the Python wheel (maturin, bindings = "bin") `pip install`ed into a fresh venv;
# each then runs `sptune --version` and a tiny pretrain (an MLP on 2 Fashion-MNIST classes,
# 20 images each, 1 epoch). Both reuse the workspace's release build (target/).
# Needs python3 with venv and network access to PyPI (for maturin).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

tiny_pretrain() {
  "$1" --quiet pretrain --data fashion-mnist --classes 0-1 --per-class 20 --test-limit 100 \
    --epochs 1 --arch mlp --hidden 16 --out "$tmp/$2.safetensors"
  test -s "$tmp/$2.safetensors"
}

echo "== cargo install --path crates/sptune-cli (root $tmp/cargo)"
cargo install -q --locked --path crates/sptune-cli --root "$tmp/cargo" --target-dir target
"$tmp/cargo/bin/sptune" --version
tiny_pretrain "$tmp/cargo/bin/sptune" cargo

echo "== the Python wheel"
python3 -m venv "$tmp/build-venv"
"$tmp/build-venv/bin/pip" install -q "maturin>=1.5,<2"
rm -rf target/wheels
"$tmp/build-venv/bin/maturin" build -q --release -m crates/sptune-cli/Cargo.toml
wheel=$(ls target/wheels/sptune-*.whl)
python3 -m venv "$tmp/user-venv"
"$tmp/user-venv/bin/pip" install -q "$wheel"
"$tmp/user-venv/bin/sptune" --version
tiny_pretrain "$tmp/user-venv/bin/sptune" wheel
echo "installs: ok ($(basename "$wheel"))"
