"""The segmentation table of docs/segmentation.md from `scripts/segment-study.sh`'s JSON files.

    python3 scripts/segment_table.py OUT l2 l2-sp l2-sp-fisher

Reads OUT/<scheme>-<seed>.json (`sptune --json segment`), prints a markdown table: mean and
95 % t-interval over the seeds of mIoU, pixel accuracy and forgetting (points of source
accuracy lost), the alpha and rate each seed chose, then the paired differences of each scheme to the
first one (same seed: same scenes order, same augmentation draws). Standard library only.
"""

import glob
import json
import math
import os
import sys

# two-sided 95 % quantiles of Student's t, degrees of freedom 1..10
T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228]


def interval(xs):
    n = len(xs)
    m = sum(xs) / n
    if n < 2:
        return m, float("nan")
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    return m, T95[min(n - 1, len(T95)) - 1] * sd / math.sqrt(n)


def fmt(xs, scale=1.0):
    m, h = interval([scale * x for x in xs])
    return f"{m:.2f} ± {h:.2f}"


def main():
    out, schemes = sys.argv[1], sys.argv[2:]
    runs = {}
    for s in schemes:
        for f in sorted(glob.glob(os.path.join(out, f"{s}-*.json"))):
            seed = f[len(os.path.join(out, s)) + 1 : -len(".json")]
            if not seed.isdigit():
                continue
            r = json.load(open(f))
            fg = r.get("forgetting")
            drop = 100 * (fg["source_acc"] - fg["after_acc"]) if fg else float("nan")
            runs.setdefault(s, {})[int(seed)] = (
                r["miou"],
                r["pixel_accuracy"],
                drop,
                r.get("alpha"),
                r.get("lr"),
            )
    print("| scheme | α, lr chosen (per seed) | mIoU (%) | pixel accuracy (%) | forgetting (points) |")
    print("|---|---|---|---|---|")
    for s in schemes:
        rs = [runs[s][k] for k in sorted(runs.get(s, {}))]
        if not rs:
            continue
        alphas = "; ".join(f"{r[3]:g}, {r[4]:g}" if r[4] else f"{r[3]:g}" for r in rs)
        print(
            f"| {s} (n={len(rs)}) | {alphas} | {fmt([r[0] for r in rs], 100)} | "
            f"{fmt([r[1] for r in rs], 100)} | {fmt([r[2] for r in rs])} |"
        )
    base = schemes[0]
    for s in schemes[1:]:
        seeds = sorted(set(runs.get(s, {})) & set(runs.get(base, {})))
        if not seeds:
            continue
        d = [[runs[s][k][i] - runs[base][k][i] for k in seeds] for i in range(3)]
        print(
            f"| {s} − {base} (paired, n={len(seeds)}) | | {fmt(d[0], 100)} | "
            f"{fmt(d[1], 100)} | {fmt(d[2])} |"
        )


if __name__ == "__main__":
    main()
