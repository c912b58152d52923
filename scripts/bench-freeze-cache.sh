#!/usr/bin/env bash
# Frozen stages computed once: with `--freeze K`, frozen BatchNorm statistics and no
# augmentation, `finetune` stores the frozen prefix's output of every training image and reuses
# it every epoch. This times the fine-tune with the store and without it (`--cache-mb 0`) and
# checks that both give the same checkpoint.
#
#   scripts/bench-freeze-cache.sh [--freeze "2 3 4"] [--epochs N] [--per-class N] [--threads N]
#                                 [--val-fraction F]
#
# ResNet-18 (width 64, small stem) is pretrained 1 epoch on Fashion-MNIST classes 0-4 (100
# images per class), then fine-tuned on classes 5-9 (--per-class images per class, default 200)
# with --bn frozen, for each K once without the store and once with it. One row per K:
#   epoch s: the median epoch time (summary.csv) without and with the store, and their ratio;
#   store:   the store's one-time build (seconds, MiB; from the run's log.txt);
#   whole:   each fine-tune's wall time, build included;
#   by MACs: the ratio the multiply-adds predict: without the store an epoch runs the prefix
#            forward (P) and the rest forward and backward (R + B, B = 2R less the input
#            gradient of the first trainable convolutions), with it only R + B, so
#            (P + R + B) / (R + B). Each ResNet stage costs about the same (the channels double
#            as the plane halves), so K = 2 cannot reach 2x;
#            with --val-fraction F, that fraction of each class's images is validated every
#            epoch (stored too: V (P + R) without the store, V R with it) and the bound
#            counts it;
#   diff:    the largest relative difference of any tensor between the two checkpoints
#            (`sptune distance`; goal: at most 1e-5).
# About 3 minutes on 2 cores with the defaults.
#
# Environment: SPTUNE_BIN (default target/release/sptune), DATA (Fashion-MNIST folder, default
# sptune's), WORK (scratch folder, default a new temporary one).
set -euo pipefail
cd "$(dirname "$0")/.."

freeze="2 3 4"
epochs=2
per_class=200
threads=2
val=0
usage() { sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --freeze) freeze="$2"; shift 2 ;;
        --epochs) epochs="$2"; shift 2 ;;
        --per-class) per_class="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --val-fraction) val="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done
bin="${SPTUNE_BIN:-target/release/sptune}"
[ -x "$bin" ] || { echo "no $bin: run cargo build --release first (or set SPTUNE_BIN)" >&2; exit 1; }
bin="$(realpath "$bin")"
work="${WORK:-$(mktemp -d)}"
mkdir -p "$work"
data=()
[ -n "${DATA:-}" ] && data=(--data "$DATA")
common=(--threads "$threads" --quiet "${data[@]}")

"$bin" pretrain "${common[@]}" --arch resnet18 --width 64 --small-stem true --classes 0-4 \
    --per-class 100 --epochs 1 --test-limit 100 --out "$work/src.safetensors" >/dev/null

printf '%-4s %22s %8s %16s %22s %9s %9s\n' K "epoch s (none / store)" ratio "store built" \
    "whole s (none / store)" "by MACs" diff
for k in $freeze; do
    for mode in none store; do
        cache=()
        [ "$mode" = none ] && cache=(--cache-mb 0)
        rm -rf "$work/$k-$mode"
        start=$(date +%s.%N)
        "$bin" finetune "${common[@]}" "${cache[@]}" --init "$work/src.safetensors" \
            --classes 5-9 --per-class "$per_class" --val-fraction "$val" --epochs "$epochs" --freeze "$k" \
            --bn frozen --test-limit 100 --run-dir "$work/$k-$mode" \
            --out "$work/$k-$mode.safetensors" >/dev/null
        end=$(date +%s.%N)
        echo "$start $end" >"$work/$k-$mode.wall"
    done
    "$bin" distance --json --from "$work/$k-none.safetensors" --to "$work/$k-store.safetensors" \
        >"$work/$k.distance.json"
    python3 - "$work" "$k" "$per_class" "$val" <<'EOF'
import csv, json, re, statistics, sys

work, k, per_class, val = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])

def epoch_s(mode):
    with open(f"{work}/{k}-{mode}/summary.csv") as f:
        return statistics.median(float(r["seconds"]) for r in csv.DictReader(f))

def wall(mode):
    a, b = map(float, open(f"{work}/{k}-{mode}.wall").read().split())
    return b - a

log = open(f"{work}/{k}-store/log.txt").read()
m = re.search(r"computed once \(([0-9]+ [KM]iB), ([0-9.]+) s\)", log)
store = f"{float(m.group(2)):.1f} s, {m.group(1)}" if m else "not built"

# multiply-adds per image of ResNet-18 (width 64, small stem) at 28 px, one channel: the
# stem, then four stages of two basic blocks; stage s has 64·2^(s-1) channels on a plane
# halved by each stage after the first (rounded up, as a stride-2 3x3 conv with padding 1 does)
def macs():
    side, cin, stem = 28, 1, 0
    stem = side * side * cin * 64 * 9
    stages, first_in = [], []
    c_prev = 64
    for s in range(4):
        c = 64 * 2 ** s
        if s > 0:
            side = (side + 1) // 2
        p = side * side
        first = p * c_prev * c * 9 + (p * c_prev * c if s > 0 else 0)  # conv1 + downsample
        rest = 3 * p * c * c * 9
        stages.append(first + rest)
        first_in.append(first)
        c_prev = c
    return stem, stages, first_in

stem, stages, first_in = macs()
prefix = stem + sum(stages[:k])
r = sum(stages[k:]) + 512 * 5
b = 2 * r - (first_in[k] if k < 4 else 0)
# with a validation split (a fraction v of the images), each epoch also runs the validation
# images forward: the whole network without the store, the rest of it with the store
v = val
bound = ((1 - v) * (prefix + r + b) + v * (prefix + r)) / ((1 - v) * (r + b) + v * r)

d = json.load(open(f"{work}/{k}.distance.json"))
diff = max(t["rel"] for t in d["tensors"])
none_s, store_s = epoch_s("none"), epoch_s("store")
print(f"{k:<4} {none_s:10.2f} / {store_s:<9.2f} {none_s / store_s:8.2f} {store:>16} "
      f"{wall('none'):10.1f} / {wall('store'):<9.1f} {bound:9.{2 if bound < 100 else 0}f} {diff:9.1e}")
EOF
done
