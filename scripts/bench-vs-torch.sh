#!/usr/bin/env bash
# Train-step time, sptune vs PyTorch, on the same model, batch and thread count.
#
#   scripts/bench-vs-torch.sh [--threads N] [--steps N] [--rounds N]
#                             [--only resnet18|efficientnet-lite0|resnet50]
#
# For each of resnet18 (batch 32 @ 32 px, small stem), efficientnet-lite0 (batch 16 @ 224 px) and
# resnet50 (batch 8 @ 224 px, torchvision's model on the PyTorch side) it runs, interleaved so machine noise hits both sides, --rounds times (default 2):
#   sptune: $SPTUNE_BIN --threads N --json bench --plain-only --arch A --size S --batch-size B
#           --steps N (the plain step's median; peak RSS from /usr/bin/time -v)
#   torch:  $PY scripts/torch-step.py --arch A --size S --batch N --steps N --threads N
# and prints one table row per architecture: medians over the rounds of each run's median step,
# the ratio sptune/torch, GFLOP/s of each (FLOPs counted by torch-step.py: 3 x forward conv and
# linear multiply-adds x 2) and peak RSS (the max over the rounds).
#
# Both sides hold one network, its optimizer state and one batch: peak RSS is like for like.
# Defaults (5 steps, 2 rounds) take about 3 minutes for the three architectures on 2 threads.
#
# Environment: SPTUNE_BIN (default target/release/sptune), SPTUNE_TORCH_PYTHON (a Python with
# torch; default .venv-torch/bin/python in the repository or its parent folder, else python3 if
# it imports torch).
set -euo pipefail
cd "$(dirname "$0")/.."

threads=2
steps=5
rounds=2
only=""
usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) threads="$2"; shift 2 ;;
        --steps) steps="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        --only) only="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done
case "$only" in
    ""|resnet18|efficientnet-lite0|resnet50) ;;
    *) echo "--only takes resnet18, efficientnet-lite0 or resnet50, not '$only'" >&2; exit 2 ;;
esac

bin="${SPTUNE_BIN:-target/release/sptune}"
if [ ! -x "$bin" ]; then
    echo "no sptune binary at $bin: run \`cargo build --release\` (or set SPTUNE_BIN)" >&2
    exit 2
fi

py=""
if [ -n "${SPTUNE_TORCH_PYTHON:-}" ]; then
    candidates=("$SPTUNE_TORCH_PYTHON")
else
    candidates=(.venv-torch/bin/python ../.venv-torch/bin/python python3)
fi
for c in "${candidates[@]}"; do
    if command -v "$c" >/dev/null && "$c" -c 'import torch' 2>/dev/null; then
        py="$c"
        break
    fi
done
if [ -z "$py" ]; then
    cat >&2 <<'EOF'
No Python with torch found (tried $SPTUNE_TORCH_PYTHON, .venv-torch/bin/python here and in the
parent folder, python3). Make one with:
    python3 -m venv .venv-torch
    .venv-torch/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu
    .venv-torch/bin/pip install efficientnet-lite-pytorch
(or plain `pip install torch` from PyPI, ~5 GB with the CUDA libraries), or set SPTUNE_TORCH_PYTHON.
EOF
    exit 2
fi
if { [ -z "$only" ] || [ "$only" = efficientnet-lite0 ]; } \
    && ! "$py" -c 'import efficientnet_lite_pytorch' 2>/dev/null; then
    echo "efficientnet-lite0 needs \`$py -m pip install efficientnet-lite-pytorch\` (or use --only resnet18)" >&2
    exit 2
fi
if { [ -z "$only" ] || [ "$only" = resnet50 ]; } && ! "$py" -c 'import torchvision' 2>/dev/null; then
    echo "resnet50 needs \`$py -m pip install torchvision\` (or use --only resnet18)" >&2
    exit 2
fi

timev=""
if /usr/bin/time -v true >/dev/null 2>&1; then
    timev=/usr/bin/time
else
    echo "note: /usr/bin/time missing (apt-get install -y time); sptune's peak RSS read via getrusage" >&2
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
results="$tmp/results.jsonl"
: >"$results"

# Runs sptune bench once; appends {"side":"sptune",...} to $results.
run_sptune() {
    local arch="$1" batch="$2" size="$3" round="$4"
    local cmd=("$bin" --threads "$threads" --json bench --plain-only --arch "$arch" --size "$size"
        --batch-size "$batch" --steps "$steps")
    echo "  round $round: ${cmd[*]}" >&2
    if [ -n "$timev" ]; then
        "$timev" -v -o "$tmp/time.txt" "${cmd[@]}" >"$tmp/sptune.out" 2>"$tmp/sptune.err" || {
            echo "sptune bench failed:" >&2; cat "$tmp/sptune.err" >&2; exit 1; }
    else
        "$py" -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[2:], stdout=open(sys.argv[1] + "/sptune.out", "w"),
                   stderr=open(sys.argv[1] + "/sptune.err", "w"))
kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
open(sys.argv[1] + "/time.txt", "w").write(f"Maximum resident set size (kbytes): {kb}\n")
sys.exit(r.returncode)' "$tmp" "${cmd[@]}" || {
            echo "sptune bench failed:" >&2; cat "$tmp/sptune.err" >&2; exit 1; }
    fi
    "$py" - "$tmp" "$arch" "$batch" "$size" "$round" >>"$results" <<'EOF'
import json, re, sys
tmp, arch, batch, size, rnd = sys.argv[1:]
out = open(f"{tmp}/sptune.out").read()
try:  # `--json`: {"width", "batch", "size", "rows": [{"variant": "plain", "step_ms", ...}, ...]}
    ms = next(r["step_ms"] for r in json.loads(out)["rows"] if r["variant"] == "plain")
except (ValueError, KeyError, StopIteration):  # the text table: "plain   <step ms>  <ratio> ..."
    m = re.search(r"^plain\s+([0-9.]+)", out, re.M)
    if not m:
        sys.exit(f"cannot find the plain row in sptune's output:\n{out}")
    ms = float(m.group(1))
kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(f"{tmp}/time.txt").read()).group(1))
print(json.dumps({"side": "sptune", "arch": arch, "batch": int(batch), "size": int(size),
                  "round": int(rnd), "step_ms_median": ms, "peak_rss_mb": round(kb / 1024, 1)}))
EOF
}

# Runs torch-step.py once; appends {"side":"torch",...} to $results.
run_torch() {
    local arch="$1" batch="$2" size="$3" round="$4"
    local cmd=("$py" scripts/torch-step.py --arch "$arch" --batch "$batch" --size "$size"
        --steps "$steps" --threads "$threads")
    echo "  round $round: ${cmd[*]}" >&2
    "${cmd[@]}" >"$tmp/torch.out" 2>"$tmp/torch.err" || {
        echo "torch-step.py failed:" >&2; cat "$tmp/torch.err" >&2; exit 1; }
    "$py" - "$tmp/torch.out" "$round" >>"$results" <<'EOF'
import json, sys
d = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
d.update(side="torch", round=int(sys.argv[2]))
print(json.dumps(d))
EOF
}

cases=()
{ [ -z "$only" ] || [ "$only" = resnet18 ]; } && cases+=("resnet18 32 32")
{ [ -z "$only" ] || [ "$only" = efficientnet-lite0 ]; } && cases+=("efficientnet-lite0 16 224")
{ [ -z "$only" ] || [ "$only" = resnet50 ]; } && cases+=("resnet50 8 224")
for c in "${cases[@]}"; do
    read -r arch batch size <<<"$c"
    echo "$arch, batch $batch @ $size px, $threads threads, $steps timed steps, $rounds rounds:" >&2
    for ((r = 1; r <= rounds; r++)); do
        run_sptune "$arch" "$batch" "$size" "$r"
        run_torch "$arch" "$batch" "$size" "$r"
    done
done

"$py" - "$results" "$threads" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
threads = int(sys.argv[2])
torch_version = next((r["torch"] for r in rows if r["side"] == "torch"), "?")
hdr = ["arch", "batch", "size", "threads", "sptune ms", "torch ms", "sptune/torch",
       "sptune GFLOP/s", "torch GFLOP/s", "sptune RSS MB", "torch RSS MB"]
table = []
rounds = []
for arch in dict.fromkeys(r["arch"] for r in rows):
    s = [r for r in rows if r["arch"] == arch and r["side"] == "sptune"]
    t = [r for r in rows if r["arch"] == arch and r["side"] == "torch"]
    sm = statistics.median(r["step_ms_median"] for r in s)
    tm = statistics.median(r["step_ms_median"] for r in t)
    gf = t[0].get("gflop_step")
    table.append([arch, s[0]["batch"], s[0]["size"], threads, f"{sm:.1f}", f"{tm:.1f}",
                  f"{sm / tm:.2f}", f"{gf / (sm / 1e3):.1f}" if gf else "-",
                  f"{gf / (tm / 1e3):.1f}" if gf else "-",
                  f"{max(r['peak_rss_mb'] for r in s):.0f}", f"{max(r['peak_rss_mb'] for r in t):.0f}"])
    rounds.append(f"{arch}: sptune " + ", ".join(f"{r['step_ms_median']:.1f}" for r in s)
                  + " ms; torch " + ", ".join(f"{r['step_ms_median']:.1f}" for r in t)
                  + f" ms; {gf} GFLOP/step")
w = [max(len(str(x)) for x in col) for col in zip(hdr, *table)]
for line in [hdr] + table:
    print("  ".join(str(x).ljust(n) if i == 0 else str(x).rjust(n) for i, (x, n) in enumerate(zip(line, w))))
print(f"\ntorch {torch_version}. Per-round medians (ms): " + "; ".join(rounds))
print("ms: median over rounds of each run's median step. GFLOP/s: 3 x forward conv+linear "
      "multiply-adds x 2 per step / step time. RSS: peak resident memory of the whole process "
      "(one network, its optimizer state, one batch on each side).")
EOF
