#!/usr/bin/env python3
"""PyTorch's train-step time for EfficientNet-Lite0 on this machine, to compare with
`sptune bench --arch efficientnet-lite0 --size 224 --batch-size 16` (the `plain` row).

Same work per step: batch 16 of 3x224x224 normal noise, 10-class head, train() mode
(BatchNorm batch statistics), cross-entropy, backward, SGD momentum 0.9. 2 threads.
Prints the median of --steps timed steps after one warm-up step.

    /work/.venv-torch/bin/python scripts/torch-efficientnet-step.py   # needs efficientnet-lite-pytorch
"""
import argparse
import statistics
import time

import torch
from efficientnet_lite_pytorch import EfficientNet

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=3)
p.add_argument("--batch", type=int, default=16)
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
model = EfficientNet.from_name("efficientnet-lite0", num_classes=10)
model.train()
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
x = torch.randn(a.batch, 3, 224, 224)
y = torch.arange(a.batch) % 10
times = []
for i in range(a.steps + 1):
    t0 = time.perf_counter()
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    dt = time.perf_counter() - t0
    if i > 0:
        times.append(dt)
m = statistics.median(times)
print(f"torch {torch.__version__}, {a.threads} threads, batch {a.batch} @ 224: "
      f"step {1e3 * m:.1f} ms, {a.batch / m:.1f} images/s")
