#!/usr/bin/env python3
"""Evaluation throughput (forward passes in eval mode, no gradients) of PyTorch's models, the
counterpart of sptune's evaluation batches (`ModelSpec::eval_batch`): images/s per batch size.

    /work/.venv-torch/bin/python scripts/torch-eval.py --arch efficientnet-lite0 --size 224

The models come from scripts/torch-step.py (same definitions as the train-step comparison).
Random inputs; the data pipeline is not timed (sptune's figures include its resize).
"""
import argparse
import importlib.util
import pathlib
import time

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="efficientnet-lite0")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--batches", default="8,16,64,256")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    here = pathlib.Path(__file__).resolve().parent
    spec = importlib.util.spec_from_file_location("torch_step", here / "torch-step.py")
    ts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ts)
    model = ts.build(a.arch, a.size, a.width).eval()
    for b in [int(x) for x in a.batches.split(",")]:
        x = torch.randn(b, 3, a.size, a.size)
        with torch.no_grad():
            model(x)  # warm-up
            n, t0 = 0, time.perf_counter()
            while n < a.images:
                model(x)
                n += b
            s = time.perf_counter() - t0
        print(f"{a.arch} @ {a.size} px, batch {b}: {n / s:.1f} images/s")


if __name__ == "__main__":
    main()
