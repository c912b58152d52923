#!/usr/bin/env bash
# The segmentation table of docs/segmentation.md: L2 vs L2-SP vs L2-SP-Fisher on Fashion-MNIST scenes, alpha
# and the learning rate chosen by validation for each scheme and seed, forgetting of the
# source task.
#
#   bash scripts/segment-study.sh [OUT]        (default /tmp/segment-study; about 50 min on 2 cores)
#
# Steps (each skipped when its output exists, so a killed study continues):
#   1. scenes: 400 training and 100 test scenes of classes 5-9 (`sptune scenes`);
#   2. the source: a ResNet-18 of width 16 on the same classes' classification
#      (scripts/segment-source.toml), and its exact Fisher on 500 source images;
#   3. per scheme and seed: `sptune segment` with --alpha and --lr listing candidates (each
#      pair is fine-tuned on 80 % of the training scenes and scored on the other 20 %; the
#      best pair is fine-tuned on all of them and tested);
#   4. the table (scripts/segment_table.py): mean +- 95 % t-interval over the seeds, and the
#      paired differences to L2.
# Environment: SPTUNE (the binary), SEEDS, ALPHAS, LRS, EPOCHS, SCHEMES, EXTRA (more
# `segment` flags, e.g. "--bn frozen").
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/segment-study}
SPTUNE=${SPTUNE:-$PWD/target/release/sptune}
SEEDS=${SEEDS:-"0 1 2"}
ALPHAS=${ALPHAS:-0.001,0.01,0.1}
LRS=${LRS:-0.01,0.05}
read -ra EXTRA <<< "${EXTRA:-}"
EPOCHS=${EPOCHS:-20}
SCHEMES=${SCHEMES:-"l2 l2-sp l2-sp-fisher"}
[ -x "$SPTUNE" ] || cargo build --release
mkdir -p "$OUT"
[ -d "$OUT/sc" ] || "$SPTUNE" --quiet scenes --out "$OUT/sc" --train 400 --test 100
[ -f "$OUT/src.safetensors" ] ||
  "$SPTUNE" --quiet pretrain --config scripts/segment-source.toml --out "$OUT/src.safetensors"
[ -f "$OUT/src.fisher" ] ||
  "$SPTUNE" --quiet fisher --model "$OUT/src.safetensors" --classes 5-9 --samples 500 \
    --out "$OUT/src.fisher"
for seed in $SEEDS; do
  for reg in $SCHEMES; do
    f="$OUT/$reg-$seed.json"
    [ -f "$f" ] && continue
    extra=()
    [[ $reg == *fisher ]] && extra=(--fisher "$OUT/src.fisher")
    "$SPTUNE" --quiet --json segment --init "$OUT/src.safetensors" --data "$OUT/sc" \
      --reg "$reg" --alpha "$ALPHAS" --lr "$LRS" --epochs "$EPOCHS" --seed "$seed" \
      --source-classes 5-9 "${extra[@]}" "${EXTRA[@]}" > "$f.tmp"
    mv "$f.tmp" "$f"
    echo "$reg seed $seed: $(date +%T)"
  done
done
python3 scripts/segment_table.py "$OUT" $SCHEMES
