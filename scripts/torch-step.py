#!/usr/bin/env python3
"""PyTorch's train-step time on this machine, to compare with the `plain` row of
`sptune --threads N --json bench --arch ARCH --size SIZE --batch-size BATCH`.

Same work per step as sptune's bench: one fixed batch of normal noise (3 x size x size),
labels i % 10, a 10-class head, train() mode (BatchNorm batch statistics), cross-entropy,
backward, SGD (lr 0.01, momentum 0.9, weight decay 0). One warm-up step, then --steps timed
steps; prints one JSON line:

    {"arch", "batch", "size", "threads", "torch", "step_ms_median", "step_ms_all",
     "peak_rss_mb", "gflop_step"}

`gflop_step` = 3 x (forward multiply-adds of conv and linear layers) x 2 / 1e9, i.e. forward
plus a backward counted as twice the forward; counted with forward hooks during the warm-up
step (no extra pass). BatchNorm, activations and the optimizer are not counted.

Architectures:
  resnet18            torchvision's ResNet-18 written out here (BasicBlock, BatchNorm, ReLU,
                      convs without bias, 1x1 conv + BN downsample), width 64, with sptune's
                      "small stem" (3x3 conv stride 1 padding 1, no max-pool) for size <= 64
                      as sptune's bench does; 7x7/2 conv + 3x3/2 max-pool above. Default 32 @ 32.
  efficientnet-lite0  the `efficientnet-lite-pytorch` package's model, dropout and
                      drop-connect off (sptune's Lite0 has neither). Default 16 @ 224.

    /work/.venv-torch/bin/python scripts/torch-step.py --arch resnet18 --steps 5 --threads 2
    /work/.venv-torch/bin/python scripts/torch-step.py --arch efficientnet-lite0
"""
import argparse
import json
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, planes, 1, stride, 0, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + identity)


class ResNet18(nn.Module):
    """torchvision's ResNet-18 layout with a base width and an optional small stem."""

    def __init__(self, num_classes=10, width=64, small_stem=True):
        super().__init__()
        if small_stem:
            self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
            self.maxpool = None
        else:
            self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1 = nn.BatchNorm2d(width)
        cin = width
        stages = []
        for planes, stride in [(width, 1), (2 * width, 2), (4 * width, 2), (8 * width, 2)]:
            blocks = []
            for i in range(2):
                blocks.append(BasicBlock(cin, planes, stride if i == 0 else 1))
                cin = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * width, num_classes)
        for m in self.modules():  # as torchvision (and sptune's kaiming_conv): fan_out, relu
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            x = self.maxpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build(arch, size, width):
    if arch == "resnet18":
        return ResNet18(10, width, small_stem=size <= 64)
    if arch == "efficientnet-lite0":
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            sys.exit("efficientnet-lite0 needs `pip install efficientnet-lite-pytorch`")
        try:
            return EfficientNet.from_name(
                "efficientnet-lite0", num_classes=10, dropout_rate=0.0, drop_connect_rate=0.0
            )
        except (TypeError, ValueError):  # an older API without these overrides
            return EfficientNet.from_name("efficientnet-lite0", num_classes=10)
    if arch == "resnet50":
        try:
            import torchvision
        except ImportError:
            sys.exit("resnet50 needs `pip install torchvision`")
        return torchvision.models.resnet50(num_classes=10)
    sys.exit(f"unknown --arch {arch} (resnet18, resnet50, efficientnet-lite0)")


def mac_hooks(model, counter):
    """Forward hooks adding conv/linear multiply-adds to counter[0]."""

    def conv(m, inp, out):
        k = m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3]  # cin/groups * kh * kw
        counter[0] += out.numel() * k

    def linear(m, inp, out):
        counter[0] += out.numel() * m.in_features

    hs = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hs.append(m.register_forward_hook(conv))
        elif isinstance(m, nn.Linear):
            hs.append(m.register_forward_hook(linear))
    return hs


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="resnet18",
                   choices=["resnet18", "resnet50", "efficientnet-lite0"])
    p.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up step")
    p.add_argument("--batch", type=int,
                   help="default 32 (resnet18), 16 (efficientnet-lite0), 8 (resnet50)")
    p.add_argument("--size", type=int,
                   help="default 32 (resnet18), 224 (efficientnet-lite0, resnet50)")
    p.add_argument("--width", type=int, default=64, help="ResNet base width")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu, or cuda (then cudnn.benchmark on, "
                   "--warmup steps first, and a synchronize before each clock read)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (the first counts FLOPs)")
    a = p.parse_args()
    batch = a.batch or {"resnet18": 32, "efficientnet-lite0": 16, "resnet50": 8}[a.arch]
    size = a.size or (32 if a.arch == "resnet18" else 224)
    torch.set_num_threads(a.threads)
    torch.manual_seed(7)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    model = build(a.arch, size, a.width).to(dev)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=0.0)
    x = torch.randn(batch, 3, size, size).to(dev)
    y = (torch.arange(batch) % 10).to(dev)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    warmup = max(1, a.warmup)
    macs = [0]
    hooks = mac_hooks(model, macs)
    times = []
    for i in range(a.steps + warmup):
        sync()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        sync()
        dt = time.perf_counter() - t0
        if i == 0:  # the warm-up step counted the multiply-adds; time the rest without hooks
            for h in hooks:
                h.remove()
        if i >= warmup:
            times.append(1e3 * dt)
    if not times:
        sys.exit("--steps must be at least 1")
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({
        "arch": a.arch,
        "batch": batch,
        "size": size,
        "threads": a.threads,
        "device": torch.cuda.get_device_name(dev) if cuda else "cpu",
        "torch": torch.__version__,
        "step_ms_median": round(statistics.median(times), 2),
        "step_ms_all": [round(t, 2) for t in times],
        "peak_rss_mb": round(rss_kb / 1024, 1),
        "gflop_step": round(3 * macs[0] * 2 / 1e9, 3),
    }))


if __name__ == "__main__":
    main()
